"""The PyTorch runtime: a trained detector rebuilt from its checkpoint, run on RGB images.

`Detector.from_file` (open_detector) chooses the runtime from the file: an `.onnx` file opens
in ONNX Runtime (onnx_detector.py), any other in PyTorch (load_detector)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from ..modeling.backbones import NETS
from ..modeling.conventions import get_convention
from ..runs.checkpoint import CheckpointError, load_checkpoint, model_differences
from ..structures.batch import Sample
from ..utils.errors import one_line, reading
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
    with reading(path):
        state = checked_checkpoint(as_checkpoint(load_checkpoint(path, require_model=False), path, context), path)
        cfg = stored_config(state["config"], path)
    for cfg_file in cfg_files:
        merge_file(cfg, cfg_file)
    merge_pairs(cfg, overrides)
    classes = tuple(state["classes"])
    differences = model_differences(state, net or state["net"], classes, to_plain(cfg))
    if differences:
        raise CheckpointError(f"--set/--cfg would change the model {path} holds: " + "; ".join(differences))
    with reading(path):
        model = _model_with_weights(cfg, state, path)
    device = torch.device(device)
    model.to(device).eval()
    return Detector(model, cfg, classes, state["net"], path, device, state.get("dataset"))


def checked_checkpoint(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """`state` if its entries have the types a checkpoint's have, else CheckpointError naming the
    first that does not (a file's values are quoted by type only)."""
    problems = {
        "model": isinstance(state.get("model"), Mapping)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["model"].items()),
        "config": isinstance(state.get("config"), Mapping),
        "classes": isinstance(state.get("classes"), (list, tuple))
        and len(state["classes"]) >= 2
        and all(isinstance(c, str) for c in state["classes"]),
        "net": state.get("net") in NETS,
        "dataset": state.get("dataset") is None or isinstance(state.get("dataset"), str),
    }
    wanted = {
        "model": "a mapping of parameter names to tensors",
        "config": "a mapping of config keys",
        "classes": "a list of at least two class names, background first",
        "net": f"one of {', '.join(NETS)}",
        "dataset": "a dataset name or none",
    }
    for key, fine in problems.items():
        if not fine:
            found = type(state.get(key)).__name__ if key in state else "missing"
            raise CheckpointError(f"{path}: its '{key}' should be {wanted[key]} (found: {found})")
    return state


def stored_config(data: Mapping, path: Path) -> EasyDict:
    """from_plain of a file's stored config; a value of the wrong type is the file's error."""
    try:
        return from_plain(data)
    except ValueError as e:
        raise CheckpointError(f"{path}: its stored config does not load ({one_line(e)})") from None


def _model_with_weights(cfg: EasyDict, state: dict[str, Any], path: Path) -> FasterRCNN:
    """The model the checkpoint describes, with its weights. Its names and shapes are compared on
    the meta device first, so that a config from a damaged file (a layer 2^31 wide) is refused
    before any memory is taken for it."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in _build(cfg, state, path).state_dict().items()}
    weights = state["model"]
    missing = [k for k in expected if k not in weights and not k.endswith("num_batches_tracked")]  # not in every file
    unexpected = [k for k in weights if k not in expected]
    shapes = {k: tuple(weights[k].shape) for k in expected if k in weights}
    wrong = [f"{k} {shape} for {expected[k]}" for k, shape in shapes.items() if shape != expected[k]]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} does not fit the model it describes: "
            f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}, shapes {wrong[:4]}"
        )
    model = _build(cfg, state, path)
    model.load_state_dict(weights, strict=False)
    return model


def _build(cfg: EasyDict, state: dict[str, Any], path: Path) -> FasterRCNN:
    try:
        model, _ = build_model(cfg, state["net"], len(state["classes"]), use_default_weights=False)
    except ValueError as e:  # the model builders' own refusals of a config (ValueError, never an InputError)
        raise CheckpointError(f"{path}: its config describes no model this project builds ({one_line(e)})") from None
    return model


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
