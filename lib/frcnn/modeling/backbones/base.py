"""What every backbone provides: a base giving feature maps, a per-RoI head, and its input format.

Shapes: N images, C base channels, R RoIs, P pooled size, D head output size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from easydict import EasyDict
from torch import Tensor, nn


@dataclass(frozen=True)
class PixelFormat:
    """How a backbone wants its input: channel order and per-channel mean / std in 0..255 units.

    The model receives RGB uint8 images and computes (x[channel order] - mean) / std itself, so a
    checkpoint always carries the normalisation it was trained with.
    """

    channel_order: str  # "RGB" or "BGR"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# torchvision's ImageNet weights: RGB in [0, 1] normalised by ImageNet mean / std.
TORCHVISION_PIXELS = PixelFormat("RGB", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
# The original's Caffe-converted weights: BGR in 0..255 minus the pixel means, no scaling.
CAFFE_PIXELS = PixelFormat("BGR", (102.9801, 115.9465, 122.7717), (1.0, 1.0, 1.0))


class Backbone(nn.Module):
    """The convolutional base, (N, 3, H, W) -> a list of L feature maps (N, C, H/s, W/s), one per
    stride s in `strides`: L = 1 (stride 16) for the original's nets, a pyramid for FPN nets.

    Attributes every backbone has: out_channels (C, the same at every level), strides (one per
    level), pooled_levels (the first this many levels are where RoIs are pooled from; the rest
    serve the RPN only).

    Args:
        base: the trunk: a module giving one feature map, or a dict of them in level order.
        out_channels: C.
        strides: each level's total stride ((16,) for every single-level backbone here).
        pooled_levels: how many leading levels RoIs are pooled from.
    """

    def __init__(
        self, base: nn.Module, out_channels: int, strides: tuple[int, ...] = (16,), pooled_levels: int = 1
    ) -> None:
        super().__init__()
        self.base = base
        self.out_channels = out_channels
        self.strides = tuple(strides)
        self.pooled_levels = pooled_levels

    def forward(self, images: Tensor) -> list[Tensor]:
        features = self.base(images)
        return list(features.values()) if isinstance(features, dict) else [features]


@dataclass
class BackboneParts:
    """What a backbone builder returns: the base, the per-RoI head (R, C, P, P) -> (R, D), and D."""

    backbone: Backbone
    head: nn.Module
    head_dim: int


@dataclass(frozen=True)
class BackboneSpec:
    """One `--net`: how to build it and which weight files fit it. Each backbone file defines one;
    backbones/__init__.py registers it in one line.

    name: the --net name.
    build: (cfg, state_dict or None, weight format "torchvision" or "caffe") -> BackboneParts;
        the state_dict is already checked against `reference`.
    reference: builds the ImageNet classifier whose key layout weight files use (on the meta
        device, to check a file's keys and shapes); None for nets trained from scratch, whose
        weight files hold the Backbone's own state_dict.
    torchvision_files: torchvision's ImageNet weight file names, looked for in the torch hub cache.
    caffe_file: the original's Caffe conversion, looked for in data/pretrained_model/.
    unused_prefixes: keys of `reference` that detection never uses (its classifier): a file may lack them.
    """

    name: str
    build: Callable[[EasyDict, dict | None, str], BackboneParts]
    reference: Callable[[], nn.Module] | None = None
    torchvision_files: tuple[str, ...] = ()
    caffe_file: str | None = None
    unused_prefixes: tuple[str, ...] = ()


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients into `module`'s parameters."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class MeanPool(nn.Module):
    """(R, D, h, w) -> (R, D): the spatial mean the original takes after ResNet's layer4."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))
