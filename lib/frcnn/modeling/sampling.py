"""Matching candidates (anchors or RoIs) to ground truth, and balanced fg/bg sampling.

Both work on a whole batch at once: N images, M candidates per image (padded where images
differ), G ground-truth boxes per image (padded to the batch's largest count, with a valid mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .box_ops import box_iou


class Match(NamedTuple):
    """Best ground truth of each candidate: IoU (N, M) (-1 where an image has no ground truth)
    and the index of that ground truth (N, M)."""

    iou: Tensor
    gt_index: Tensor


def match(candidates: Tensor, gt_boxes: Tensor, gt_valid: Tensor, offset: float = 1.0) -> tuple[Match, Tensor]:
    """Match (N, M, 4) or (M, 4) candidates to (N, G, 4) ground truth with (N, G) valid mask.

    Returns the Match and the full IoU matrix (N, M, G) with -1 at padded ground truth.
    offset: the box convention's width offset (box_ops).
    """
    iou = box_iou(candidates, gt_boxes, offset)
    if iou.dim() == 2:
        iou = iou.unsqueeze(0)
    iou = iou.expand(gt_boxes.shape[0], -1, -1).masked_fill(~gt_valid[:, None, :], -1.0)
    if iou.shape[-1] == 0:
        n, m = iou.shape[:2]
        return Match(iou.new_full((n, m), -1.0), torch.zeros((n, m), dtype=torch.long, device=iou.device)), iou
    best_iou, best_gt = iou.max(dim=2)
    return Match(best_iou, best_gt), iou


class IgnoreRegions(NamedTuple):
    """Regions where candidates are neither foreground nor background (difficult objects, among
    them those cut by a tile's edge): boxes (N, I, 4) and their valid mask (N, I)."""

    boxes: Tensor
    valid: Tensor


def ignore_background(
    labels: Tensor, candidates: Tensor, ignore: IgnoreRegions | None, background_below: float, offset: float = 1.0
) -> Tensor:
    """labels (N, M) with each background candidate (0) set to -1 (neither) where its IoU with an
    ignore region reaches `background_below`, the IoU under which a candidate of an object is
    background: were the region an object, the candidate would not be background. Foreground
    stays; candidates (N, M, 4) or (M, 4)."""
    if ignore is None:
        return labels
    best, _ = match(candidates, ignore.boxes, ignore.valid, offset)
    return labels.masked_fill((labels == 0) & (best.iou >= background_below), -1.0)


def sample_balanced(
    labels: Tensor, batch_size_per_image: int, positive_fraction: float, seeds: Sequence[int] | None = None
) -> tuple[Tensor, Tensor]:
    """Pick at most batch_size_per_image candidates per image, at most that x positive_fraction of
    them foreground, the rest background, uniformly at random without replacement.

    labels (N, M): 1 foreground, 0 background, -1 neither.
    seeds: one per image: its choice then depends on nothing else (not on the other images of the
        batch, nor the process); None draws from the global generator.
    Returns boolean masks (N, M) of the chosen foreground and background.
    """
    n, m = labels.shape
    is_fg = labels == 1
    is_bg = labels == 0
    num_fg = torch.clamp(is_fg.sum(1), max=int(batch_size_per_image * positive_fraction))
    num_bg = torch.minimum(is_bg.sum(1), batch_size_per_image - num_fg)
    if seeds is None:
        noise = torch.rand((n, m), device=labels.device)
    else:
        noise = torch.stack(
            [torch.rand(m, device=labels.device, generator=_generator(labels.device, s)) for s in seeds]
        )
    fg_mask = _first_k(torch.where(is_fg, noise, 2.0), num_fg)
    bg_mask = _first_k(torch.where(is_bg, noise, 2.0), num_bg)
    return fg_mask, bg_mask


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def _first_k(keys: Tensor, k: Tensor) -> Tensor:
    """Mask of the k[i] smallest keys of each row i (keys < 2 are candidates; k never exceeds them)."""
    order = keys.argsort(dim=1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(keys.shape[1], device=keys.device).expand_as(order))
    return rank < k[:, None]


def per_image_weights(mask: Tensor) -> Tensor:
    """(N, M) boolean mask of sampled items -> (N, M) weights 1 / (count in its image x N) on the
    sampled items, 0 elsewhere, so a weighted sum is the mean over images of per-image means."""
    counts = mask.sum(dim=1, keepdim=True).clamp(min=1)
    return mask.float() / (counts * mask.shape[0])
