"""Region proposal network: the head (convolutions) and the proposal logic around it.

Shapes: N images, C feature channels, L feature levels (1 for the original's nets, a pyramid for
FPN nets), H x W a level's feature map, A anchors per cell, M = sum over levels of H * W * A anchors,
G ground-truth boxes per image (padded), P proposals per image (padded, with a valid mask).
Image sizes are (h, w) of each image's unpadded area in the (padded) input batch.

Proposals are chosen as torchvision chooses them, which for one level is the original's rule: the
pre_nms_top_n best anchors of each level, decoded and clipped, small ones dropped, NMS within each
level, then the post_nms_top_n best of the image.
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
from .sampling import IgnoreRegions, ignore_background, match, per_image_weights, sample_balanced


@dataclass
class ScoredAnchors:
    """The head's output laid on its anchors: logits (N, M), deltas (N, M, 4), anchors (M, 4),
    in_image (N, M) (anchors that may become proposals), level_counts (anchors of each level, in
    order; [M] for one level)."""

    logits: Tensor
    deltas: Tensor
    anchors: Tensor
    in_image: Tensor
    level_counts: list[int]

    def detached(self) -> ScoredAnchors:
        return ScoredAnchors(self.logits.detach(), self.deltas.detach(), self.anchors, self.in_image, self.level_counts)


class RPNHead(nn.Module):
    """3x3 conv + ReLU (conv_depth of them), then 1x1 convs giving one objectness logit and 4 box
    deltas per anchor; the same weights serve every level.

    Args:
        in_channels: C of the backbone feature map.
        mid_channels: width of the 3x3 convs (RPN_CHANNELS, 512 in the original).
        num_anchors: A.
        conv_depth: number of 3x3 convs (RPN_CONV_DEPTH; 2 in torchvision's v2 detector).
    """

    def __init__(self, in_channels: int, mid_channels: int, num_anchors: int, conv_depth: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.extra_convs = nn.ModuleList(
            nn.Conv2d(mid_channels, mid_channels, 3, padding=1) for _ in range(conv_depth - 1)
        )
        self.objectness = nn.Conv2d(mid_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(mid_channels, 4 * num_anchors, 1)
        for layer in (self.conv, *self.extra_convs, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) -> logits (N, H*W*A) and deltas (N, H*W*A, 4), anchors ordered (y, x, a)."""
        hidden = F.relu(self.conv(features))
        for conv in self.extra_convs:
            hidden = F.relu(conv(hidden))
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
    score_thresh: lowest objectness probability of a proposal (RPN_SCORE_THRESH).
    """

    pre_nms_top_n: int
    post_nms_top_n: int
    nms_thresh: float
    min_size: float
    score_thresh: float = 0.0


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
        box_coder: codes box deltas relative to anchors (no normalisation in the original); its
            offset is the model's box convention.
        sigma: smooth L1 sigma of the box loss (3 in the original).
        anchors_in_padding: anchors centred in a batch's padding may become proposals (torchvision).
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
        anchors_in_padding: bool = False,
    ) -> None:
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.train_proposals = train_proposals
        self.test_proposals = test_proposals
        self.targets = targets or AnchorTargetSettings()
        self.box_coder = box_coder or BoxCoder()
        self.sigma = sigma
        self.anchors_in_padding = anchors_in_padding

    def forward(
        self,
        features: Sequence[Tensor],
        image_sizes: Tensor,
        image_scales: Tensor,
        gt_boxes: Tensor | None = None,
        gt_valid: Tensor | None = None,
        seeds: Sequence[int] | None = None,
        input_size: tuple[int, int] | None = None,
        ignore: IgnoreRegions | None = None,
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """features: L maps (N, C, H, W); image_sizes (N, 2) as (h, w); image_scales (N,);
        gt_boxes (N, G, 4) and gt_valid (N, G) when training; seeds: per image, for the anchor
        sampling (see sampling.sample_balanced); input_size: the padded batch's (H, W) (the
        pyramid's anchor grid is laid out from it; default: the first level's size x its stride);
        ignore: regions whose anchors are not background (sampling.ignore_background).

        Returns proposals (N, P, 4) in input pixels, their valid mask (N, P), and the loss dict
        ({"rpn_cls", "rpn_box"} when training, empty otherwise).
        """
        scored = self._score_anchors(features, input_size, image_sizes)
        settings = self.train_proposals if self.training else self.test_proposals
        with torch.no_grad():
            proposals, valid = self._proposals(scored.detached(), image_sizes, image_scales, settings)
        losses: dict[str, Tensor] = {}
        if self.training:
            if gt_boxes is None or gt_valid is None:
                raise ValueError("the RPN needs ground truth in training mode")
            losses = self._losses(
                scored.logits, scored.deltas, scored.anchors, image_sizes, gt_boxes, gt_valid, seeds, ignore
            )
        return proposals, valid, losses

    def _score_anchors(
        self, features: Tensor | Sequence[Tensor], input_size: tuple[int, int] | None, image_sizes: Tensor
    ) -> ScoredAnchors:
        """The head run on every level, its outputs laid on the anchors."""
        if isinstance(features, Tensor):
            features = [features]
        outputs = [self.head(level) for level in features]
        logits = torch.cat([out[0] for out in outputs], dim=1)
        deltas = torch.cat([out[1] for out in outputs], dim=1)
        grids = [tuple(level.shape[-2:]) for level in features]
        if input_size is None:
            stride = getattr(self.anchor_generator, "stride", 1)
            input_size = (grids[0][0] * stride, grids[0][1] * stride)
        per_level = self.anchor_generator(grids, input_size)
        anchors = torch.cat(per_level)
        in_image = self._proposal_candidates(anchors, image_sizes)
        return ScoredAnchors(logits, deltas, anchors, in_image, [a.shape[0] for a in per_level])

    @torch.no_grad()
    def propose_one(
        self, features: Sequence[Tensor], image_sizes: Tensor, image_scales: Tensor, input_size: tuple[int, int]
    ) -> Tensor:
        """Inference on a batch of one image, without padding to a fixed proposal count: its
        proposals (P, 4), best first, as forward's valid ones (the form ONNX export traces)."""
        scored = self._score_anchors(features, input_size, image_sizes)
        top = self._top_boxes(scored, image_sizes, image_scales, self.test_proposals)
        boxes, scores, keep, levels = (t[0] for t in top)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        kept = box_ops.batched_nms(boxes, scores, levels, self.test_proposals.nms_thresh, self.box_coder.offset)
        return boxes[kept[: self.test_proposals.post_nms_top_n]]

    def _proposal_candidates(self, anchors: Tensor, image_sizes: Tensor) -> Tensor:
        """(N, M): anchors that may become proposals. The original's convention leaves out those
        centred in an image's padding (they see only padding)."""
        n = image_sizes.shape[0]
        if self.anchors_in_padding:
            return torch.ones((n, anchors.shape[0]), dtype=torch.bool, device=anchors.device)
        centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        return (centres[None, :, 0] < image_sizes[:, 1:2]) & (centres[None, :, 1] < image_sizes[:, 0:1])

    def _top_boxes(
        self, scored: ScoredAnchors, image_sizes: Tensor, image_scales: Tensor, settings: ProposalSettings
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The pre_nms_top_n best anchors of each level, decoded and clipped: boxes (N, k, 4),
        their logits (N, k), whether each may become a proposal (N, k), and its level (N, k)."""
        scores = scored.logits.float().masked_fill(~scored.in_image, float("-inf"))
        top_scores, top_idx, levels = _top_per_level(scores, scored.level_counts, settings.pre_nms_top_n)
        offset = self.box_coder.offset
        picked = torch.gather(scored.deltas, 1, top_idx[..., None].expand(-1, -1, 4))
        boxes = self.box_coder.decode(picked, scored.anchors[top_idx])
        boxes = box_ops.clip_boxes(boxes, image_sizes, offset)
        sizes = box_ops.box_sizes(boxes, offset)
        min_size = (settings.min_size * image_scales).view(-1, 1)
        keep = (sizes[..., 0] >= min_size) & (sizes[..., 1] >= min_size) & torch.isfinite(top_scores)
        if settings.score_thresh > 0:
            keep &= torch.sigmoid(top_scores) >= settings.score_thresh
        return boxes, top_scores, keep, levels

    def _proposals(
        self, scored: ScoredAnchors, image_sizes: Tensor, image_scales: Tensor, settings: ProposalSettings
    ) -> tuple[Tensor, Tensor]:
        """Proposals (N, P, 4) and their valid mask (N, P): each level's best, NMS within each
        level, the post_nms_top_n best of each image."""
        n = scored.logits.shape[0]
        boxes, top_scores, keep, levels = self._top_boxes(scored, image_sizes, image_scales, settings)
        k = boxes.shape[1]
        image_idx = torch.arange(n, device=boxes.device)[:, None].expand(n, k)
        groups = image_idx * len(scored.level_counts) + levels
        # NMS ranks by logit (the probability's order, without the ties rounding puts in it, whose
        # order would depend on the rest of the batch).
        flat_boxes, flat_scores, flat_images = boxes[keep], top_scores[keep], image_idx[keep]
        kept = box_ops.batched_nms(flat_boxes, flat_scores, groups[keep], settings.nms_thresh, self.box_coder.offset)
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
        ignore: IgnoreRegions | None = None,
    ) -> dict[str, Tensor]:
        labels, matched_gt = self._anchor_labels(anchors, image_sizes, gt_boxes, gt_valid)
        labels = ignore_background(labels, anchors, ignore, self.targets.negative_iou, self.box_coder.offset)
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
        # Inclusive corners are pixel indices (x2 < w); continuous ones may reach the edge (x2 <= w).
        below = torch.lt if self.box_coder.offset else torch.le
        inside = (
            (anchors[None, :, 0] >= 0)
            & (anchors[None, :, 1] >= 0)
            & below(anchors[None, :, 2], image_sizes[:, 1:2])
            & below(anchors[None, :, 3], image_sizes[:, 0:1])
        )
        best, iou = match(anchors, gt_boxes, gt_valid, self.box_coder.offset)
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


def _top_per_level(scores: Tensor, counts: Sequence[int], top_n: int) -> tuple[Tensor, Tensor, Tensor]:
    """The top_n best scores (N, k) of each level of (N, M) scores whose levels hold `counts`
    consecutive anchors, their indices into M and their levels (N, k); k = sum over levels of
    min(top_n, count)."""
    found, levels, start = [], [], 0
    for level, count in enumerate(counts):
        if count:
            _, idx = scores[:, start : start + count].topk(min(top_n, count), dim=1)
            found.append(idx + start)
            levels.append(torch.full_like(idx, level))
        start += count
    if not found:
        empty = scores.new_zeros((scores.shape[0], 0), dtype=torch.long)
        return scores[:, :0], empty, empty
    top_idx = torch.cat(found, dim=1)
    return torch.gather(scores, 1, top_idx), top_idx, torch.cat(levels, dim=1)
