"""How many training boxes the RPN's anchors can learn: the share of boxes that some anchor
matches at the RPN's positive IoU, with the anchors at their real places on the stride grid of
each image at the training scale (a 12 px box between two 16 px cells never reaches IoU 0.7 with a
12 px anchor), and only anchors wholly inside the image, as the RPN's labelling takes them.

`anchor_coverage` measures a built model; `coverage_of` measures candidate scales and ratios of a
single-level net without one (anchors.py computes the same figure faster, per box and anchor
shape, when it searches among many candidates); `report_coverage` logs the figure of a run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Callable

import torch
from easydict import EasyDict
from torch import Tensor

from ..modeling import FasterRCNN
from ..modeling.anchors import AnchorGenerator
from ..modeling.box_ops import box_iou
from . import anchors
from .profile import BoxProfile

log = logging.getLogger("frcnn.train")

# (grid sizes of the levels, padded image size) -> anchors of each level, as the model's generators
Generator = Callable[[Sequence[tuple[int, int]], tuple[int, int]], Sequence[Tensor]]


@torch.no_grad()
def grid_coverage(
    generator: Generator,
    strides: Sequence[int],
    offset: float,
    profile: BoxProfile,
    scale: int,
    max_size: int,
    positive_iou: float,
) -> tuple[float, int]:
    """(share of boxes whose best inside anchor reaches positive_iou, number of boxes) for the
    anchors `generator` lays on grids of `strides` over each padded image."""
    matched = total = 0
    below = torch.lt if offset else torch.le
    for (h, w), padded, boxes in profile.at_scale(scale, max_size).per_image(offset):
        grids = [(-(-padded[0] // s), -(-padded[1] // s)) for s in strides]
        anchors = torch.cat(list(generator(grids, padded))).cpu()
        inside = (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & below(anchors[:, 2], w) & below(anchors[:, 3], h)
        boxes_t = torch.from_numpy(boxes)
        best = box_iou(anchors[inside], boxes_t, offset).max(dim=0).values if inside.any() else torch.zeros(len(boxes))
        matched += int((best >= positive_iou).sum())
        total += len(boxes)
    return (matched / total if total else float("nan")), total


def anchor_coverage(
    model: FasterRCNN, profile: BoxProfile, scale: int, max_size: int, positive_iou: float
) -> tuple[float, int]:
    """(share of boxes whose best inside anchor reaches positive_iou, number of boxes), boxes and
    images scaled as the loader scales them; flipped copies, difficult and crowd objects left out."""
    generator, strides = model.rpn.anchor_generator, model.backbone.strides
    return grid_coverage(generator, strides, model.convention.box_offset, profile, scale, max_size, positive_iou)


def coverage_of(
    stride: int,
    scales: Sequence[float],
    ratios: Sequence[float],
    profile: BoxProfile,
    scale: int,
    max_size: int,
    positive_iou: float,
    offset: float = 1.0,
) -> tuple[float, int]:
    """anchor_coverage of a single-level net with these ANCHOR_SCALES and ANCHOR_RATIOS at
    FEAT_STRIDE `stride`, without building the net."""
    generator = AnchorGenerator(stride, scales, ratios)
    return grid_coverage(generator, (stride,), offset, profile, scale, max_size, positive_iou)


def report_coverage(model: FasterRCNN, profile: BoxProfile, cfg: EasyDict) -> None:
    """Log the share of the training boxes the built model's anchors can learn."""
    scale, max_size, iou = cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE, cfg.TRAIN.RPN_POSITIVE_OVERLAP
    if isinstance(model.rpn.anchor_generator, AnchorGenerator):  # one level: the exact per-axis count
        offset = model.convention.box_offset
        boxes = profile.at_scale(scale, max_size).on_grid(cfg.FEAT_STRIDE, offset)
        share = anchors.coverage(boxes, cfg.FEAT_STRIDE, cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS, iou, offset)
        count = len(boxes)
    else:  # a pyramid: anchor by anchor
        share, count = anchor_coverage(model, profile, scale, max_size, iou)
    log.info(
        "anchors: %.1f%% of the %d training boxes have an anchor inside the image at IoU >= %.2f "
        "(RPN_POSITIVE_OVERLAP)",
        100 * share,
        count,
        iou,
    )
