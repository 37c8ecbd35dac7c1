"""Test-time augmentation: each image also detected mirrored and / or at other input scales, the
passes' detections merged (test_net.py --tta, `detector(image, tta="flip")`).

    flip                      the image and its mirror image (left-right)
    scales=480,600,800        the image at each shorter side (MAX_SIZE grows in proportion)
    flip,scales=480,600,800   both: every scale, each also mirrored

A mirrored pass's boxes are mirrored back: an inclusive box [x1, x2] of a W-pixel-wide image
becomes [W - 1 - x2, W - 1 - x1]. The passes' detections are concatenated and merged by NMS
within each class at the model's own TEST.NMS, the best TEST.MAX_PER_IMAGE kept: the merge
mmdetection and detectron2 apply to their flip / multi-scale testing. `Augmented` wraps either
runtime (PyTorch or ONNX) and is itself one, so tiles (slicing.py) and the evaluator take it as
they take a detector.

Scales far from the ones the model was trained and tested at lose more than they add: on the
built-in data (256 px), flip with scales 192,256,320 raised Mean AP from 0.915 to 0.939, scales
480,600,800 dropped it to 0.612 (docs/evaluation.md). A scale more than FAR times outside the
model's TRAIN/TEST.SCALES is warned about, once per process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from easydict import EasyDict

from ..modeling import box_ops
from ..modeling.conventions import get_convention

log = logging.getLogger("frcnn.tta")

FAR = 1.5


@dataclass(frozen=True)
class TTA:
    flip: bool
    scales: tuple[int, ...]  # empty: the detector's own TEST.SCALES[0]


def parse_tta(text: str) -> TTA:
    """`flip`, `scales=480,600,800` or `flip,scales=...` (module docstring); else ValueError."""
    flip, scales, in_scales = False, [], False
    for part in (p.strip() for p in text.split(",")):
        if part == "flip":
            flip, in_scales = True, False
        elif part.startswith("scales="):
            in_scales, part = True, part[len("scales=") :]
        if in_scales:
            if not part.isdigit() or int(part) <= 0:
                raise ValueError(f"--tta scales are whole numbers of pixels; got {part!r} in {text!r}")
            scales.append(int(part))
        elif part != "flip":
            raise ValueError(f"--tta is flip, scales=S1,S2,... or flip,scales=...; got {text!r}")
    return TTA(flip, tuple(scales))


@contextlib.contextmanager
def at_test_scale(cfg: EasyDict, scale: int) -> Iterator[None]:
    """cfg.TEST at shorter side `scale`, MAX_SIZE in proportion, for the time of the block."""
    before = list(cfg.TEST.SCALES), cfg.TEST.MAX_SIZE
    cfg.TEST.SCALES, cfg.TEST.MAX_SIZE = [scale], round(before[1] * scale / before[0][0])
    try:
        yield
    finally:
        cfg.TEST.SCALES, cfg.TEST.MAX_SIZE = before


def mirrored(detections: dict[str, np.ndarray], width: int) -> dict[str, np.ndarray]:
    """Detections of a mirrored image, mirrored back (inclusive boxes)."""
    boxes = detections["boxes"].copy()
    boxes[:, [0, 2]] = width - 1 - detections["boxes"][:, [2, 0]]
    return {**detections, "boxes": boxes}


def merge_passes(passes: Sequence[dict[str, np.ndarray]], nms: float, keep: int) -> dict[str, np.ndarray]:
    """One image's passes joined, NMS within each class at `nms`, the best `keep` kept."""
    boxes = np.concatenate([p["boxes"] for p in passes]).astype(np.float32).reshape(-1, 4)
    scores = np.concatenate([p["scores"] for p in passes]).astype(np.float32)
    labels = np.concatenate([p["labels"] for p in passes]).astype(np.int64)
    kept = box_ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), nms)
    kept = kept[:keep].numpy()  # by decreasing score
    return {"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]}


def known_scales(cfg: EasyDict) -> list[float]:
    """The shorter sides the model was trained and is tested at."""
    return [s for s in (*cfg.TRAIN.SCALES, *cfg.TEST.SCALES) if isinstance(s, (int, float)) and s > 0]


def far_scales(scales: Sequence[int], known: Sequence[float]) -> list[int]:
    """The scales more than FAR times below or above every one of `known`."""
    return [s for s in scales if known and not min(known) / FAR <= s <= max(known) * FAR]


@functools.cache
def _warn_far(far: tuple[int, ...], known: tuple[float, ...]) -> None:
    log.warning(
        "--tta scales %s are far from the model's own (%s px): objects there have sizes it never saw, "
        "which loses AP; choose scales around %s",
        ",".join(map(str, far)),
        ", ".join(f"{s:g}" for s in sorted(set(known))),
        f"{max(known):g}",
    )


class Augmented:
    """A detector whose detect_arrays runs the passes of `tta` and merges them."""

    def __init__(self, detector, tta: TTA) -> None:
        if tta.scales and get_convention(detector.cfg.CONVENTION).resize_in_model:
            raise ValueError("--tta scales: this model resizes images itself (torchvision's convention); use flip")
        self.detector, self.tta = detector, tta
        self.classes, self.cfg = detector.classes, detector.cfg
        if tta.scales and (far := far_scales(tta.scales, known := known_scales(detector.cfg))):
            _warn_far(tuple(far), tuple(known))

    def detect_arrays(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        passes: list[list[dict[str, np.ndarray]]] = []
        for scale in self.tta.scales or (self.cfg.TEST.SCALES[0],):
            with at_test_scale(self.cfg, scale):
                passes.append(self.detector.detect_arrays(images))
                if self.tta.flip:
                    flipped = self.detector.detect_arrays([np.ascontiguousarray(im[:, ::-1]) for im in images])
                    passes.append([mirrored(d, im.shape[1]) for d, im in zip(flipped, images)])
        test = self.cfg.TEST
        return [merge_passes([p[i] for p in passes], test.NMS, test.MAX_PER_IMAGE) for i in range(len(images))]
