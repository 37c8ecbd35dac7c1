"""Region proposal network: the head (convolutions) and the proposal logic around it.

Shapes: N images, C feature channels, H x W feature map, A anchors per cell, M = H * W * A anchors,
G ground-truth boxes per image (padded), P proposals per image (padded, with a valid mask).
Image sizes are (h, w) of each image's unpadded area in the (padded) input batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import box_ops
from .anchors import AnchorGenerator
from .box_coder import BoxCoder
from .sampling import match, per_image_weights, sample_balanced


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 convs giving one objectness logit and 4 box deltas per anchor.

    Args:
        in_channels: C of the backbone feature map.
        mid_channels: width of the 3x3 conv (RPN_CHANNELS, 512 in the original).
        num_anchors: A.
    """

    def __init__(self, in_channels: int, mid_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.objectness = nn.Conv2d(mid_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(mid_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) -> logits (N, M) and deltas (N, M, 4), anchors ordered (y, x, a)."""
        hidden = F.relu(self.conv(features))
        n = features.shape[0]
        logits = self.objectness(hidden).permute(0, 2, 3, 1).reshape(n, -1)
        deltas = self.deltas(hidden).permute(0, 2, 3, 1).reshape(n, -1, 4)
        return logits, deltas


@dataclass
class ProposalSettings:
    """How proposals are chosen (train and test use different numbers).

    pre_nms_top_n: best-scoring anchors kept per image before NMS.
    post_nms_top_n: proposals kept per image after NMS.
    nms_thresh: IoU threshold of the NMS between proposals.
    min_size: smallest proposal side, in original-image pixels (scaled by each image's scale).
    """

    pre_nms_top_n: int
    post_nms_top_n: int
    nms_thresh: float
    min_size: float


@dataclass
class AnchorTargetSettings:
    """How anchors are labelled and sampled for the RPN losses.

    positive_iou: anchors with IoU >= this with some ground truth are foreground.
    negative_iou: anchors with IoU < this with every ground truth are background.
    batch_size_per_image: anchors sampled per image (256).
    positive_fraction: at most this fraction of them foreground (0.5).
    """

    positive_iou: float = 0.7
    negative_iou: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5


class RegionProposalNetwork(nn.Module):
    """Scores anchors, turns the best into proposals, and (training) computes the RPN losses.

    Args:
        head: the RPNHead.
        anchor_generator: anchors for the feature map (its stride maps cells to pixels).
        train_proposals, test_proposals: ProposalSettings for training and inference.
        targets: AnchorTargetSettings for the losses.
        box_coder: codes box deltas relative to anchors (no normalisation in the original).
        sigma: smooth L1 sigma of the box loss (3 in the original).
    """

    def __init__(
        self,
        head: RPNHead,
        anchor_generator: AnchorGenerator,
        train_proposals: ProposalSettings,
        test_proposals: ProposalSettings,
        targets: AnchorTargetSettings | None = None,
        box_coder: BoxCoder | None = None,
        sigma: float = 3.0,
    ) -> None:
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.train_proposals = train_proposals
        self.test_proposals = test_proposals
        self.targets = targets or AnchorTargetSettings()
        self.box_coder = box_coder or BoxCoder()
        self.sigma = sigma

    def forward(
        self,
        features: Tensor,
        image_sizes: Tensor,
        image_scales: Tensor,
        gt_boxes: Tensor | None = None,
        gt_valid: Tensor | None = None,
        seeds: Sequence[int] | None = None,
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """features (N, C, H, W); image_sizes (N, 2) as (h, w); image_scales (N,);
        gt_boxes (N, G, 4) and gt_valid (N, G) when training; seeds: per image, for the anchor
        sampling (see sampling.sample_balanced).

        Returns proposals (N, P, 4) in input pixels, their valid mask (N, P), and the loss dict
        ({"rpn_cls", "rpn_box"} when training, empty otherwise).
        """
        logits, deltas = self.head(features)
        anchors = self.anchor_generator(features.shape[-2], features.shape[-1])
        # Anchors centred in an image's padding see only padding; they never become proposals.
        centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        in_image = (centres[None, :, 0] < image_sizes[:, 1:2]) & (centres[None, :, 1] < image_sizes[:, 0:1])
        settings = self.train_proposals if self.training else self.test_proposals
        with torch.no_grad():
            proposals, valid = self._proposals(
                logits.detach(), deltas.detach(), anchors, in_image, image_sizes, image_scales, settings
            )
        losses: dict[str, Tensor] = {}
        if self.training:
            if gt_boxes is None or gt_valid is None:
                raise ValueError("the RPN needs ground truth in training mode")
            losses = self._losses(logits, deltas, anchors, image_sizes, gt_boxes, gt_valid, seeds)
        return proposals, valid, losses

    def _proposals(
        self,
        logits: Tensor,
        deltas: Tensor,
        anchors: Tensor,
        in_image: Tensor,
        image_sizes: Tensor,
        image_scales: Tensor,
        settings: ProposalSettings,
    ) -> tuple[Tensor, Tensor]:
        n, m = logits.shape
        scores = logits.float().masked_fill(~in_image, float("-inf"))
        k = min(settings.pre_nms_top_n, m)
        top_scores, top_idx = scores.topk(k, dim=1)
        boxes = self.box_coder.decode(torch.gather(deltas, 1, top_idx[..., None].expand(-1, -1, 4)), anchors[top_idx])
        boxes = box_ops.clip_boxes(boxes, image_sizes)
        sizes = box_ops.box_sizes(boxes)
        min_size = (settings.min_size * image_scales).view(-1, 1)
        keep = (sizes[..., 0] >= min_size) & (sizes[..., 1] >= min_size) & torch.isfinite(top_scores)
        image_idx = torch.arange(n, device=logits.device)[:, None].expand(n, k)
        flat_boxes, flat_scores, flat_images = boxes[keep], top_scores[keep], image_idx[keep]
        kept = box_ops.batched_nms(flat_boxes, flat_scores, flat_images, settings.nms_thresh)
        kept = kept[torch.argsort(flat_images[kept], stable=True)]
        rank = box_ops.rank_within_groups(flat_images[kept], n)
        kept, rank = kept[rank < settings.post_nms_top_n], rank[rank < settings.post_nms_top_n]
        p = min(settings.post_nms_top_n, k)  # a fixed size: no read-back of the count from the device
        proposals = boxes.new_zeros((n, p, 4))
        valid = torch.zeros((n, p), dtype=torch.bool, device=boxes.device)
        proposals[flat_images[kept], rank] = flat_boxes[kept]
        valid[flat_images[kept], rank] = True
        return proposals, valid

    def _losses(
        self,
        logits: Tensor,
        deltas: Tensor,
        anchors: Tensor,
        image_sizes: Tensor,
        gt_boxes: Tensor,
        gt_valid: Tensor,
        seeds: Sequence[int] | None,
    ) -> dict[str, Tensor]:
        labels, matched_gt = self._anchor_labels(anchors, image_sizes, gt_boxes, gt_valid)
        fg, bg = sample_balanced(labels, self.targets.batch_size_per_image, self.targets.positive_fraction, seeds)
        sampled = fg | bg
        weights = per_image_weights(sampled)
        cls_loss = F.binary_cross_entropy_with_logits(logits.float(), fg.float(), reduction="none")
        cls_loss = (cls_loss * weights).sum()
        targets = self.box_coder.encode(matched_gt, anchors.expand_as(matched_gt))
        box_loss = F.smooth_l1_loss(deltas.float(), targets, beta=1.0 / self.sigma**2, reduction="none").sum(-1)
        box_loss = (box_loss * weights * fg).sum()
        return {"rpn_cls": cls_loss, "rpn_box": box_loss}

    @torch.no_grad()
    def _anchor_labels(
        self, anchors: Tensor, image_sizes: Tensor, gt_boxes: Tensor, gt_valid: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Labels (N, M): 1 fg, 0 bg, -1 ignored; and each anchor's matched ground truth (N, M, 4).

        Only anchors lying wholly inside their image take part (the original's allowed border 0).
        Each ground truth's best anchors are foreground even below positive_iou.
        """
        inside = (
            (anchors[None, :, 0] >= 0)
            & (anchors[None, :, 1] >= 0)
            & (anchors[None, :, 2] < image_sizes[:, 1:2])
            & (anchors[None, :, 3] < image_sizes[:, 0:1])
        )
        best, iou = match(anchors, gt_boxes, gt_valid)
        labels = torch.full_like(best.iou, -1.0)
        labels[best.iou < self.targets.negative_iou] = 0
        # Ties count: every inside anchor that reaches a ground truth's best IoU is foreground.
        iou_inside = iou.masked_fill(~inside[:, :, None], -1.0)
        gt_best = iou_inside.max(dim=1, keepdim=True).values.clamp(min=1e-5)
        is_gt_best = ((iou_inside == gt_best) & gt_valid[:, None, :]).any(dim=2)
        labels[is_gt_best] = 1
        labels[best.iou >= self.targets.positive_iou] = 1
        labels[~inside] = -1
        return labels, torch.gather(gt_boxes, 1, best.gt_index[..., None].expand(-1, -1, 4))
