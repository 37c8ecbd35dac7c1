"""The original jwyang/faster-rcnn.pytorch's detector files, read as this project's checkpoints.

Its files (`faster_rcnn_<session>_<epoch>_<step>.pth`, the models of its README) hold `model`, a
state_dict of RCNN_base.* / RCNN_top.* (the backbone), RCNN_rpn.* and RCNN_cls_score.* /
RCNN_bbox_pred.* keys, then `pooling_mode`, `class_agnostic` and its training bookkeeping. They
say neither the backbone nor the class names: --net names the first, and --dataset the second, in
the order the original's dataset readers gave them (VOC's devkit order, COCO's category ids, the
Visual Genome vocabulary file).

What changes on the way, so that the converted model computes what the original did:
- key names (the prefix tables below);
- the RPN scores: the original has two channels per anchor (background for anchors 0..A-1, then
  foreground for A..2A-1) and a two-way softmax between them; this project has one logit per
  anchor and a sigmoid. softmax's foreground probability is sigmoid(fg - bg), so the logit layer
  is W_fg - W_bg, b_fg - b_bg;
- the input: the original fed BGR minus the Caffe pixel means, at 600 / 1000. The converted
  config says PRETRAINED_FORMAT caffe (so the model takes BGR and ResNets get the Caffe layout),
  and the model's pixel_mean and pixel_std buffers carry the means;
- the box-delta normalisation (0.1, 0.1, 0.2, 0.2), RoIAlign's settings and the minimum proposal
  size (none) are set in the config; --set pairs still apply on top.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from easydict import EasyDict
from torch import Tensor

from ..config import AUTO, build_config, default_config, to_plain
from ..data.datasets.coco import COCO_91_CATEGORIES, COCOFormatDataset
from ..data.datasets.factory import DATASET_NAMES, dataset_spec
from ..modeling import build_model
from ..modeling.backbones.base import CAFFE_PIXELS
from ..utils.errors import InputError
from .context import LoadContext

log = logging.getLogger("frcnn.convert")

ORIGINAL_NETS = ("vgg16", "res50", "res101", "res152")
# (the original's key prefix, this project's), per backbone; the heads are common to all.
_VGG16 = (
    ("RCNN_base.", "backbone.base."),  # vgg.features without its last max pool: same indices
    ("RCNN_top.0.", "roi_heads.box_head.1."),  # fc6 (box_head.0 is the flatten)
    ("RCNN_top.3.", "roi_heads.box_head.4."),  # fc7
)
_RESNET = (
    ("RCNN_base.0.", "backbone.base.0.0."),  # conv1
    ("RCNN_base.1.", "backbone.base.0.1."),  # bn1
    ("RCNN_base.4.", "backbone.base.1."),  # layer1 (RCNN_base.2, .3 are the ReLU and max pool)
    ("RCNN_base.5.", "backbone.base.2."),
    ("RCNN_base.6.", "backbone.base.3."),
    ("RCNN_top.0.", "roi_heads.box_head.0."),  # layer4
)
_HEADS = (
    ("RCNN_rpn.RPN_Conv.", "rpn.head.conv."),
    ("RCNN_rpn.RPN_cls_score.", "rpn.head.objectness."),
    ("RCNN_rpn.RPN_bbox_pred.", "rpn.head.deltas."),
    ("RCNN_cls_score.", "roi_heads.predictor.cls_score."),
    ("RCNN_bbox_pred.", "roi_heads.predictor.bbox_pred."),
)
RPN_SCORES = "RCNN_rpn.RPN_cls_score."
ORIGINAL_POOLING_MODES = ("align", "pool", "crop")  # its cfg.POOLING_MODE choices
CLASS_SCORES = "RCNN_cls_score.weight"
_BUFFERS = ("pixel_mean", "pixel_std")  # the model's input normalisation, not in the original's file
# What the original fixed rather than configured: its box-delta normalisation, its input format
# (BGR minus the Caffe means, Caffe ResNets), its RoIAlign (pytorch-1.0 branch: an adaptive
# number of samples per bin, no half-pixel offset), and no minimum proposal size (its proposal
# layer's _filter_boxes call is commented out on both branches, so RPN_MIN_SIZE never applied).
_ORIGINAL_SETTINGS = (
    "TEST.RPN_MIN_SIZE",
    "0",
    "TRAIN.BBOX_NORMALIZE_MEANS",
    "[0.0, 0.0, 0.0, 0.0]",
    "TRAIN.BBOX_NORMALIZE_STDS",
    "[0.1, 0.1, 0.2, 0.2]",
    "PRETRAINED_FORMAT",
    "caffe",
    "ROI_ALIGN_SAMPLING_RATIO",
    "0",
    "ROI_ALIGN_ALIGNED",
    "False",
)


class OriginalCheckpointError(InputError):
    """An original's file that cannot be read as the model --net and --dataset describe."""


