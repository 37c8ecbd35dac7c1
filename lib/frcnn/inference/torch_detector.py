"""The PyTorch runtime: a trained detector rebuilt from its checkpoint, run on RGB images.

`Detector.from_file` (open_detector) chooses the runtime from the file: an `.onnx` file opens
in ONNX Runtime (onnx_detector.py), any other in PyTorch (load_detector)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from easydict import EasyDict

from ..config import from_plain, merge_file, merge_pairs, to_plain
from ..convert import LoadContext, as_checkpoint
from ..data.loader import collate, resize
from ..modeling import FasterRCNN, build_model
from ..modeling.conventions import get_convention
from ..runs.checkpoint import CheckpointError, load_checkpoint, model_differences
from ..structures.batch import Sample
from .detections import DetectorBase
from .onnx_detector import OnnxDetector


@dataclass
class Detector(DetectorBase):
    """A model ready for inference, with what it was trained on."""

    model: FasterRCNN
    cfg: EasyDict
    classes: tuple[str, ...]
    net: str
    checkpoint: Path | None
    device: torch.device
    dataset: str | None = None  # the --dataset it was trained with, when the checkpoint says

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        overrides: Sequence[str] = (),
        net: str | None = None,
        dataset: str | None = None,
    ) -> Detector | OnnxDetector:
        """Any file --load_name accepts (open_detector): this project's checkpoint, a torchvision
        Faster R-CNN state_dict, the original's checkpoint (give net and dataset), or an ONNX
        file from export.py (run by ONNX Runtime on the CPU, with the same call)."""
        return open_detector(path, device, overrides=overrides, net=net, dataset=dataset)

    def detect_arrays(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return detect_images(self, images)


def open_detector(path: str | Path, device: str | torch.device = "cpu", **load_args: Any) -> Detector | OnnxDetector:
    """load_detector (load_args: its overrides, cfg_files, net, dataset, data_dir), or for a
    `.onnx` file an OnnxDetector, whose settings were fixed at export."""
    if Path(path).suffix.lower() != ".onnx":
        return load_detector(path, device, **load_args)
    if load_args.get("overrides") or load_args.get("cfg_files"):
        raise ValueError(f"{path}: an exported graph's settings are fixed; export again with --set/--cfg")
    if torch.device(device).type != "cpu":
        raise ValueError(f"{path}: ONNX detectors run on the CPU here (ONNX Runtime's CPU provider)")
    detector = OnnxDetector.from_file(path)
    net = load_args.get("net")
    if net is not None and net != detector.net:
        raise CheckpointError(f"{path} holds a {detector.net} detector, not --net {net}")
    return detector


def load_detector(
    path: str | Path,
    device: str | torch.device = "cpu",
    overrides: Sequence[str] = (),
    cfg_files: Sequence[str | Path] = (),
    net: str | None = None,
    dataset: str | None = None,
    data_dir: str | Path = "data",
) -> Detector:
    """Rebuild the model a checkpoint was trained as (net, classes, config) and load its weights.

    `path` is any file convert.as_checkpoint reads: this project's checkpoint, the original's, or
    a torchvision Faster R-CNN state_dict. `cfg_files` (--ls's file, --cfg) and then `overrides`
    (--set pairs) apply on top of the stored config, e.g. to test at another scale:
    --set TEST.SCALES [800]; changing the model itself is an error. `net`, when given (--net), must
    be the checkpoint's; `dataset` (--dataset) names the classes of a file that holds none.
    """
    path = Path(path)
    context = LoadContext(net, dataset, data_dir, overrides=tuple(overrides))
    state = as_checkpoint(load_checkpoint(path, require_model=False), path, context)
    cfg = from_plain(state["config"])
    for cfg_file in cfg_files:
        merge_file(cfg, cfg_file)
    merge_pairs(cfg, overrides)
    classes = tuple(state["classes"])
    differences = model_differences(state, net or state["net"], classes, to_plain(cfg))
    if differences:
        raise CheckpointError(f"--set/--cfg would change the model {path} holds:\n  " + "\n  ".join(differences))
    model, _ = build_model(cfg, state["net"], len(classes), use_default_weights=False)
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # not in every file's BatchNorm
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit the model it describes: "
            f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}"
        )
    device = torch.device(device)
    model.to(device).eval()
    return Detector(model, cfg, classes, state["net"], path, device, state.get("dataset"))


def loader_resizes(detector: Detector) -> bool:
    """Whether images are resized before the model (else the model resizes them, conventions.py)."""
    return not get_convention(detector.cfg.CONVENTION).resize_in_model


@torch.no_grad()
def detect_images(detector: Detector, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Detections for RGB uint8 images (h, w, 3), one dict of numpy arrays per image: boxes (D, 4)
    BoxMode.XYXY in the image's own pixels, scores (D,), labels (D,) in 1..K-1."""
    cfg = detector.cfg.TEST
    samples = []
    for i, image in enumerate(images):
        resized, scale = resize(image, cfg.SCALES[0], cfg.MAX_SIZE) if loader_resizes(detector) else (image, 1.0)
        samples.append(Sample.unlabelled(torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1), scale, i))
    batch = collate(samples).to(detector.device)
    outputs = detector.model(batch.images, batch.image_sizes, batch.image_scales)
    return [{k: v.cpu().numpy() for k, v in out.items()} for out in outputs]
