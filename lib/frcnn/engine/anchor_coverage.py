"""How many training boxes the RPN's anchors can learn: the share of boxes that some anchor
matches at the RPN's positive IoU, with the anchors at their real places on the stride grid of
each image at the training scale (a 12 px box between two 16 px cells never reaches IoU 0.7 with a
12 px anchor), and only anchors wholly inside the image, as the RPN's labelling takes them.

`anchor_coverage` measures a built model; `coverage_of` measures candidate scales and ratios of a
single-level net without one (engine/auto_anchors.py computes the same figure faster, per box and
anchor shape, when it searches among many candidates).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..data.datasets.base import ImageRecord
from ..data.loader import SIZE_DIVISIBILITY, resize_scale
from ..modeling import FasterRCNN
from ..modeling.anchors import AnchorGenerator
from ..modeling.box_ops import box_iou

# (grid sizes of the levels, padded image size) -> anchors of each level, as the model's generators
Generator = Callable[[Sequence[tuple[int, int]], tuple[int, int]], Sequence[Tensor]]


def scaled_images(
    records: Sequence[ImageRecord], scale: int, max_size: int, offset: float
) -> Iterator[tuple[tuple[int, int], tuple[int, int], np.ndarray]]:
    """((h, w), padded (h, w), boxes (G, 4) float32) of each image with objects to learn, resized
    as the loader resizes it; flipped copies (the same boxes' sizes), difficult and crowd objects
    left out. With offset 0 the boxes' x2, y2 get + 1: the loader's inclusive corners in the
    model's continuous convention."""
    for record in (r for r in records if not r.flipped and len(r.boxes)):
        keep = ~(record.difficult | record.crowd)
        if not keep.any():
            continue
        factor = resize_scale(record.height, record.width, scale, max_size)
        h, w = round(record.height * factor), round(record.width * factor)
        padded = (-(-h // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY, -(-w // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY)
        boxes = (record.boxes[keep] * factor).astype(np.float32)
        if offset == 0:
            boxes[:, 2:] += 1
        yield (h, w), padded, boxes


@torch.no_grad()
def grid_coverage(
    generator: Generator,
    strides: Sequence[int],
    offset: float,
    records: Sequence[ImageRecord],
    scale: int,
    max_size: int,
    positive_iou: float,
) -> tuple[float, int]:
    """(share of boxes whose best inside anchor reaches positive_iou, number of boxes) for the
    anchors `generator` lays on grids of `strides` over each padded image."""
    matched = total = 0
    below = torch.lt if offset else torch.le
    for (h, w), padded, boxes in scaled_images(records, scale, max_size, offset):
        grids = [(-(-padded[0] // s), -(-padded[1] // s)) for s in strides]
        anchors = torch.cat(list(generator(grids, padded))).cpu()
        inside = (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & below(anchors[:, 2], w) & below(anchors[:, 3], h)
        boxes_t = torch.from_numpy(boxes)
        best = box_iou(anchors[inside], boxes_t, offset).max(dim=0).values if inside.any() else torch.zeros(len(boxes))
        matched += int((best >= positive_iou).sum())
        total += len(boxes)
    return (matched / total if total else float("nan")), total


def anchor_coverage(
    model: FasterRCNN, records: Sequence[ImageRecord], scale: int, max_size: int, positive_iou: float
) -> tuple[float, int]:
    """(share of boxes whose best inside anchor reaches positive_iou, number of boxes), boxes and
    images scaled as the loader scales them; flipped copies, difficult and crowd objects left out."""
    generator, strides = model.rpn.anchor_generator, model.backbone.strides
    return grid_coverage(generator, strides, model.convention.box_offset, records, scale, max_size, positive_iou)


def coverage_of(
    stride: int,
    scales: Sequence[float],
    ratios: Sequence[float],
    records: Sequence[ImageRecord],
    scale: int,
    max_size: int,
    positive_iou: float,
    offset: float = 1.0,
) -> tuple[float, int]:
    """anchor_coverage of a single-level net with these ANCHOR_SCALES and ANCHOR_RATIOS at
    FEAT_STRIDE `stride`, without building the net."""
    generator = AnchorGenerator(stride, scales, ratios)
    return grid_coverage(generator, (stride,), offset, records, scale, max_size, positive_iou)
