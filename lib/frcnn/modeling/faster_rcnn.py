"""Faster R-CNN: backbone -> RPN -> RoI heads, with its input normalisation built in.

The contract, for N images padded into one batch:
    images       (N, 3, H, W) RGB, uint8 or float in 0..255 (the padding's content is ignored)
    image_sizes  (N, 2) int, (h, w) of each image's own area at the top-left of the batch
    image_scales (N,) float, the factor each image was resized by (detections are divided by it)
    targets      training only: one dict per image, boxes (G, 4) float in batch pixels
                 (inclusive convention, see box_ops) and labels (G,) int64 in 1..K-1; G may be 0;
                 optionally "seed" (int), making the image's anchor and RoI sampling depend on it alone.
Training returns a dict of scalar losses; inference returns one dict per image with boxes (D, 4)
in original-image pixels, scores (D,) and labels (D,).
"""

from __future__ import annotations

import torch
from easydict import EasyDict
from torch import Tensor, nn

from .anchors import AnchorGenerator
from .backbones import Backbone, PixelFormat, build_backbone
from .box_coder import BoxCoder
from .roi_heads import BoxPredictor, DetectionSettings, RoIHeads, RoISamplingSettings
from .roi_pool import RoIPooler
from .rpn import AnchorTargetSettings, ProposalSettings, RegionProposalNetwork, RPNHead