class ClassCountError(OriginalCheckpointError):
    """An original's file trained on another number of classes than --dataset has."""


def recognises(state: Any) -> bool:
    """A dict whose `model` holds the original's RCNN_base.* keys (DataParallel prefix or not)."""
    model = state.get("model") if isinstance(state, Mapping) else None
    return isinstance(model, Mapping) and any(str(k).removeprefix("module.").startswith("RCNN_base.") for k in model)


def convert(state: Any, path: Path, context: LoadContext) -> dict[str, Any]:
    """The original's checkpoint `state` (read from `path`) in this project's checkpoint layout.

    From `context`: net (--net, required), dataset (default: the folder the file
    sits in when that names a dataset, as the original's models/<net>/<dataset>/ did, else
    pascal_voc, the original's default), data_dir, cfgs_dir and overrides (--set pairs, which go
    into the stored config before what the file itself says).

    Raises OriginalCheckpointError naming the keys that do not fit, ClassCountError when the file
    has another number of classes than --dataset.
    """
    net = _net(context.net, path)
    weights = _weights(state["model"], path)
    dataset = _dataset_name(context.dataset, path)
    cfg = build_config(
        net,
        context.cfgs_dir,
        dataset_spec(dataset, context.data_dir).profile,
        set_cfgs=[*context.overrides, *_ORIGINAL_SETTINGS, *_file_settings(state, weights, net)],
    )
    if cfg.ANCHOR_SCALES == AUTO:  # a dataset with chosen anchors: the original only had its fixed ones
        cfg.ANCHOR_SCALES = default_config().ANCHOR_SCALES
    classes = dataset_classes(dataset, context.data_dir, cfg.VG_VERSION)
    _check_class_count(weights, classes, dataset, path)
    with torch.device("meta"):  # key names and shapes only
        model, _ = build_model(cfg, net, len(classes), use_default_weights=False)
    _check_fit(weights, _expected_layout(model.state_dict(), net), net, path, cfg)
    return {
        "model": _to_project(weights, net),
        "config": to_plain(cfg),
        "classes": classes,
        "net": net,
        "dataset": dataset,
    }


def dataset_classes(dataset: str, data_dir: str | Path = "data", vg_version: str = "1600-400-20") -> tuple[str, ...]:
    """Class names of --dataset, background first, as the original ordered them.

    COCO's come from its test annotation file when there is one (category-id order, what this
    project trains and evaluates with), else from COCO's 80 names in id order, so the demo runs
    without the dataset.
    """
    test = dataset_spec(dataset, data_dir, vg_version).test()
    if isinstance(test, COCOFormatDataset) and not test.annotation_file.is_file():
        log.info("%s not found: COCO's 80 class names in category-id order", test.annotation_file)
        return tuple(name for name in COCO_91_CATEGORIES if name != "N/A")
    return tuple(test.classes)


def _net(net: str | None, path: Path) -> str:
    if net is None:
        raise OriginalCheckpointError(
            f"{path} is a checkpoint of the original faster-rcnn.pytorch, which does not say its backbone: "
            f"name it with --net ({', '.join(ORIGINAL_NETS)})"
        )
    if net not in ORIGINAL_NETS:
        raise OriginalCheckpointError(
            f"{path} is a checkpoint of the original faster-rcnn.pytorch, whose nets are "
            f"{', '.join(ORIGINAL_NETS)}; --net {net} is not one of them"
        )
    return net


def _dataset_name(dataset: str | None, path: Path) -> str:
    if dataset is not None:
        return dataset
    if path.parent.name in DATASET_NAMES:
        log.info("%s: class names of %s (the folder it is in; --dataset names another)", path, path.parent.name)
        return path.parent.name
    log.info("%s: class names of pascal_voc, the original's default (--dataset names another)", path)
    return "pascal_voc"


