"""Faster R-CNN: backbone -> RPN -> RoI heads, with its input normalisation (and, under
torchvision's convention, its resizing) built in.

The contract, for N images padded into one batch:
    images       (N, 3, H, W) RGB, uint8 or float in 0..255 (the padding's content is ignored)
    image_sizes  (N, 2) int, (h, w) of each image's own area at the top-left of the batch
    image_scales (N,) float, the factor each image was resized by (detections are divided by it)
    targets      training only: one dict per image, boxes (G, 4) float in batch pixels
                 (inclusive convention, see box_ops) and labels (G,) int64 in 1..K-1; G may be 0;
                 optionally "seed" (int), making the image's anchor and RoI sampling depend on it alone,
                 and "ignore" (I, 4), regions whose anchors and RoIs are not background.
Training returns a dict of scalar losses; inference returns one dict per image with boxes (D, 4)
in original-image pixels, scores (D,) and labels (D,).
"""

from __future__ import annotations

import torch
from easydict import EasyDict
from torch import Tensor, nn

from .anchors import AnchorGenerator, PyramidAnchorGenerator
from .backbones import Backbone, PixelFormat, build_backbone
from .box_coder import BoxCoder
from .conventions import CONVENTIONS, Convention, get_convention
from .poolers.pyramid_roi_pool import PyramidRoIPooler
from .poolers.roi_pool import RoIPooler
from .roi_heads import BoxPredictor, DetectionSettings, RoIHeads, RoISamplingSettings
from .rpn import AnchorTargetSettings, ProposalSettings, RegionProposalNetwork, RPNHead
from .sampling import IgnoreRegions
from .transform import InputResize, ModelInput