class FasterRCNN(nn.Module):
    """Args:
    backbone: the Backbone giving the stride-16 feature map.
    rpn: the RegionProposalNetwork.
    roi_heads: the RoIHeads.
    pixels: how the backbone wants its input normalised.
    channels_last: run the backbone in channels-last memory layout (faster convolutions on
        CPUs with oneDNN and on tensor-core GPUs).
    channels_last_cpu_inference: feed the backbone channels-last input in inference on CPU,
        even when `channels_last` is off (see TEST.CHANNELS_LAST_CPU).
    """

    def __init__(
        self,
        backbone: Backbone,
        rpn: RegionProposalNetwork,
        roi_heads: RoIHeads,
        pixels: PixelFormat,
        channels_last: bool = False,
        channels_last_cpu_inference: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone.to(memory_format=torch.channels_last) if channels_last else backbone
        self.channels_last = channels_last
        self.channels_last_cpu_inference = channels_last_cpu_inference
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.channel_order = pixels.channel_order
        self.register_buffer("pixel_mean", torch.tensor(pixels.mean).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(pixels.std).view(1, 3, 1, 1))

    def normalize(self, images: Tensor, image_sizes: Tensor) -> Tensor:
        """(N, 3, H, W) 0..255 RGB -> normalised input, zero outside each image's own area."""
        x = images.to(self.pixel_mean.dtype)
        if self.channel_order == "BGR":
            x = x.flip(1)
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        rows = torch.arange(h, device=x.device)[None, :] < image_sizes[:, 0:1]
        cols = torch.arange(w, device=x.device)[None, :] < image_sizes[:, 1:2]
        x = x * (rows[:, None, :, None] & cols[:, None, None, :])
        cpu_inference = self.channels_last_cpu_inference and not self.training and x.device.type == "cpu"
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last or cpu_inference else x

    def forward(
        self,
        images: Tensor,
        image_sizes: Tensor,
        image_scales: Tensor | None = None,
        targets: list[dict[str, Tensor]] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        n = images.shape[0]
        image_sizes = image_sizes.to(images.device)
        image_scales = torch.ones(n, device=images.device) if image_scales is None else image_scales.to(images.device)
        features = self.backbone(self.normalize(images, image_sizes))
        gt_boxes = gt_labels = gt_valid = seeds = None
        if self.training:
            if targets is None:
                raise ValueError("training mode needs targets: one {'boxes', 'labels'} dict per image")
            gt_boxes, gt_labels, gt_valid = pad_targets(targets, images.device)
            if all("seed" in t for t in targets):
                seeds = [int(t["seed"]) for t in targets]
        proposals, proposal_valid, rpn_losses = self.rpn(
            features, image_sizes, image_scales, gt_boxes, gt_valid, None if seeds is None else [2 * s for s in seeds]
        )
        head_losses, detections = self.roi_heads(
            features,
            proposals,
            proposal_valid,
            image_sizes,
            gt_boxes,
            gt_labels,
            gt_valid,
            None if seeds is None else [2 * s + 1 for s in seeds],
        )
        if self.training:
            return {**rpn_losses, **head_losses}
        for det, scale in zip(detections, image_scales):
            det["boxes"] = det["boxes"] / scale
        return detections


def pad_targets(targets: list[dict[str, Tensor]], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image ground truth -> boxes (N, G, 4), labels (N, G), valid (N, G), G the largest count
    but at least 1, so a batch with no objects at all needs no special case downstream."""
    n = len(targets)
    g = max(max((t["boxes"].shape[0] for t in targets), default=0), 1)
    boxes = torch.zeros((n, g, 4), device=device)
    labels = torch.zeros((n, g), dtype=torch.long, device=device)
    valid = torch.zeros((n, g), dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        count = t["boxes"].shape[0]
        boxes[i, :count] = t["boxes"].to(device, torch.float32)
        labels[i, :count] = t["labels"].to(device)
        valid[i, :count] = True
    return boxes, labels, valid


def build_model(
    cfg: EasyDict,
    net: str,
    num_classes: int,
    pretrained: str | None = None,
    data_dir: str = "data",
    use_default_weights: bool = True,
) -> tuple[FasterRCNN, str]:
    """A FasterRCNN for `num_classes` classes (background included) from the configuration.

    Returns the model and a line saying where the backbone's weights came from.
    """
    parts, pixels, source = build_backbone(net, cfg, pretrained, data_dir, use_default_weights)
    backbone = parts.backbone
    anchors = AnchorGenerator(cfg.FEAT_STRIDE, cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS)
    rpn = RegionProposalNetwork(
        RPNHead(backbone.out_channels, cfg.RPN_CHANNELS, anchors.num_anchors),
        anchors,
        train_proposals=ProposalSettings(
            cfg.TRAIN.RPN_PRE_NMS_TOP_N, cfg.TRAIN.RPN_POST_NMS_TOP_N, cfg.TRAIN.RPN_NMS_THRESH, cfg.TRAIN.RPN_MIN_SIZE
        ),
        test_proposals=ProposalSettings(
            cfg.TEST.RPN_PRE_NMS_TOP_N, cfg.TEST.RPN_POST_NMS_TOP_N, cfg.TEST.RPN_NMS_THRESH, cfg.TEST.RPN_MIN_SIZE
        ),
        targets=AnchorTargetSettings(
            cfg.TRAIN.RPN_POSITIVE_OVERLAP,
            cfg.TRAIN.RPN_NEGATIVE_OVERLAP,
            cfg.TRAIN.RPN_BATCHSIZE,
            cfg.TRAIN.RPN_FG_FRACTION,
        ),
    )
    roi_heads = RoIHeads(
        RoIPooler(
            cfg.POOLING_MODE,
            cfg.POOLING_SIZE,
            1.0 / cfg.FEAT_STRIDE,
            cfg.ROI_ALIGN_SAMPLING_RATIO,
            cfg.ROI_ALIGN_ALIGNED,
            backbone.out_channels,
        ),
        parts.head,
        BoxPredictor(parts.head_dim, num_classes, cfg.CLASS_AGNOSTIC),
        num_classes,
        BoxCoder(cfg.TRAIN.BBOX_NORMALIZE_MEANS, cfg.TRAIN.BBOX_NORMALIZE_STDS),
        sampling=RoISamplingSettings(
            cfg.TRAIN.BATCH_SIZE,
            cfg.TRAIN.FG_FRACTION,
            cfg.TRAIN.FG_THRESH,
            cfg.TRAIN.BG_THRESH_HI,
            cfg.TRAIN.BG_THRESH_LO,
        ),
        detection=DetectionSettings(cfg.TEST.SCORE_THRESH, cfg.TEST.NMS, cfg.TEST.MAX_PER_IMAGE),
    )
    return FasterRCNN(backbone, rpn, roi_heads, pixels, cfg.CHANNELS_LAST, cfg.TEST.CHANNELS_LAST_CPU), source
