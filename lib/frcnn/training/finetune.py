"""Training from a whole detector: `trainval_net.py --pretrained FILE` where FILE holds a detector
(this project's checkpoint, a torchvision Faster R-CNN state_dict or the original's checkpoint)
rather than backbone weights.

Every weight is loaded; the run keeps the detector's architecture settings (its anchors, pooling,
box convention: checkpoint.MODEL_KEYS), so that what was learnt still fits; the class-specific
rows of the box predictor are copied for classes whose names match the new dataset's and freshly
initialised for the others.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from easydict import EasyDict

from ..config import merge_pairs, to_plain
from ..convert import LoadContext, as_checkpoint, is_project_checkpoint, original, torchvision_detectors
from ..modeling import FasterRCNN
from ..runs.checkpoint import MODEL_KEYS, config_value
from ..utils.safe_load import safe_torch_load

log = logging.getLogger("frcnn.train")

CLASS_ROWS = {  # key -> rows per class
    "roi_heads.predictor.cls_score.weight": 1,
    "roi_heads.predictor.cls_score.bias": 1,
    "roi_heads.predictor.bbox_pred.weight": 4,
    "roi_heads.predictor.bbox_pred.bias": 4,
}


def read_detector_file(path: str | Path, context: LoadContext) -> dict[str, Any] | None:
    """The file as this project's checkpoint when it holds a whole detector; None when it holds
    something else (backbone weights, which build_backbone reads)."""
    state = safe_torch_load(path)
    kinds = (original.recognises, torchvision_detectors.recognises)
    if not (is_project_checkpoint(state) or any(recognises(state) for recognises in kinds)):
        return None
    return as_checkpoint(state, path, context)


def adopt_architecture(cfg: EasyDict, detector: dict[str, Any], net: str, path: str | Path) -> list[str]:
    """Set cfg's MODEL_KEYS to the detector's; returns 'KEY: old -> new' for each change."""
    if detector["net"] != net:
        raise ValueError(
            f"--pretrained {path} holds a {detector['net']} detector; train it with --net {detector['net']}"
        )
    stored, changes, pairs = detector["config"], [], []
    for key in MODEL_KEYS:
        before, after = config_value(to_plain(cfg), key), config_value(stored, key)
        if after is not None and before != after:
            changes.append(f"{key}: {before} -> {after}")
            pairs += [key, repr(after)]
    merge_pairs(cfg, pairs)
    return changes


def init_from_detector(model: FasterRCNN, detector: dict[str, Any], classes: Sequence[str]) -> list[str]:
    """Load the detector's weights into `model` (built for `classes`); returns the class names
    whose predictor rows were kept."""
    weights = dict(detector["model"])
    old_index = {name: i for i, name in enumerate(detector["classes"])}
    target = model.state_dict()
    kept = [name for name in classes if name in old_index]
    for key, rows in CLASS_ROWS.items():
        old, new = weights[key], target[key].clone()
        if old.shape[0] == rows * len(detector["classes"]) and new.shape[0] == rows * len(classes):
            for i, name in enumerate(classes):
                if name in old_index:
                    j = old_index[name]
                    new[i * rows : (i + 1) * rows] = old[j * rows : (j + 1) * rows]
            weights[key] = new
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"the detector does not fit the model: missing {missing[:6]}, unexpected {unexpected[:6]}")
    return kept


def describe(path: str | Path, detector: dict[str, Any], kept: list[str], classes: Sequence[str]) -> str:
    fresh = [name for name in classes[1:] if name not in kept]
    return (
        f"{detector['net']} detector from {path} ({len(detector['classes']) - 1} classes): every layer loaded; "
        f"class layers kept for {', '.join(kept[1:]) or 'no class'}, new for {', '.join(fresh) or 'none'}"
    )