class FasterRCNN(nn.Module):
    """Args:
    backbone: the Backbone giving L feature maps (L = 1, stride 16, for the original's nets).
    rpn: the RegionProposalNetwork.
    roi_heads: the RoIHeads.
    pixels: how the backbone wants its input normalised.
    channels_last: run the backbone in channels-last memory layout (faster convolutions on
        CPUs with oneDNN and on tensor-core GPUs).
    channels_last_cpu_inference: feed the backbone channels-last input in inference on CPU,
        even when `channels_last` is off (see TEST.CHANNELS_LAST_CPU).
    convention: the box convention inside the model (conventions.py); targets come in and
        detections go out as BoxMode.XYXY whatever it is.
    resize: resizes the input at inference (torchvision's convention), or None.
    """

    def __init__(
        self,
        backbone: Backbone,
        rpn: RegionProposalNetwork,
        roi_heads: RoIHeads,
        pixels: PixelFormat,
        channels_last: bool = False,
        channels_last_cpu_inference: bool = False,
        convention: Convention = CONVENTIONS["original"],
        resize: InputResize | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone.to(memory_format=torch.channels_last) if channels_last else backbone
        self.channels_last = channels_last
        self.channels_last_cpu_inference = channels_last_cpu_inference
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.convention = convention
        self.resize = resize
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
        return x * (rows[:, None, :, None] & cols[:, None, None, :])

    def prepare(self, images: Tensor, image_sizes: Tensor, image_scales: Tensor) -> ModelInput:
        """The backbone's input batch, and how its boxes map back to the original images."""
        x = self.normalize(images, image_sizes)
        if self.resize is not None:
            prepared = self.resize(x, image_sizes, image_scales)
        else:
            prepared = ModelInput(x, image_sizes, image_scales, image_scales[:, None].expand(-1, 4))
        cpu_inference = self.channels_last_cpu_inference and not self.training and x.device.type == "cpu"
        if self.channels_last or cpu_inference:
            prepared = prepared._replace(images=prepared.images.contiguous(memory_format=torch.channels_last))
        return prepared

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
        batch = self.prepare(images, image_sizes, image_scales)
        features = self.backbone(batch.images)
        gt_boxes = gt_labels = gt_valid = seeds = ignore = None
        if self.training:
            if targets is None:
                raise ValueError("training mode needs targets: one {'boxes', 'labels'} dict per image")
            gt_boxes, gt_labels, gt_valid = pad_targets(targets, images.device)
            gt_boxes = self.convention.to_model(gt_boxes)
            ignore = pad_ignore(targets, images.device)
            if ignore is not None:
                ignore = ignore._replace(boxes=self.convention.to_model(ignore.boxes))
            if all("seed" in t for t in targets):
                seeds = [int(t["seed"]) for t in targets]
        proposals, proposal_valid, rpn_losses = self.rpn(
            features,
            batch.image_sizes,
            batch.image_scales,
            gt_boxes,
            gt_valid,
            None if seeds is None else [2 * s for s in seeds],
            input_size=tuple(batch.images.shape[-2:]),
            ignore=ignore,
        )
        head_losses, detections = self.roi_heads(
            features,
            proposals,
            proposal_valid,
            batch.image_sizes,
            gt_boxes,
            gt_labels,
            gt_valid,
            None if seeds is None else [2 * s + 1 for s in seeds],
            ignore,
        )
        if self.training:
            return {**rpn_losses, **head_losses}
        for det, divisor in zip(detections, batch.box_divisors):
            det["boxes"] = self.convention.from_model(det["boxes"] / divisor)
        return detections


def pad_per_image(
    values: list[Tensor], device: torch.device, dtype: torch.dtype, at_least: int = 0
) -> tuple[Tensor, Tensor]:
    """Per-image (K_i, ...) tensors -> (N, K, ...) of `dtype`, zeros after each image's own, and
    valid (N, K); K the largest K_i but at least `at_least`."""
    k = max(max((v.shape[0] for v in values), default=0), at_least)
    padded = torch.zeros((len(values), k, *values[0].shape[1:]), dtype=dtype, device=device)
    valid = torch.zeros((len(values), k), dtype=torch.bool, device=device)
    for i, v in enumerate(values):
        padded[i, : v.shape[0]] = v.to(device, dtype)
        valid[i, : v.shape[0]] = True
    return padded, valid


def pad_targets(targets: list[dict[str, Tensor]], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image ground truth -> boxes (N, G, 4), labels (N, G), valid (N, G), G the largest count
    but at least 1, so a batch with no objects at all needs no special case downstream."""
    boxes, valid = pad_per_image([t["boxes"].reshape(-1, 4) for t in targets], device, torch.float32, at_least=1)
    labels, _ = pad_per_image([t["labels"] for t in targets], device, torch.long, at_least=1)
    return boxes, labels, valid


def pad_ignore(targets: list[dict[str, Tensor]], device: torch.device) -> IgnoreRegions | None:
    """Per-image "ignore" boxes (optional in targets) -> IgnoreRegions (N, I, 4) and (N, I), I the
    largest count; None where no image has any (nothing to compute)."""
    regions = [t["ignore"].reshape(-1, 4) if "ignore" in t else torch.zeros(0, 4) for t in targets]
    if not any(r.shape[0] for r in regions):
        return None
    return IgnoreRegions(*pad_per_image(regions, device, torch.float32))


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
    convention = get_convention(cfg.CONVENTION)
    rpn = build_rpn(cfg, parts.backbone, convention)
    roi_heads = RoIHeads(
        build_roi_pooler(cfg, parts.backbone, convention.box_offset),
        parts.head,
        BoxPredictor(parts.head_dim, num_classes, cfg.CLASS_AGNOSTIC),
        num_classes,
        BoxCoder(cfg.TRAIN.BBOX_NORMALIZE_MEANS, cfg.TRAIN.BBOX_NORMALIZE_STDS, offset=convention.box_offset),
        sampling=RoISamplingSettings(
            cfg.TRAIN.BATCH_SIZE,
            cfg.TRAIN.FG_FRACTION,
            cfg.TRAIN.FG_THRESH,
            cfg.TRAIN.BG_THRESH_HI,
            cfg.TRAIN.BG_THRESH_LO,
        ),
        detection=DetectionSettings(
            cfg.TEST.SCORE_THRESH, cfg.TEST.NMS, cfg.TEST.MAX_PER_IMAGE, convention.detection_min_size
        ),
        recompute_head=cfg.TRAIN.RECOMPUTE_HEAD,
    )
    resize = None
    if convention.resize_in_model:
        resize = InputResize(cfg.TEST.SCALES[0], cfg.TEST.MAX_SIZE, convention.size_divisible)
    model = FasterRCNN(
        parts.backbone, rpn, roi_heads, pixels, cfg.CHANNELS_LAST, cfg.TEST.CHANNELS_LAST_CPU, convention, resize
    )
    return model, source


def build_anchor_generator(cfg: EasyDict, backbone: Backbone) -> nn.Module:
    """torchvision's per-level anchors when ANCHOR_SIZES is set, else the original's."""
    levels = len(backbone.strides)
    if cfg.ANCHOR_SIZES:
        if len(cfg.ANCHOR_SIZES) != levels:
            raise ValueError(f"ANCHOR_SIZES has {len(cfg.ANCHOR_SIZES)} levels; the backbone has {levels}")
        return PyramidAnchorGenerator(cfg.ANCHOR_SIZES, cfg.ANCHOR_RATIOS)
    if levels != 1:
        raise ValueError(f"a backbone of {levels} levels needs ANCHOR_SIZES (one list of sizes per level)")
    return AnchorGenerator(cfg.FEAT_STRIDE, cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS)


def build_rpn(cfg: EasyDict, backbone: Backbone, convention: Convention) -> RegionProposalNetwork:
    anchors = build_anchor_generator(cfg, backbone)

    def proposals(c: EasyDict) -> ProposalSettings:
        return ProposalSettings(
            c.RPN_PRE_NMS_TOP_N, c.RPN_POST_NMS_TOP_N, c.RPN_NMS_THRESH, c.RPN_MIN_SIZE, cfg.RPN_SCORE_THRESH
        )

    return RegionProposalNetwork(
        RPNHead(backbone.out_channels, cfg.RPN_CHANNELS, anchors.num_anchors, cfg.RPN_CONV_DEPTH),
        anchors,
        train_proposals=proposals(cfg.TRAIN),
        test_proposals=proposals(cfg.TEST),
        targets=AnchorTargetSettings(
            cfg.TRAIN.RPN_POSITIVE_OVERLAP,
            cfg.TRAIN.RPN_NEGATIVE_OVERLAP,
            cfg.TRAIN.RPN_BATCHSIZE,
            cfg.TRAIN.RPN_FG_FRACTION,
        ),
        box_coder=BoxCoder(offset=convention.box_offset),
        anchors_in_padding=convention.anchors_in_padding,
    )


def build_roi_pooler(cfg: EasyDict, backbone: Backbone, offset: float) -> nn.Module:
    """One RoIPooler for a single-level backbone; a PyramidRoIPooler over its pooled levels otherwise."""

    def pooler(stride: float) -> RoIPooler:
        mode, size, sampling, aligned = (
            cfg.POOLING_MODE,
            cfg.POOLING_SIZE,
            cfg.ROI_ALIGN_SAMPLING_RATIO,
            cfg.ROI_ALIGN_ALIGNED,
        )
        return RoIPooler(mode, size, 1.0 / stride, sampling, aligned, backbone.out_channels)

    if backbone.pooled_levels == 1 and len(backbone.strides) == 1:
        return pooler(cfg.FEAT_STRIDE)
    strides = backbone.strides[: backbone.pooled_levels]
    return PyramidRoIPooler([pooler(s) for s in strides], strides, offset)
