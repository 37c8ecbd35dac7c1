"""Backbone registry: `--net` name -> Backbone, its input PixelFormat, and where its weights came from."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from easydict import EasyDict
from torchvision.models import mobilenet_v2, resnet50, resnet101, resnet152, vgg16
from torchvision.ops import FrozenBatchNorm2d

from .base import CAFFE_PIXELS, TORCHVISION_PIXELS, Backbone, BackboneParts, PixelFormat
from .mobilenet import build_mobilenet_v2
from .resnet import build_resnet
from .tiny import build_tiny
from .vgg import build_vgg16
from .weights import WeightFileError, check_fit, find_weights, read_state_dict, weight_format

NETS = ("vgg16", "res50", "res101", "res152", "mobilenet_v2", "tiny")
_TORCHVISION_MODELS = {
    "vgg16": lambda: vgg16(weights=None),
    "res50": lambda: resnet50(weights=None, norm_layer=FrozenBatchNorm2d),
    "res101": lambda: resnet101(weights=None, norm_layer=FrozenBatchNorm2d),
    "res152": lambda: resnet152(weights=None, norm_layer=FrozenBatchNorm2d),
    "mobilenet_v2": lambda: mobilenet_v2(weights=None, norm_layer=FrozenBatchNorm2d),
}

log = logging.getLogger(__name__)

__all__ = ["NETS", "Backbone", "BackboneParts", "PixelFormat", "WeightFileError", "build_backbone"]


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
        pretrained: a weight file; None looks for the default files (weights.find_weights).
        data_dir: where data/pretrained_model/ lives.
        use_default_weights: False skips the default files (random initialisation unless
            `pretrained` is given), e.g. when a checkpoint will overwrite every weight anyway.

    Returns the backbone parts, the pixel format its weights expect, and a line saying where the
    weights came from.
    """
    if net not in NETS:
        raise ValueError(f"unknown --net {net!r}; choose one of {', '.join(NETS)}")
    if net == "tiny":
        parts = build_tiny(cfg.TINY.CHANNELS, cfg.TINY.HEAD_DIM, cfg.POOLING_SIZE, cfg.TINY.NORM)
        if pretrained is None:
            return parts, TORCHVISION_PIXELS, "tiny: random initialisation (trained from scratch)"
        path = Path(pretrained)
        parts.backbone.load_state_dict(check_fit(parts.backbone, read_state_dict(path), net, path))
        return parts, TORCHVISION_PIXELS, f"tiny: base weights from {path}"

    path = (
        Path(pretrained) if pretrained is not None else (find_weights(net, data_dir) if use_default_weights else None)
    )
    state_dict, fmt = None, "torchvision"
    if path is not None:
        fmt = weight_format(path, cfg.PRETRAINED_FORMAT)
        with torch.device("meta"):  # only key names and shapes are needed for the check
            reference = _TORCHVISION_MODELS[net]()
        state_dict = check_fit(reference, read_state_dict(path), net, path)
    if net == "vgg16":
        parts = build_vgg16(state_dict, cfg.VGG.FIXED_LAYERS)
    elif net == "mobilenet_v2":
        parts = build_mobilenet_v2(state_dict, cfg.MOBILENET.FIXED_LAYERS)
    else:
        parts = build_resnet(net, state_dict, cfg.RESNET.FIXED_BLOCKS, caffe_layout=fmt == "caffe")
    pixels = CAFFE_PIXELS if fmt == "caffe" else TORCHVISION_PIXELS
    source = (
        f"{net}: {fmt} weights from {path}" if path else f"{net}: no pretrained weights found, random initialisation"
    )
    return parts, pixels, source
