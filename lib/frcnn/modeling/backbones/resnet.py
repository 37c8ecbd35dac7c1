"""ResNet-50/101/152 in the C4 layout: conv1 .. layer3 as the stride-16 base, layer4 then a
spatial mean as the per-RoI head. BatchNorm is frozen everywhere (statistics and affine), and the
first RESNET.FIXED_BLOCKS stages are frozen too, as in the original."""

from __future__ import annotations

from easydict import EasyDict
from torch import nn
from torchvision.models import resnet50, resnet101, resnet152
from torchvision.ops import FrozenBatchNorm2d

from .base import Backbone, BackboneParts, BackboneSpec, MeanPool, freeze

RESNETS = {"res50": resnet50, "res101": resnet101, "res152": resnet152}


def build_resnet(
    name: str, state_dict: dict | None, fixed_blocks: int = 1, caffe_layout: bool = False
) -> BackboneParts:
    """Args:
    name: res50, res101 or res152.
    state_dict: torchvision-layout weights already checked against the model, or None.
    fixed_blocks: 0 freezes conv1 only; 1 also layer1; 2 also layer2; 3 also layer3.
    caffe_layout: Caffe ResNets stride in each stage's first 1x1 conv (not the 3x3), and their
        stem's max pool has no padding and rounds up (kernel 3, stride 2, padding 0, ceil mode):
        torchvision's padding 1 would shift every feature by a pixel (and give 151 rows, not 150,
        for 600). Set for the original's resnet101_caffe.pth and its detectors.
    """
    net = RESNETS[name](weights=None, norm_layer=FrozenBatchNorm2d)
    if caffe_layout:
        net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        for stage in (net.layer2, net.layer3, net.layer4):
            stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    if state_dict is not None:
        net.load_state_dict(state_dict, strict=False)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stages = [stem, net.layer1, net.layer2, net.layer3]
    for stage in stages[: fixed_blocks + 1]:
        freeze(stage)
    base = nn.Sequential(*stages)
    head = nn.Sequential(net.layer4, MeanPool())
    return BackboneParts(Backbone(base, out_channels=1024), head, head_dim=2048)


def _caffe(cfg: EasyDict, fmt: str) -> bool:
    """The Caffe layout for Caffe weights, and also when the config says PRETRAINED_FORMAT caffe
    without a weight file: a checkpoint converted from the original (convert/original.py) is built
    that way, then its weights are loaded over it."""
    return fmt == "caffe" or cfg.get("PRETRAINED_FORMAT") == "caffe"


def _resnet_spec(name: str, torchvision_files: tuple[str, ...], caffe_file: str) -> BackboneSpec:
    return BackboneSpec(
        name,
        lambda cfg, state_dict, fmt: build_resnet(name, state_dict, cfg.RESNET.FIXED_BLOCKS, _caffe(cfg, fmt)),
        reference=lambda: RESNETS[name](weights=None, norm_layer=FrozenBatchNorm2d),
        torchvision_files=torchvision_files,
        caffe_file=caffe_file,
        unused_prefixes=("fc.",),
    )


RES50 = _resnet_spec("res50", ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"), "resnet50_caffe.pth")
RES101 = _resnet_spec("res101", ("resnet101-63fe2227.pth",), "resnet101_caffe.pth")
RES152 = _resnet_spec("res152", ("resnet152-394f9c45.pth",), "resnet152_caffe.pth")
