"""The detection head: sample RoIs from proposals, pool their features, classify and refine them.

Shapes: N images, P proposals per image (padded, valid mask), G ground-truth boxes per image
(padded, valid mask), R RoIs over the whole batch as (R, 5) rows (image index, x1, y1, x2, y2),
C feature channels, D head feature size, K classes including background (label 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from . import box_ops
from .box_coder import BoxCoder
from .sampling import IgnoreRegions, ignore_background, match, per_image_weights, sample_balanced


class BoxPredictor(nn.Module):
    """Class scores (R, K) and box deltas (R, 4K), or (R, 4) when class_agnostic, from (R, D).

    Args:
        in_features: D.
        num_classes: K, background included.
        class_agnostic: one set of deltas shared by all classes (the original's --cag).
    """

    def __init__(self, in_features: int, num_classes: int, class_agnostic: bool = False) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, 4 if class_agnostic else 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


@dataclass
class RoISamplingSettings:
    """Which proposals train the head (TRAIN.BATCH_SIZE, FG_FRACTION, FG_THRESH, BG_THRESH_*).

    RoIs with IoU >= fg_iou are foreground; background needs bg_iou_lo <= IoU < bg_iou_hi, except
    in an image without ground truth, where every proposal is background (it trains as background).
    """

    batch_size_per_image: int = 128
    positive_fraction: float = 0.25
    fg_iou: float = 0.5
    bg_iou_hi: float = 0.5
    bg_iou_lo: float = 0.1


@dataclass
class DetectionSettings:
    """Post-processing at test time: score threshold, per-class NMS, detections kept per image,
    and the smallest width and height a detection may have (torchvision drops those under 0.01)."""

    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    max_per_image: int = 100
    min_size: float = 0.0


class RoIHeads(nn.Module):
    """Fast R-CNN head over RPN proposals.

    Args:
        pooler: RoIPooler (one feature map) or PyramidRoIPooler giving (R, C, P, P) features.
        box_head: maps pooled features to (R, D) (fc6/fc7 for VGG, layer4 + mean for ResNet).
        predictor: BoxPredictor.
        num_classes: K, background included.
        box_coder: codes deltas relative to RoIs, with the original's target normalisation; its
            offset is the model's box convention.
        sampling: RoISamplingSettings.
        detection: DetectionSettings.
        sigma: smooth L1 sigma of the box loss (1 in the original).
        recompute_head: in training, keep only the box head's input and recompute its
            activations in backward (torch.utils.checkpoint): the same losses and gradients for
            less peak memory and a second head forward.
    """

    def __init__(
        self,
        pooler: nn.Module,
        box_head: nn.Module,
        predictor: BoxPredictor,
        num_classes: int,
        box_coder: BoxCoder,
        sampling: RoISamplingSettings | None = None,
        detection: DetectionSettings | None = None,
        sigma: float = 1.0,
        recompute_head: bool = False,
    ) -> None:
        super().__init__()
        self.pooler = pooler
        self.box_head = box_head
        self.predictor = predictor
        self.num_classes = num_classes
        self.box_coder = box_coder
        self.sampling = sampling or RoISamplingSettings()
        self.detection = detection or DetectionSettings()
        self.sigma = sigma
        self.recompute_head = recompute_head

    def forward(
        self,
        features: Sequence[Tensor],
        proposals: Tensor,
        proposal_valid: Tensor,
        image_sizes: Tensor,
        gt_boxes: Tensor | None = None,
        gt_labels: Tensor | None = None,
        gt_valid: Tensor | None = None,
        seeds: Sequence[int] | None = None,
        ignore: IgnoreRegions | None = None,
    ) -> tuple[dict[str, Tensor], list[dict[str, Tensor]]]:
        """Training: returns ({"rcnn_cls", "rcnn_box"}, []). Inference: ({}, detections), one
        dict per image with boxes (D, 4) in input pixels, scores (D,), labels (D,) in 1..K-1.
        seeds: per image, for the RoI sampling (see sampling.sample_balanced); ignore: regions
        whose RoIs are not background (sampling.ignore_background)."""
        if self.training:
            if gt_boxes is None or gt_labels is None or gt_valid is None:
                raise ValueError("the RoI heads need ground truth in training mode")
            rois, labels, targets, weights = self._sample(
                proposals, proposal_valid, gt_boxes, gt_labels, gt_valid, seeds, ignore
            )
            pooled = self.pooler(features, rois)
            recompute = self.recompute_head and torch.is_grad_enabled()
            embedded = checkpoint(self.box_head, pooled, use_reentrant=False) if recompute else self.box_head(pooled)
            cls_logits, deltas = self.predictor(embedded)
            return self._losses(cls_logits, deltas, labels, targets, weights), []
        image_idx, slot = proposal_valid.nonzero(as_tuple=True)
        rois = torch.cat((image_idx[:, None].to(proposals.dtype), proposals[image_idx, slot]), dim=1)
        cls_logits, deltas = self.predictor(self.box_head(self.pooler(features, rois)))
        return {}, self._detect(cls_logits, deltas, rois, image_sizes, proposals.shape[0])

    @torch.no_grad()
    def _sample(
        self,
        proposals: Tensor,
        proposal_valid: Tensor,
        gt_boxes: Tensor,
        gt_labels: Tensor,
        gt_valid: Tensor,
        seeds: Sequence[int] | None = None,
        ignore: IgnoreRegions | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sampled RoIs (R, 5), their labels (R,), normalised box targets (R, 4), loss weights (R,).

        R = N x min(batch_size_per_image, M), M the candidates per image (proposal slots plus
        ground-truth slots); fewer chosen candidates leave zero-weight padding RoIs, so nothing
        about the sample is read back from the device.
        """
        s = self.sampling
        candidates = torch.cat((proposals, gt_boxes.to(proposals.dtype)), dim=1)  # ground truth joins the proposals
        candidate_valid = torch.cat((proposal_valid, gt_valid), dim=1)
        best, _ = match(candidates, gt_boxes, gt_valid, self.box_coder.offset)
        has_gt = gt_valid.any(dim=1, keepdim=True)
        labels = torch.full_like(best.iou, -1.0)
        is_bg = ((best.iou >= s.bg_iou_lo) & (best.iou < s.bg_iou_hi)) | ~has_gt
        labels[is_bg] = 0
        labels[best.iou >= s.fg_iou] = 1
        labels[~candidate_valid] = -1
        labels = ignore_background(labels, candidates, ignore, s.bg_iou_hi, self.box_coder.offset)
        fg, bg = sample_balanced(labels, s.batch_size_per_image, s.positive_fraction, seeds)
        # The chosen candidates first (foreground, then background), padding after.
        n, m = labels.shape
        order = torch.topk(fg.to(torch.int8) * 2 + bg.to(torch.int8), min(s.batch_size_per_image, m), dim=1).indices
        chosen = torch.gather(fg | bg, 1, order)
        is_fg = torch.gather(fg, 1, order)
        weights = per_image_weights(chosen)
        image_idx = torch.arange(n, device=labels.device)[:, None].expand_as(order)
        boxes = candidates[image_idx, order]
        gt_index = best.gt_index[image_idx, order]
        roi_labels = torch.where(is_fg, gt_labels[image_idx, gt_index], torch.zeros_like(gt_index))
        targets = self.box_coder.encode(gt_boxes[image_idx, gt_index], boxes)
        rois = torch.cat((image_idx[..., None].to(boxes.dtype), boxes), dim=2)
        return rois.reshape(-1, 5), roi_labels.reshape(-1), targets.reshape(-1, 4), weights.reshape(-1)

    def _losses(
        self, cls_logits: Tensor, deltas: Tensor, labels: Tensor, targets: Tensor, weights: Tensor
    ) -> dict[str, Tensor]:
        cls_loss = (F.cross_entropy(cls_logits.float(), labels, reduction="none") * weights).sum()
        deltas = deltas.float().view(deltas.shape[0], deltas.shape[1] // 4, 4)
        if deltas.shape[1] > 1:
            deltas = deltas[torch.arange(labels.numel(), device=labels.device), labels]
        else:
            deltas = deltas[:, 0]
        box_loss = F.smooth_l1_loss(deltas, targets, beta=1.0 / self.sigma**2, reduction="none").sum(-1)
        box_loss = (box_loss * weights * (labels > 0)).sum()
        return {"rcnn_cls": cls_loss, "rcnn_box": box_loss}

    @torch.no_grad()
    def detect_one(self, features: Sequence[Tensor], proposals: Tensor, image_sizes: Tensor) -> tuple[Tensor, ...]:
        """Inference on a batch of one image from its proposals (P, 4) (RegionProposalNetwork.
        propose_one): boxes (D, 4) in input pixels, scores (D,), labels (D,), best first, as
        forward's (the form ONNX export traces)."""
        rois = torch.cat((proposals.new_zeros((proposals.shape[0], 1)), proposals), dim=1)
        cls_logits, deltas = self.predictor(self.box_head(self.pooler(features, rois)))
        boxes, scores, labels, _, keep = self._nms_candidates(cls_logits, deltas, rois, image_sizes)
        keep = keep[: self.detection.max_per_image]
        return boxes[keep], scores[keep], labels[keep]

    def _nms_candidates(
        self, cls_logits: Tensor, deltas: Tensor, rois: Tensor, image_sizes: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Every (RoI, foreground class) pair above the score threshold: boxes (E, 4), scores (E,),
        labels (E,), image indices (E,), and the indices NMS keeps within each image and class,
        by decreasing score."""
        d = self.detection
        k = self.num_classes
        scores = F.softmax(cls_logits.float(), dim=1)
        deltas = deltas.float().view(deltas.shape[0], deltas.shape[1] // 4, 4).expand(-1, k, -1)  # R may be 0
        image_idx = rois[:, 0].long()
        boxes = self.box_coder.decode(deltas, rois[:, None, 1:])  # (R, K, 4)
        offset = self.box_coder.offset
        boxes = box_ops.clip_boxes(boxes, image_sizes[image_idx], offset)
        candidate = scores[:, 1:] > d.score_thresh
        if d.min_size > 0:
            candidate &= (box_ops.box_sizes(boxes[:, 1:], offset) >= d.min_size).all(dim=-1)
        roi_i, cls_i = candidate.nonzero(as_tuple=True)
        cls_i = cls_i + 1
        cand_boxes, cand_scores, cand_images = boxes[roi_i, cls_i], scores[roi_i, cls_i], image_idx[roi_i]
        keep = box_ops.batched_nms(cand_boxes, cand_scores, cand_images * k + cls_i, d.nms_thresh, offset)
        return cand_boxes, cand_scores, cls_i, cand_images, keep

    @torch.no_grad()
    def _detect(
        self, cls_logits: Tensor, deltas: Tensor, rois: Tensor, image_sizes: Tensor, num_images: int
    ) -> list[dict[str, Tensor]]:
        boxes, scores, labels, images, keep = self._nms_candidates(cls_logits, deltas, rois, image_sizes)
        keep = keep[box_ops.top_per_group(images[keep], scores[keep], num_images, self.detection.max_per_image)]
        per_image = torch.bincount(images[keep], minlength=num_images).tolist()
        return [
            {"boxes": b, "scores": s, "labels": c}
            for b, s, c in zip(
                boxes[keep].split(per_image), scores[keep].split(per_image), labels[keep].split(per_image)
            )
        ]
