"""Backbone registry: `--net` name -> Backbone, its input PixelFormat, and where its weights came from.

A new backbone is one file defining a BackboneSpec (see base.py; vgg.py is the shortest example)
and one entry in BACKBONES below.
"""

from __future__ import annotations

from pathlib import Path

import torch
from easydict import EasyDict

from .base import CAFFE_PIXELS, TORCHVISION_PIXELS, Backbone, BackboneParts, BackboneSpec, PixelFormat
from .folding import fold_frozen_norms
from .fpn import MOBILENET_V2_FPN, MOBILENET_V3_FPN, RES50_FPN, RES50_FPN_V2, RES101_FPN
from .mobilenet import MOBILENET_V2
from .resnet import RES50, RES101, RES152
from .tiny import TINY
from .vgg import VGG16
from .weights import WeightFileError, check_fit, find_weights, read_state_dict, weight_format

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        VGG16,
        RES50,
        RES101,
        RES152,
        MOBILENET_V2,
        TINY,
        RES50_FPN,
        RES50_FPN_V2,
        RES101_FPN,
        MOBILENET_V3_FPN,
        MOBILENET_V2_FPN,
    )
}
NETS = tuple(BACKBONES)

__all__ = ["BACKBONES", "NETS", "Backbone", "BackboneParts", "BackboneSpec", "PixelFormat", "WeightFileError"]
__all__ += ["build_backbone", "has_default_weights"]


def has_default_weights(net: str, data_dir: str | Path = "data") -> bool:
    """Whether `net` finds pretrained weights without --pretrained (weights.find_weights); nets
    trained from scratch by design (no ImageNet reference) count as having them."""
    spec = BACKBONES.get(net)
    return spec is None or spec.reference is None or find_weights(spec, data_dir) is not None


def build_backbone(
    net: str,
    cfg: EasyDict,
    pretrained: str | Path | None = None,
    data_dir: str | Path = "data",
    use_default_weights: bool = True,
) -> tuple[BackboneParts, PixelFormat, str]:
    """Build `net` with pretrained weights when there are any.

    Args:
        net: one of NETS.
        cfg: the configuration (frozen layers, tiny's widths, PRETRAINED_FORMAT, POOLING_SIZE).
        pretrained: a weight file; None looks for the net's default files (weights.find_weights).
        data_dir: where data/pretrained_model/ lives.
        use_default_weights: False skips the default files (random initialisation unless
            `pretrained` is given), e.g. when a checkpoint will overwrite every weight anyway.

    Returns the backbone parts, the pixel format its weights expect, and a line saying where the
    weights came from.
    """
    spec = BACKBONES.get(net)
    if spec is None:
        raise ValueError(f"unknown --net {net!r}; choose one of {', '.join(NETS)}")
    path = Path(pretrained) if pretrained is not None else None
    if path is None and use_default_weights:
        path = find_weights(spec, data_dir)
    # Without a file, the configured format (a checkpoint's config records the one it was trained
    # with); nets trained from scratch take torchvision's.
    fmt = "caffe" if spec.reference is not None and cfg.PRETRAINED_FORMAT == "caffe" else "torchvision"
    if spec.reference is None:  # a weight file holds the Backbone itself
        parts = spec.build(cfg, None, fmt)
        if path is not None:
            parts.backbone.load_state_dict(check_fit(parts.backbone, read_state_dict(path), spec, path))
    else:
        state_dict = None
        if path is not None:
            fmt = weight_format(path, cfg.PRETRAINED_FORMAT)
            with torch.device("meta"):  # only key names and shapes are needed for the check
                reference = spec.reference()
            state_dict = check_fit(reference, read_state_dict(path), spec, path)
        parts = spec.build(cfg, state_dict, fmt)
    fold_frozen_norms(parts.backbone)
    fold_frozen_norms(parts.head)
    pixels = CAFFE_PIXELS if fmt == "caffe" else TORCHVISION_PIXELS
    return parts, pixels, _weight_source(spec, path, fmt)


def _weight_source(spec: BackboneSpec, path: Path | None, fmt: str) -> str:
    if path is not None:
        return f"{spec.name}: {fmt if spec.reference else 'base'} weights from {path}"
    if spec.reference is None:
        return f"{spec.name}: random initialisation (trained from scratch)"
    return f"{spec.name}: no pretrained weights found, random initialisation"
