"""This project's Faster R-CNN and torchvision's, built to one specification with the same weights.

torchvision.models.detection.FasterRCNN is assembled to this project's specification: the same
backbone module and weights (same frozen layers), RPN head weights, anchor sizes and ratios, input
scale, RPN pre/post-NMS top-N (train 12000/2000, test 6000/300), 256 anchors and 128 RoIs per
image, RoIAlign 7x7 with 2 samples per bin, the same fc6/fc7 head and predictor weights, and the
same test thresholds. Both get the same images, already resized to the scale (torchvision's own
resize then has nothing to do).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from easydict import EasyDict
from torch import nn

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.loader import RoidbDataset, collate
from frcnn.modeling import FasterRCNN, build_model
from frcnn.modeling.backbones import build_backbone
from frcnn.modeling.backbones.folding import unfold_frozen_norms
from frcnn.structures.batch import Batch
from frcnn.structures.boxes import BoxMode

NUM_CLASSES = 21  # a PASCAL VOC-sized head
CFGS_DIR = Path(__file__).resolve().parents[1] / "cfgs"


@dataclass
class Settings:
    net: str = "vgg16"
    device: str = "cpu"
    batch_size: int = 1
    scale: int = 600
    amp: bool = False
    repeats: int = 5
    warmup: int = 2
    data_dir: str = "data"
    memory_repeats: int = 5  # fresh processes per model for CPU peak memory (bench_measure)
    recompute_head: bool = False  # ours only: TRAIN.RECOMPUTE_HEAD (torchvision has no such option)


def spec_overrides(s: Settings) -> list[str]:
    """The shared specification, as --set pairs for this project's config."""
    pairs = {
        "POOLING_MODE": "align",
        "ROI_ALIGN_SAMPLING_RATIO": "2",
        "ROI_ALIGN_ALIGNED": "False",
        "POOLING_SIZE": "7",
        "ANCHOR_SCALES": "[8,16,32]",
        "ANCHOR_RATIOS": "[0.5,1,2]",
        "TRAIN.SCALES": f"[{s.scale}]",
        "TRAIN.MAX_SIZE": "1000",
        "TEST.SCALES": f"[{s.scale}]",
        "TEST.MAX_SIZE": "1000",
        "TRAIN.RPN_PRE_NMS_TOP_N": "12000",
        "TRAIN.RPN_POST_NMS_TOP_N": "2000",
        "TEST.RPN_PRE_NMS_TOP_N": "6000",
        "TEST.RPN_POST_NMS_TOP_N": "300",
        "TRAIN.RPN_BATCHSIZE": "256",
        "TRAIN.BATCH_SIZE": "128",
        "TRAIN.FG_FRACTION": "0.25",
        "TRAIN.BG_THRESH_LO": "0.0",
        "TEST.NMS": "0.3",
        "TEST.SCORE_THRESH": "0.05",
        "TEST.MAX_PER_IMAGE": "100",
        "TRAIN.RECOMPUTE_HEAD": str(s.recompute_head),
    }
    return [word for pair in pairs.items() for word in pair]


def ours_config(s: Settings) -> EasyDict:
    """Our config at the specification; the RPN conv keeps the backbone's width, as torchvision's does."""
    profile = dataset_spec("shapes", s.data_dir).profile
    cfg = build_config(s.net, CFGS_DIR, profile, set_cfgs=spec_overrides(s))
    with torch.device("meta"):
        parts, _, _ = build_backbone(s.net, cfg, use_default_weights=False)
    cfg.RPN_CHANNELS = parts.backbone.out_channels
    return cfg


def build_ours(s: Settings) -> tuple[FasterRCNN, EasyDict]:
    cfg = ours_config(s)
    model, _ = build_model(cfg, s.net, NUM_CLASSES, use_default_weights=False)
    return model, cfg


