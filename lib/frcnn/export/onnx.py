"""ONNX export of a detector (opset >= 17): one graph from the resized RGB image and its scale to
final detections in original-image pixels (DetectionGraph), with dynamic height and width, and
what the runtime needs to use it (classes, net, config) stored in the file's metadata.

The export goes through torch.export, which keeps the image's sides symbolic: the shape
arithmetic (anchor grids, pre-NMS top-N = min(RPN_PRE_NMS_TOP_N, anchors of a level), padding)
is computed in the graph for each image, not frozen at the example's size.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from easydict import EasyDict

from ..config import to_plain
from ..data.loader import resize
from ..modeling import FasterRCNN
from ..modeling.conventions import get_convention
from ..modeling.transform import resize_factor
from ..utils.errors import InputError, one_line
from .graph import DetectionGraph

MIN_OPSET = 17
METADATA_KEY = "frcnn"  # metadata_props entry holding {"classes", "net", "dataset", "config"} as JSON
INPUT_NAMES = ("image", "scale")
OUTPUT_NAMES = ("boxes", "scores", "labels")
LARGEST_SIDE = 8192  # the exported graph accepts sides from 16 px up to this


def detector_metadata(detector: Any) -> dict[str, Any]:
    """What export_onnx stores for a loaded detector: classes, net, dataset and its config."""
    return {
        "classes": list(detector.classes),
        "net": detector.net,
        "dataset": detector.dataset,
        "config": to_plain(detector.cfg),
    }


def export_onnx(
    model: FasterRCNN, metadata: Mapping[str, Any], out: str | Path, opset: int = 18, example_size: int = 320
) -> Path:
    """Write `model` (any device; exported on the CPU, in eval mode) to `out` as ONNX.

    metadata: {"classes": [...], "net": str, "dataset": str | None, "config": plain dict}, what
    OnnxDetector needs to prepare images and name classes. example_size: the side of the
    example image traced (any size works; the graph's sides stay symbolic).
    """
    if opset < MIN_OPSET:
        raise ValueError(f"--opset {opset}: the graph needs opset {MIN_OPSET} or newer")
    graph = DetectionGraph(model.cpu().eval())
    example = (torch.rand(1, 3, example_size, example_size + 32) * 255, torch.ones(2))
    side = {
        2: torch.export.Dim("height", min=16, max=LARGEST_SIDE),
        3: torch.export.Dim("width", min=16, max=LARGEST_SIDE),
    }
    with warnings.catch_warnings(), _quiet("onnxscript", "onnx_ir"):
        # torchvision's NMS shape function calls a deprecated torch API, a warning meant for torchvision
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*create_unbacked_symint")
        program = _export(graph, example, side, opset)
    program.model.metadata_props[METADATA_KEY] = json.dumps(dict(metadata))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(out), external_data=False)
    return out


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The optimiser of the ONNX exporter logs every rewrite at INFO; the scripts log at INFO."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _export(graph: DetectionGraph, example: tuple, side: dict, opset: int) -> Any:
    return torch.onnx.export(
        graph,
        example,
        dynamo=True,
        opset_version=opset,
        dynamic_shapes={"image": side, "scale": None},
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        custom_translation_table={torch.ops.torchvision.roi_pool.default: _roi_pool},
        verbose=False,
    )


def _roi_pool(features, rois, spatial_scale: float, pooled_height: int, pooled_width: int):
    """torchvision::roi_pool as ONNX's MaxRoiPool (onnxscript's own translation expects another
    signature). The op's second output, the argmax for its backward, is not used at inference."""
    from onnxscript import INT64
    from onnxscript import opset18 as op

    pooled = op.MaxRoiPool(features, rois, pooled_shape=[pooled_height, pooled_width], spatial_scale=spatial_scale)
    return pooled, op.Cast(pooled, to=INT64.dtype)


def resize_for_model(image: np.ndarray, cfg: EasyDict) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 (h, w, 3) image -> the graph's inputs: image (1, 3, H, W) float32 in 0..255
    and scale (2,) float32, the x and y factors.

    As the PyTorch model gets it: under the original's convention the loader's OpenCV resize of
    the uint8 image; under torchvision's, the model's own bilinear resize (half-pixel centres,
    no antialiasing, size floor(side x factor)), here done before normalisation, which commutes
    with it up to float rounding.
    """
    h, w = image.shape[:2]
    min_size, max_size = cfg.TEST.SCALES[0], cfg.TEST.MAX_SIZE
    if get_convention(cfg.CONVENTION).resize_in_model:
        factor = resize_factor(h, w, min_size, max_size)
        new_h, new_w = math.floor(h * factor), math.floor(w * factor)
        resized = cv2.resize(image.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        scale = (new_w / w, new_h / h)
    else:
        resized, factor = resize(image, min_size, max_size)
        scale = (factor, factor)
    tensor = np.ascontiguousarray(resized.astype(np.float32).transpose(2, 0, 1)[None])
    return tensor, np.asarray(scale, dtype=np.float32)


class ExportedFileError(InputError):
    """An .onnx file that is not a detector written by export.py, or whose graph does not run."""


# What export_onnx stores under METADATA_KEY: each entry's test and what it should be.
_METADATA = {
    "classes": (
        lambda v: isinstance(v, list) and len(v) >= 2 and all(isinstance(c, str) for c in v),
        "a list of at least two class names",
    ),
    "net": (lambda v: isinstance(v, str), "a net name"),
    "dataset": (lambda v: v is None or isinstance(v, str), "a dataset name or null"),
    "config": (lambda v: isinstance(v, dict), "a mapping of config keys"),
}


def read_metadata(custom_metadata: Mapping[str, str], path: str | Path) -> dict[str, Any]:
    """The metadata export_onnx stored, from an ONNX Runtime session's custom metadata map;
    ExportedFileError when it is missing or not of that shape."""
    if METADATA_KEY not in custom_metadata:
        raise ExportedFileError(f"{path} was not written by export.py: it has no '{METADATA_KEY}' metadata")
    try:
        meta = json.loads(custom_metadata[METADATA_KEY])
    except (ValueError, RecursionError) as e:
        raise ExportedFileError(f"{path}: its '{METADATA_KEY}' metadata is not JSON ({one_line(e, 120)})") from None
    if not isinstance(meta, dict):
        raise ExportedFileError(f"{path}: its '{METADATA_KEY}' metadata should be a JSON object")
    for key, (fits, wanted) in _METADATA.items():
        if not fits(meta.get(key)):
            found = type(meta[key]).__name__ if key in meta else "missing"
            raise ExportedFileError(f"{path}: its metadata's '{key}' should be {wanted} (found: {found})")
    return meta
