"""torchvision's Faster R-CNN state_dicts as this project's checkpoints.

Reads a state_dict saved from fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2,
fasterrcnn_mobilenet_v3_large_fpn or fasterrcnn_mobilenet_v3_large_320_fpn (or a ResNet-101 FPN
built the same way), in the key layout of torchvision 0.13 and later or the one before it, with or
without BatchNorm's num_batches_tracked, bare or inside {"model": ...} as torchvision's reference
scripts save it. The architecture is recognised from the keys and shapes; the 320 px MobileNet
(the same keys) from the file name or --set TEST.SCALES [320]. The model is rebuilt under
torchvision's conventions (modeling/conventions.py) with torchvision's own settings below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import build_config, merge_dict, parse_literal, to_plain
from ..data.datasets.coco import COCO_91_CATEGORIES
from ..data.datasets.factory import dataset_spec
from ..modeling.backbones.base import TORCHVISION_PIXELS
from .context import LoadContext, UnknownCheckpointError

# torchvision's FasterRCNN defaults (and, for the MobileNets, its builders' overrides).
TORCHVISION_SETTINGS = {
    "PRETRAINED_FORMAT": "torchvision",
    "POOLING_MODE": "align",
    "TEST": {
        "SCALES": [800],
        "MAX_SIZE": 1333,
        "RPN_PRE_NMS_TOP_N": 1000,
        "RPN_POST_NMS_TOP_N": 1000,
        "RPN_NMS_THRESH": 0.7,
        "RPN_MIN_SIZE": 0.001,
        "SCORE_THRESH": 0.05,
        "NMS": 0.5,
        "MAX_PER_IMAGE": 100,
    },
    "TRAIN": {"SCALES": [800], "MAX_SIZE": 1333, "RPN_PRE_NMS_TOP_N": 2000, "RPN_POST_NMS_TOP_N": 2000},
}
MOBILENET_320_SETTINGS = {
    "TEST": {"SCALES": [320], "MAX_SIZE": 640, "RPN_PRE_NMS_TOP_N": 150, "RPN_POST_NMS_TOP_N": 150}
}

_PREDICTOR = "roi_heads.box_predictor.cls_score.weight"


def _tensors(state: Any) -> Mapping[str, Any] | None:
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        return None
    if _PREDICTOR in state and any(k.startswith("rpn.head.") for k in state):
        return state
    return None


def _checked(tensors: Mapping[str, Any], path: Path) -> int:
    """The number of classes of a torchvision state_dict whose entries are all tensors."""
    not_tensors = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise UnknownCheckpointError(f"{path}: entries that are not tensors: {', '.join(not_tensors[:5])}")
    predictor = tensors[_PREDICTOR]
    if predictor.dim() != 2 or predictor.shape[0] < 2:
        shape = tuple(predictor.shape)
        raise UnknownCheckpointError(f"{path}: {_PREDICTOR} has shape {shape}, not (classes, features)")
    return predictor.shape[0]


def recognises(state: Any) -> bool:
    return _tensors(state) is not None


def recognise_net(keys: set[str], path: Path, overrides: tuple[str, ...] = ()) -> tuple[str, bool]:
    """(--net, whether it is the 320 px MobileNet) from a torchvision state_dict's keys."""
    if "backbone.body.0.0.weight" in keys:
        return "mobilenet_v3_fpn", "320" in path.name or _test_scale(overrides) == 320
    if "backbone.body.layer1.0.conv1.weight" not in keys:
        raise UnknownCheckpointError(
            f"{path}: a torchvision detector with a backbone this project does not build ({sorted(keys)[:4]})"
        )
    blocks = {int(m.group(1)) for k in keys if (m := re.match(r"backbone\.body\.layer3\.(\d+)\.", k))}
    depth = {6: 50, 23: 101}.get(len(blocks))
    if depth is None:
        raise UnknownCheckpointError(
            f"{path}: a ResNet FPN with {len(blocks)} blocks in layer3; only ResNet-50 / 101 are built"
        )
    if "roi_heads.box_head.0.0.weight" in keys:
        if depth != 50:
            raise UnknownCheckpointError(f"{path}: the v2 design is built on ResNet-50 only")
        return "res50_fpn_v2", False
    return f"res{depth}_fpn", False


def _test_scale(overrides: tuple[str, ...]) -> int | None:
    pairs = dict(zip(overrides[::2], overrides[1::2]))
    scales = parse_literal(pairs["TEST.SCALES"]) if "TEST.SCALES" in pairs else None
    return scales[0] if isinstance(scales, list) and scales else None


def rename_key(key: str) -> str:
    """A torchvision key (either layout) -> this project's."""
    key = re.sub(r"^backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.(weight|bias)$", r"backbone.fpn.\1_blocks.\2.0.\3", key)
    key = re.sub(r"^backbone\.", "backbone.base.", key)
    key = re.sub(r"^rpn\.head\.conv\.0\.0\.", "rpn.head.conv.", key)
    key = re.sub(r"^rpn\.head\.conv\.(\d+)\.0\.", lambda m: f"rpn.head.extra_convs.{int(m.group(1)) - 1}.", key)
    key = key.replace("rpn.head.cls_logits.", "rpn.head.objectness.").replace("rpn.head.bbox_pred.", "rpn.head.deltas.")
    return key.replace("roi_heads.box_predictor.", "roi_heads.predictor.")


def convert(state: Any, path: Path, context: LoadContext) -> dict[str, Any]:
    tensors = _tensors(state)
    assert tensors is not None
    num_classes = _checked(tensors, path)
    net, is_320 = recognise_net(set(tensors), path, tuple(context.overrides))
    if context.net not in (None, net):
        raise UnknownCheckpointError(f"{path} holds a torchvision {net} detector; --net {context.net} does not fit it")
    cfg = build_config(net, context.cfgs_dir)
    merge_dict(cfg, TORCHVISION_SETTINGS)
    if is_320:
        merge_dict(cfg, MOBILENET_320_SETTINGS)
    model = {rename_key(k): v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}
    # torchvision keeps its normalisation in the model's transform, not in the state_dict.
    model["pixel_mean"] = torch.tensor(TORCHVISION_PIXELS.mean).view(1, 3, 1, 1)
    model["pixel_std"] = torch.tensor(TORCHVISION_PIXELS.std).view(1, 3, 1, 1)
    return {
        "model": model,
        "config": to_plain(cfg),
        "classes": class_names(num_classes, context),
        "net": net,
        "dataset": context.dataset,
    }


def class_names(num_classes: int, context: LoadContext) -> tuple[str, ...]:
    """COCO's 91 categories (by category id, with torchvision's N/A gaps) for a 91-class model;
    the --dataset's classes when their count fits; else class_1, class_2, ..."""
    if num_classes == len(COCO_91_CATEGORIES):
        return COCO_91_CATEGORIES
    if context.dataset is not None:
        classes = dataset_spec(context.dataset, context.data_dir).test().classes
        if len(classes) == num_classes:
            return tuple(classes)
    return ("__background__",) + tuple(f"class_{i}" for i in range(1, num_classes))
