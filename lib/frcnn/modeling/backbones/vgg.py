"""VGG16: conv1_1 .. conv5_3 as the stride-16 base, fc6 / fc7 as the per-RoI head."""

from __future__ import annotations

from torch import nn
from torchvision.models import vgg16

from .base import Backbone, BackboneParts, BackboneSpec, freeze


def build_vgg16(state_dict: dict | None, fixed_layers: int = 10) -> BackboneParts:
    """Args:
    state_dict: torchvision-layout weights (torchvision's or the original's Caffe conversion),
        already checked against the model; None for random initialisation.
    fixed_layers: leading modules of `features` kept frozen (10 = conv1 and conv2 blocks).
    """
    net = vgg16(weights=None)
    if state_dict is not None:
        net.load_state_dict(state_dict, strict=False)
    base = net.features[:-1]  # drop the last max pool: conv5_3 at stride 16
    for layer in base[:fixed_layers]:
        freeze(layer)
    head = nn.Sequential(nn.Flatten(1), *list(net.classifier)[:-1])  # fc6, ReLU, dropout, fc7, ReLU, dropout
    return BackboneParts(Backbone(base, out_channels=512), head, head_dim=4096)


VGG16 = BackboneSpec(
    "vgg16",
    lambda cfg, state_dict, fmt: build_vgg16(state_dict, cfg.VGG.FIXED_LAYERS),
    reference=lambda: vgg16(weights=None),
    torchvision_files=("vgg16-397923af.pth",),
    caffe_file="vgg16_caffe.pth",
    unused_prefixes=("classifier.6.",),
)