class _Base(nn.Module):
    """The backbone as torchvision's FasterRCNN expects it: a module with out_channels."""

    def __init__(self, base: nn.Module, out_channels: int, channels_last: bool) -> None:
        super().__init__()
        self.body = base
        self.out_channels = out_channels
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)


def _rpn_head(ours: FasterRCNN) -> nn.Module:
    from torchvision.models.detection.rpn import RPNHead

    head = RPNHead(ours.backbone.out_channels, ours.rpn.anchor_generator.num_anchors, conv_depth=1)
    head.conv[0][0].load_state_dict(ours.rpn.head.conv.state_dict())
    head.cls_logits.load_state_dict(ours.rpn.head.objectness.state_dict())
    head.bbox_pred.load_state_dict(ours.rpn.head.deltas.state_dict())
    return head


def build_torchvision(ours: FasterRCNN, s: Settings) -> nn.Module:
    """torchvision's FasterRCNN with our model's weights, to the same specification."""
    from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    sizes = tuple(float(ours.rpn.anchor_generator.stride * k) for k in (8, 16, 32))
    predictor = FastRCNNPredictor(ours.roi_heads.predictor.cls_score.in_features, NUM_CLASSES)
    predictor.load_state_dict(ours.roi_heads.predictor.state_dict())
    model = TorchvisionFasterRCNN(
        _Base(copy.deepcopy(ours.backbone.base), ours.backbone.out_channels, ours.channels_last),
        num_classes=None,
        min_size=s.scale,
        max_size=1000,
        image_mean=[m / 255 for m in ours.pixel_mean.flatten().tolist()],
        image_std=[v / 255 for v in ours.pixel_std.flatten().tolist()],
        rpn_anchor_generator=AnchorGenerator(sizes=(sizes,), aspect_ratios=((0.5, 1.0, 2.0),)),
        rpn_head=_rpn_head(ours),
        rpn_pre_nms_top_n_train=12000,
        rpn_pre_nms_top_n_test=6000,
        rpn_post_nms_top_n_train=2000,
        rpn_post_nms_top_n_test=300,
        rpn_nms_thresh=0.7,
        rpn_fg_iou_thresh=0.7,
        rpn_bg_iou_thresh=0.3,
        rpn_batch_size_per_image=256,
        rpn_positive_fraction=0.5,
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
        box_head=copy.deepcopy(ours.roi_heads.box_head),
        box_predictor=predictor,
        box_score_thresh=0.05,
        box_nms_thresh=0.3,
        box_detections_per_img=100,
        box_fg_iou_thresh=0.5,
        box_bg_iou_thresh=0.5,
        box_batch_size_per_image=128,
        box_positive_fraction=0.25,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0),
    )
    for ours_p, tv_p in zip(ours.backbone.base.parameters(), model.backbone.body.parameters()):
        tv_p.requires_grad_(ours_p.requires_grad)  # the same frozen layers
    unfold_frozen_norms(model)  # torchvision's modules as torchvision runs them (backbones/folding.py)
    return model


def load_batches(s: Settings, count: int) -> list[Batch]:
    """`count` batches of the built-in dataset's test images, resized to the scale."""
    test = dataset_spec("shapes", s.data_dir).test()
    data = RoidbDataset(test.records, [s.scale], 1000)
    return [collate([data[i * s.batch_size + j] for j in range(s.batch_size)]) for i in range(count)]


def torchvision_inputs(batch: Batch, device: torch.device) -> tuple[list[torch.Tensor], list[dict]]:
    """The same images as float [0, 1] tensors, and targets with torchvision's exclusive corners."""
    images, targets = [], []
    for image, (h, w), t in zip(batch.images, batch.image_sizes.tolist(), batch.targets):
        images.append(image[:, :h, :w].to(device).float() / 255)
        boxes = BoxMode.convert(t["boxes"], BoxMode.XYXY, BoxMode.XYXY_EXCLUSIVE)
        targets.append({"boxes": boxes.to(device), "labels": t["labels"].to(device)})
    return images, targets