def _weights(model: Mapping, path: Path) -> dict[str, Tensor]:
    """The file's tensors by name, without DataParallel's prefix and BatchNorm's step counters
    (this project's BatchNorm is frozen and has none)."""
    weights = {str(k).removeprefix("module."): v for k, v in model.items()}
    not_tensors = [k for k, v in weights.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise OriginalCheckpointError(f"{path}: 'model' entries that are not tensors: {', '.join(not_tensors[:5])}")
    return {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}


def _file_settings(state: Mapping, weights: Mapping[str, Tensor], net: str) -> list[str]:
    """--set pairs for what the file says: its pooling mode and class-agnostic box regression
    (from the box layer's shape when the file has no flag)."""
    agnostic = state.get("class_agnostic")
    if not isinstance(agnostic, (bool, int)):  # absent (or not a flag): the box layer's shape says
        boxes, scores = _rows(weights.get("RCNN_bbox_pred.weight")), _rows(weights.get(CLASS_SCORES))
        agnostic = boxes == 4 and scores not in (None, 1)
    pairs = ["CLASS_AGNOSTIC", str(bool(agnostic))]
    mode = state.get("pooling_mode")
    if mode in ORIGINAL_POOLING_MODES:
        pairs += ["POOLING_MODE", mode]
        if mode == "crop" and net in ("vgg16", "res101"):
            log.warning(
                "pooling_mode crop: the original's cfgs/%s.yml cropped straight to 7 x 7 (CROP_RESIZE_WITH_MAX_POOL "
                "False); this project crops 14 x 14 and max-pools, so detections differ a little",
                net,
            )
    return pairs


def _rows(tensor: Tensor | None) -> int | None:
    """The first dimension of a tensor from the file (None for none, or for a 0-d one)."""
    return tensor.shape[0] if tensor is not None and tensor.dim() > 0 else None


def _check_class_count(weights: Mapping[str, Tensor], classes: tuple[str, ...], dataset: str, path: Path) -> None:
    rows = _rows(weights.get(CLASS_SCORES))
    if rows is not None and rows != len(classes):
        raise ClassCountError(
            f"{path} was trained on {rows - 1} classes ({CLASS_SCORES} has {rows} rows, "
            f"background included), but --dataset {dataset} has {len(classes) - 1}: name the dataset it was "
            "trained on with --dataset (the original's: pascal_voc 20, coco 80, imagenet 200, vg 1600)"
        )


def _rename(key: str, table: tuple[tuple[str, str], ...]) -> str | None:
    """`key` with its prefix replaced by the table's (from, to) pair that fits, or None."""
    for old, new in table:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def _table(net: str) -> tuple[tuple[str, str], ...]:
    return (_VGG16 if net == "vgg16" else _RESNET) + _HEADS


def _expected_layout(ours: Mapping[str, Tensor], net: str) -> dict[str, tuple[int, ...]]:
    """The original's key names and shapes for this project's model `ours` (its state_dict)."""
    back = tuple((new, old) for old, new in _table(net))
    expected = {}
    for key, value in ours.items():
        if key in _BUFFERS:
            continue
        original = _rename(key, back) or key
        shape = tuple(value.shape)
        if original.startswith(RPN_SCORES):  # a (background, foreground) pair per anchor
            shape = (2 * shape[0], *shape[1:])
        expected[original] = shape
    return expected


def _check_fit(
    weights: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]], net: str, path: Path, cfg: EasyDict
) -> None:
    """Raise OriginalCheckpointError naming the missing, unexpected and mis-shaped keys."""
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [
        f"{k} (file {tuple(weights[k].shape)}, model {expected[k]})"
        for k in expected
        if k in weights and tuple(weights[k].shape) != expected[k]
    ]
    if not (missing or unexpected or wrong):
        return
    lines = [f"{path} does not fit the original's --net {net} with this configuration:"]
    for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)):
        if keys:
            lines.append(f"{title}: {', '.join(keys[:6])}" + (f", ... ({len(keys)} in all)" if len(keys) > 6 else ""))
    if any(k.startswith(("RCNN_base.", "RCNN_top.")) for k in missing + unexpected):
        lines.append(f"is --net {net} the backbone it was trained with? ({', '.join(ORIGINAL_NETS)})")
    scores = _rows(weights.get(RPN_SCORES + "weight"))
    if scores is not None and any(k.startswith(RPN_SCORES) for k in wrong):
        lines.append(
            f"the file has {scores // 2} anchors per cell, ANCHOR_SCALES {cfg.ANCHOR_SCALES} x "
            f"ANCHOR_RATIOS {cfg.ANCHOR_RATIOS} give {len(cfg.ANCHOR_SCALES) * len(cfg.ANCHOR_RATIOS)}: "
            "name its --dataset, or its scales with --set ANCHOR_SCALES [...]"
        )
    raise OriginalCheckpointError(lines[0] + " " + "; ".join(lines[1:]))


def _to_project(weights: Mapping[str, Tensor], net: str) -> dict[str, Tensor]:
    """The file's tensors under this project's names, with the RPN scores as one logit per anchor
    and the input normalisation the original used."""
    table = _table(net)
    model = {}
    for key, value in weights.items():
        value = value.float() if value.is_floating_point() else value
        if key.startswith(RPN_SCORES):
            anchors = value.shape[0] // 2
            value = value[anchors:] - value[:anchors]  # foreground minus background
        model[_rename(key, table)] = value.contiguous()
    model["pixel_mean"] = torch.tensor(CAFFE_PIXELS.mean, dtype=torch.float32).view(1, 3, 1, 1)
    model["pixel_std"] = torch.tensor(CAFFE_PIXELS.std, dtype=torch.float32).view(1, 3, 1, 1)
    return model
