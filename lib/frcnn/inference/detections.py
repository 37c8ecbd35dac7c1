"""What both runtimes (torch_detector.py, onnx_detector.py) share: the images a detector takes,
the `Detections` it gives, and the step between them. The Python API: `from frcnn import Detector`.

    det = Detector.from_file("models/tiny/shapes/faster_rcnn_1_4_600.pth")
    found = det("images/test_000.jpg", threshold=0.5)   # or an RGB array, a PIL image, or a list
    found.boxes, found.scores, found.labels, found.names
    found = det("images/test_000.jpg", threshold="auto")   # each class's own threshold, if chosen

Images may be a path, an RGB uint8 array (h, w, 3), a PIL image, or a list of these (detected in
batches). Boxes are in the given image's own pixels, BoxMode.XYXY: 0-based x1, y1, x2, y2 with
both corners inside the box (a box covering one pixel has x2 = x1, width x2 - x1 + 1).

A large image with small objects is detected in tiles (slicing.py, SAHI's sliced inference):

    found = det("mosaic.tif", threshold=0.5, tile=400, overlap=0.2, batch_size=4)

Test-time augmentation (tta.py): `det(image, tta="flip")`, or "flip,scales=480,600,800".
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Union

import numpy as np

from ..data.loader import read_image
from .slicing import detect_sliced, own_tiling
from .tta import Augmented, parse_tta

ImageInput = Union[str, Path, np.ndarray, Any]  # Any: a PIL image


class Runtime(Protocol):
    """What `detect` needs of a detector: its class names, and raw detections of RGB arrays
    (boxes (D, 4) BoxMode.XYXY in each image's own pixels, scores (D,), labels (D,))."""

    classes: tuple[str, ...]

    def detect_arrays(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]: ...


@dataclass
class Detections:
    """One image's detections, best first.

    boxes: (D, 4) float32, x1, y1, x2, y2 in the image's own pixels (BoxMode.XYXY, inclusive corners).
    scores: (D,) float32, decreasing.
    labels: (D,) int64, indices into Detector.classes (1..K-1; 0 is the background).
    names: the D class names.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.scores)


def as_rgb(image: ImageInput) -> np.ndarray:
    """A path, an RGB uint8 (h, w, 3) array or a PIL image -> an RGB uint8 (h, w, 3) array."""
    if isinstance(image, (str, Path)):
        return read_image(str(image))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an image array must be RGB uint8 of shape (h, w, 3); got {image.dtype} {image.shape}")
        return image
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image.Image, without importing PIL
        return np.asarray(image.convert("RGB"))
    raise TypeError(f"an image is a path, an RGB uint8 array or a PIL image; got {type(image).__name__}")


def class_thresholds(detector: Runtime, threshold: float | str) -> np.ndarray | None:
    """For threshold="auto", the detector's score threshold per class index (config
    TEST.CLASS_THRESHOLDS, chosen by test_net.py --threshold_rule); None for a number."""
    if isinstance(threshold, numbers.Real) and not isinstance(threshold, bool):
        return None
    if threshold != "auto":
        raise ValueError(f"threshold is a score or 'auto' (the per-class thresholds); got {threshold!r}")
    chosen = list(getattr(getattr(detector, "cfg", None), "TEST", {}).get("CLASS_THRESHOLDS", []) or [])
    if not chosen:
        raise ValueError(
            "threshold='auto': this detector has no per-class thresholds; choose them on held-out images "
            "with test_net.py --threshold_rule f1, or give a score"
        )
    if len(chosen) != len(detector.classes):
        raise ValueError(f"{len(chosen)} class thresholds (TEST.CLASS_THRESHOLDS) for {len(detector.classes)} classes")
    return np.asarray(chosen, np.float32)


def detect(
    detector: Runtime,
    images: ImageInput | Sequence[ImageInput],
    threshold: float | str = 0.0,
    batch_size: int = 1,
    tile: int | None = None,
    overlap: float | None = None,
    tta: str | None = None,
    **slicing: Any,
) -> Detections | list[Detections]:
    """Detections (score >= threshold) for one image, or a list of them for a list of images;
    threshold="auto": each class's own (class_thresholds).

    tile=SIZE: each image in SIZE x SIZE tiles overlapping by `overlap` (default 0.2) of SIZE
    (slicing.detect_sliced, `batch_size` tiles per pass), the tiles' detections merged; `slicing`
    takes detect_sliced's other options (merge, match_metric, match_threshold, whole_image,
    class_agnostic, progress). tile=None: the tiles the model was trained on (config TILES), if
    any; tile=0 or no tiles: each image whole, `batch_size` images per pass. tta="flip" (or
    "scales=480,600,800", "flip,scales=..."): each image (each tile) also detected mirrored / at
    those scales, the passes merged (tta.py).
    """
    per_class = class_thresholds(detector, threshold)
    lowest = float(threshold) if per_class is None else float(per_class[1:].min(initial=1.0))
    tile, overlap = own_tiling(detector, tile, overlap)
    if tta:
        detector = Augmented(detector, parse_tta(tta))
    if tile is None and slicing:
        raise ValueError(f"{', '.join(sorted(slicing))} apply to sliced inference: give tile=SIZE too")
    single = not isinstance(images, (list, tuple))
    arrays = [as_rgb(image) for image in ([images] if single else images)]
    step = max(batch_size, 1)
    if tile is None:
        outs = (out for i in range(0, len(arrays), step) for out in detector.detect_arrays(arrays[i : i + step]))
    else:
        outs = (detect_sliced(detector, a, tile, overlap, batch_size=step, threshold=lowest, **slicing) for a in arrays)
    found = [detections_of(detector, out, lowest if per_class is None else per_class) for out in outs]
    return found[0] if single else found


def detections_of(detector: Runtime, out: dict[str, np.ndarray], threshold: float | np.ndarray = 0.0) -> Detections:
    """A detect_arrays (or detect_sliced) result as Detections, scores below threshold dropped
    (an array: one threshold per class index, where 1.0 switches the class off)."""
    labels = out["labels"].astype(np.int64)
    if isinstance(threshold, np.ndarray):
        keep = (out["scores"] >= threshold[labels]) & (threshold[labels] < 1.0)
    else:
        keep = out["scores"] >= threshold
    labels = labels[keep]
    names = [detector.classes[int(label)] for label in labels]
    return Detections(out["boxes"][keep].astype(np.float32), out["scores"][keep], labels, names)


class DetectorBase:
    """What both runtimes answer: `detector(images, threshold, batch_size, tile=None, ...)` is
    `detect(detector, ...)`, one signature for both."""

    __call__ = detect
