"""Feature pyramid backbones, built exactly as torchvision builds its Faster R-CNN models:
torchvision's BackboneWithFPN (an IntermediateLayerGetter body and a FeaturePyramidNetwork with a
max-pooled extra level) and its box heads, so that torchvision's detector weights load key for key
(convert/torchvision_detectors.py) and give the same numbers.

- res50_fpn / res101_fpn: fasterrcnn_resnet50_fpn's design (v1): C2..C5 -> P2..P5 (strides 4..32)
  plus P6 (stride 64, RPN only); RoIs pooled from P2..P5; two fc layers (fc6, fc7) of 1024.
- res50_fpn_v2: fasterrcnn_resnet50_fpn_v2: BatchNorm in the pyramid's convolutions, a box head of
  four 3x3 convolutions with BatchNorm and one fc of 1024 (its RPN head has two convolutions:
  RPN_CONV_DEPTH 2 in cfgs/res50_fpn_v2.yml).
- mobilenet_v3_fpn: fasterrcnn_mobilenet_v3_large_fpn (and its 320 px variant, the same weights'
  layout): the last two stages (both stride 32) -> two maps plus a pooled one; every RoI is pooled
  from the first (both pooled levels have stride 32, so the level rule picks the first).
- mobilenet_v2_fpn: no torchvision detector of this design; MobileNetV2's last block at stride 8
  (32 channels), at stride 16 (96) and its final conv at stride 32 (1280) -> P3, P4, P5 plus a
  pooled P6 (RPN only); RoIs pooled from P3..P5; two fc layers of 1024. Stride 8 is for objects
  of 10-40 px (tree crowns, cells), which the single-level nets' stride 16 sees as a few cells;
  it uses the only ImageNet file of this project reachable offline (MobileNetV2's).

The body's BatchNorm is frozen and its first stages too (RESNET.FIXED_BLOCKS for the ResNets,
torchvision's default of 3 trainable layers being FIXED_BLOCKS 1), as torchvision builds them
from ImageNet weights; with BACKBONE_FROM_SCRATCH (no pretrained weights: set by the trainer)
BatchNorm trains and nothing is frozen, as torchvision builds them without weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from easydict import EasyDict
from torch import nn
from torchvision.models import mobilenet_v2, mobilenet_v3_large, resnet50, resnet101
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, TwoMLPHead
from torchvision.ops import FrozenBatchNorm2d

from .base import Backbone, BackboneParts, BackboneSpec, freeze

FPN_CHANNELS = 256
HEAD_DIM = 1024
RESNET_BUILDERS = {"res50_fpn": resnet50, "res50_fpn_v2": resnet50, "res101_fpn": resnet101}
# torchvision trains the last 3 of MobileNetV3's 6 stages when it starts from ImageNet weights.
MOBILENET_V3_TRAINABLE_STAGES = 3


def _box_head(pool_size: int, v2: bool) -> nn.Module:
    if v2:
        return FastRCNNConvFCHead(
            (FPN_CHANNELS, pool_size, pool_size), [256, 256, 256, 256], [HEAD_DIM], norm_layer=nn.BatchNorm2d
        )
    return TwoMLPHead(FPN_CHANNELS * pool_size**2, HEAD_DIM)


def build_resnet_fpn(name: str, cfg: EasyDict, state_dict: dict | None) -> BackboneParts:
    """Args:
    name: res50_fpn, res50_fpn_v2 or res101_fpn.
    cfg: RESNET.FIXED_BLOCKS (frozen stages after conv1), POOLING_SIZE, BACKBONE_FROM_SCRATCH.
    state_dict: torchvision-layout ImageNet weights already checked against the model, or None.
    """
    scratch = cfg.BACKBONE_FROM_SCRATCH and state_dict is None
    net = RESNET_BUILDERS[name](weights=None, norm_layer=nn.BatchNorm2d if scratch else FrozenBatchNorm2d)
    if state_dict is not None:
        net.load_state_dict(state_dict, strict=False)
    fixed = 0 if scratch else cfg.RESNET.FIXED_BLOCKS
    for stage in ([] if scratch else [net.conv1]) + [getattr(net, f"layer{i}") for i in range(1, fixed + 1)]:
        freeze(stage)
    v2 = name == "res50_fpn_v2"
    pyramid = BackboneWithFPN(
        net,
        {f"layer{k}": str(k - 1) for k in (1, 2, 3, 4)},
        [256, 512, 1024, 2048],
        FPN_CHANNELS,
        norm_layer=nn.BatchNorm2d if v2 else None,
    )
    backbone = Backbone(pyramid, FPN_CHANNELS, strides=(4, 8, 16, 32, 64), pooled_levels=4)
    return BackboneParts(backbone, _box_head(cfg.POOLING_SIZE, v2), HEAD_DIM)


def _mobilenet_features(
    builder: Callable[..., nn.Module], cfg: EasyDict, state_dict: dict | None
) -> tuple[nn.Sequential, bool]:
    """The ImageNet net's `features` (BatchNorm frozen unless trained from scratch), and whether
    it is trained from scratch."""
    scratch = cfg.BACKBONE_FROM_SCRATCH and state_dict is None
    net = builder(weights=None, norm_layer=nn.BatchNorm2d if scratch else FrozenBatchNorm2d)
    if state_dict is not None:
        net.load_state_dict(state_dict, strict=False)
    return net.features, scratch


def _features_pyramid(
    features: nn.Sequential, returned: Sequence[int], strides: tuple[int, ...], pooled: int, pool_size: int
) -> BackboneParts:
    """A pyramid over the outputs of `features[i]` for i in `returned` (plus a pooled level), RoIs
    pooled from its first `pooled` levels, and the two-fc box head."""
    pyramid = BackboneWithFPN(
        features,
        {str(index): str(level) for level, index in enumerate(returned)},
        [features[i].out_channels for i in returned],
        FPN_CHANNELS,
    )
    backbone = Backbone(pyramid, FPN_CHANNELS, strides=strides, pooled_levels=pooled)
    return BackboneParts(backbone, _box_head(pool_size, v2=False), HEAD_DIM)


def build_mobilenet_v3_fpn(cfg: EasyDict, state_dict: dict | None) -> BackboneParts:
    """Args:
    cfg: POOLING_SIZE, BACKBONE_FROM_SCRATCH.
    state_dict: torchvision-layout ImageNet weights already checked against the model, or None.
    """
    features, scratch = _mobilenet_features(mobilenet_v3_large, cfg, state_dict)
    stages = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)] + [len(features) - 1]
    for block in [] if scratch else features[: stages[len(stages) - MOBILENET_V3_TRAINABLE_STAGES]]:
        freeze(block)
    return _features_pyramid(features, [stages[-2], stages[-1]], (32, 32, 64), 2, cfg.POOLING_SIZE)


# MobileNetV2's features at the end of its stride-8, stride-16 and stride-32 stages.
MOBILENET_V2_LEVELS = (6, 13, 18)


def build_mobilenet_v2_fpn(cfg: EasyDict, state_dict: dict | None) -> BackboneParts:
    """Args:
    cfg: MOBILENET.FIXED_LAYERS (leading modules of `features` kept frozen), POOLING_SIZE,
        BACKBONE_FROM_SCRATCH.
    state_dict: torchvision-layout ImageNet weights already checked against the model, or None.
    """
    features, scratch = _mobilenet_features(mobilenet_v2, cfg, state_dict)
    for block in [] if scratch else features[: cfg.MOBILENET.FIXED_LAYERS]:
        freeze(block)
    return _features_pyramid(features, MOBILENET_V2_LEVELS, (8, 16, 32, 64), 3, cfg.POOLING_SIZE)


def _resnet_fpn_spec(name: str, torchvision_files: tuple[str, ...]) -> BackboneSpec:
    return BackboneSpec(
        name,
        lambda cfg, state_dict, fmt: build_resnet_fpn(name, cfg, state_dict),
        reference=lambda: RESNET_BUILDERS[name](weights=None, norm_layer=FrozenBatchNorm2d),
        torchvision_files=torchvision_files,
        unused_prefixes=("fc.",),
    )


RES50_FPN = _resnet_fpn_spec("res50_fpn", ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"))
RES50_FPN_V2 = _resnet_fpn_spec("res50_fpn_v2", ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"))
RES101_FPN = _resnet_fpn_spec("res101_fpn", ("resnet101-63fe2227.pth",))
MOBILENET_V3_FPN = BackboneSpec(
    "mobilenet_v3_fpn",
    lambda cfg, state_dict, fmt: build_mobilenet_v3_fpn(cfg, state_dict),
    reference=lambda: mobilenet_v3_large(weights=None, norm_layer=FrozenBatchNorm2d),
    torchvision_files=("mobilenet_v3_large-8738ca79.pth", "mobilenet_v3_large-5c1a4163.pth"),
    unused_prefixes=("classifier.",),
)
MOBILENET_V2_FPN = BackboneSpec(
    "mobilenet_v2_fpn",
    lambda cfg, state_dict, fmt: build_mobilenet_v2_fpn(cfg, state_dict),
    reference=lambda: mobilenet_v2(weights=None, norm_layer=FrozenBatchNorm2d),
    torchvision_files=("mobilenet_v2-b0353104.pth",),
    unused_prefixes=("classifier.",),
)
