"""MobileNetV2: features[:14] (96 channels, stride 16) as the base, the remaining inverted
residual blocks and the 1280-channel conv then a spatial mean as the per-RoI head.
BatchNorm is frozen, like the ResNets, because detection batches are too small to estimate it."""

from __future__ import annotations

from torch import nn
from torchvision.models import mobilenet_v2
from torchvision.ops import FrozenBatchNorm2d

from .base import Backbone, BackboneParts, BackboneSpec, MeanPool, freeze


def build_mobilenet_v2(state_dict: dict | None, fixed_layers: int = 4) -> BackboneParts:
    """Args:
    state_dict: torchvision-layout weights already checked against the model, or None.
    fixed_layers: leading modules of `features` kept frozen (4 = up to stride 4).
    """
    net = mobilenet_v2(weights=None, norm_layer=FrozenBatchNorm2d)
    if state_dict is not None:
        net.load_state_dict(state_dict, strict=False)
    base = net.features[:14]
    for layer in base[:fixed_layers]:
        freeze(layer)
    head = nn.Sequential(net.features[14:], MeanPool())
    return BackboneParts(Backbone(base, out_channels=96), head, head_dim=1280)


MOBILENET_V2 = BackboneSpec(
    "mobilenet_v2",
    lambda cfg, state_dict, fmt: build_mobilenet_v2(state_dict, cfg.MOBILENET.FIXED_LAYERS),
    reference=lambda: mobilenet_v2(weights=None, norm_layer=FrozenBatchNorm2d),
    torchvision_files=("mobilenet_v2-b0353104.pth",),
    unused_prefixes=("classifier.",),
)
