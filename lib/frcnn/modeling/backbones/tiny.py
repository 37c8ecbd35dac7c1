"""`tiny`: a small net trained from scratch, the built-in dataset's default on CPU.

A stride-2 stem conv, then three stages of (3x3 conv stride 2, 3x3 conv), each conv followed by
GroupNorm and ReLU, reach stride 16; the per-RoI head is two fully connected layers, like VGG's
fc6 / fc7 but narrow. Little is spent at high resolution, where convolutions cost most on a CPU.
Normalisation (TINY.NORM): BatchNorm by default, trained with each batch's statistics, because it
learns fastest from scratch (on shapes, one epoch reached 0.54 mAP with BatchNorm and 0.30 with
GroupNorm, same settings otherwise). GroupNorm is the alternative whose statistics are per image,
so results do not depend on how a batch is split across processes.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .base import Backbone, BackboneParts, BackboneSpec


def _conv(in_channels: int, out_channels: int, stride: int, norm: str) -> nn.Sequential:
    if norm == "group":
        layer: nn.Module = nn.GroupNorm(min(8, out_channels // 4), out_channels)
    elif norm == "batch":
        layer = nn.BatchNorm2d(out_channels)
    else:
        raise ValueError(f"TINY.NORM must be group or batch; got {norm!r}")
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False), layer, nn.ReLU(inplace=True)
    )


def build_tiny(
    channels: Sequence[int] = (32, 64, 128, 192), head_dim: int = 512, pooled_size: int = 7, norm: str = "group"
) -> BackboneParts:
    """Args:
    channels: output channels of the stem and the three stages (the last is the base's C).
    head_dim: width of the two fully connected head layers (D).
    pooled_size: P of the RoI features the head receives.
    norm: "group" (GroupNorm) or "batch" (BatchNorm, statistics of each batch in training).
    """
    if len(channels) != 4:
        raise ValueError(f"TINY.CHANNELS needs 4 widths (stem and three stages); got {list(channels)}")
    layers: list[nn.Module] = [_conv(3, channels[0], 2, norm)]
    in_channels = channels[0]
    for out_channels in channels[1:]:
        layers += [_conv(in_channels, out_channels, 2, norm), _conv(out_channels, out_channels, 1, norm)]
        in_channels = out_channels
    base = nn.Sequential(*layers)
    for m in base.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    head = nn.Sequential(
        nn.Flatten(1),
        nn.Linear(in_channels * pooled_size * pooled_size, head_dim),
        nn.ReLU(inplace=True),
        nn.Linear(head_dim, head_dim),
        nn.ReLU(inplace=True),
    )
    return BackboneParts(Backbone(base, out_channels=in_channels), head, head_dim=head_dim)


TINY = BackboneSpec(
    "tiny",
    lambda cfg, state_dict, fmt: build_tiny(cfg.TINY.CHANNELS, cfg.TINY.HEAD_DIM, cfg.POOLING_SIZE, cfg.TINY.NORM),
)
