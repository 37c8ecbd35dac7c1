"""The share of training boxes the anchors can learn, with the anchors on their stride grid."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from frcnn.autofit.coverage import anchor_coverage
from frcnn.autofit.profile import BoxProfile
from frcnn.data.datasets.base import ImageRecord
from frcnn.modeling.anchors import AnchorGenerator
from frcnn.modeling.conventions import CONVENTIONS


def model_with(stride: int, scales, ratios=(1,)) -> SimpleNamespace:
    return SimpleNamespace(
        rpn=SimpleNamespace(anchor_generator=AnchorGenerator(stride, scales, ratios)),
        backbone=SimpleNamespace(strides=(stride,)),
        convention=CONVENTIONS["original"],
    )


def image(boxes) -> ImageRecord:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    r = ImageRecord("x", "x.jpg", 128, 128, boxes=boxes, labels=np.ones(len(boxes), np.int64))
    r.difficult, r.crowd = np.zeros(len(boxes), bool), np.zeros(len(boxes), bool)
    return r


def test_a_box_on_an_anchor_is_covered_and_one_between_cells_is_not():
    # stride 16, one 32 x 32 anchor per cell: cell (x, y) holds (16x - 8, 16y - 8, 16x + 23, 16y + 23)
    model = model_with(16, scales=(2,))
    on_grid = [[8, 8, 39, 39]]  # the anchor of cell (1, 1) exactly
    between = [[16, 16, 47, 47]]  # half a cell off in x and y: IoU (24 * 24) / (2 * 32 * 32 - 576) = 0.39
    assert anchor_coverage(model, BoxProfile.of([image(on_grid)]), 128, 1000, 0.7) == (1.0, 1)
    assert anchor_coverage(model, BoxProfile.of([image(between)]), 128, 1000, 0.7) == (0.0, 1)
    assert anchor_coverage(model, BoxProfile.of([image(between)]), 128, 1000, 0.35) == (1.0, 1)
    assert anchor_coverage(model, BoxProfile.of([image(on_grid + between)]), 128, 1000, 0.7) == (0.5, 2)


def test_small_boxes_need_small_anchors_and_anchors_must_lie_inside():
    small = [[40, 40, 51, 51]]  # 12 x 12
    assert anchor_coverage(model_with(16, scales=(2,)), BoxProfile.of([image(small)]), 128, 1000, 0.5)[0] == 0.0
    assert anchor_coverage(model_with(4, scales=(3,)), BoxProfile.of([image(small)]), 128, 1000, 0.5)[0] == 1.0
    corner = [[0, 0, 31, 31]]  # the only anchor on it would start at -8: outside the image
    assert anchor_coverage(model_with(16, scales=(2,)), BoxProfile.of([image(corner)]), 128, 1000, 0.7)[0] == 0.0


def test_boxes_are_scaled_as_the_loader_scales_them():
    # at scale 256 the image doubles: the 16 x 16 box 4..19 becomes 8..38 (31 px), on the 32 px
    # anchor 8..39 (IoU 961 / 1024); at scale 128 it stays 16 px (IoU 0.13 at best)
    model = model_with(16, scales=(2,))
    assert anchor_coverage(model, BoxProfile.of([image([[4, 4, 19, 19]])]), 256, 1000, 0.7)[0] == 1.0
    assert anchor_coverage(model, BoxProfile.of([image([[4, 4, 19, 19]])]), 128, 1000, 0.7)[0] == 0.0
