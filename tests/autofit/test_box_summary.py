"""The training boxes' statistics at the training scale, on box sets with known answers."""

from __future__ import annotations

import numpy as np

from frcnn.autofit.profile import BoxProfile
from frcnn.autofit.summary import box_stats, describe, plot_box_stats
from frcnn.data.datasets.base import ImageRecord


def record(boxes, height=200, width=300, flipped=False, difficult=None) -> ImageRecord:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    r = ImageRecord("x", "x.jpg", width, height, boxes=boxes, labels=np.ones(n, np.int64), flipped=flipped)
    r.difficult = np.zeros(n, bool) if difficult is None else np.array(difficult)
    r.crowd = np.zeros(n, bool)
    return r


def test_boxes_of_one_size_scale_with_the_image():
    # 200 x 300 images resized to a 400 shorter side: factor 2. The loader scales the corners, so a
    # 20 x 10 px box (0..19, 0..9) becomes 0..38, 0..18: 39 x 19 pixels
    records = [record([[0, 0, 19, 9], [50, 50, 69, 59]]) for _ in range(3)]
    stats = box_stats(BoxProfile.of(records).at_scale(400, 1000))
    assert stats.images == 3 and stats.boxes == 6
    assert stats.quantiles["width"] == [39.0] * 5 and stats.quantiles["height"] == [19.0] * 5
    assert stats.quantiles["aspect"] == [round(19 / 39, 3)] * 5
    assert np.allclose(stats.quantiles["side"], round(np.sqrt(39 * 19), 3))
    assert stats.objects_per_image == {"mean": 2.0, "max": 2, "empty": 0}
    assert stats.image_sizes == {"height": [400.0, 400.0], "width": [600.0, 600.0]}


def test_two_clusters_split_the_quantiles():
    small = [[0, 0, 9, 9]] * 6  # 10 px
    large = [[0, 0, 99, 99]] * 4  # 100 px
    stats = box_stats(BoxProfile.of([record(small + large)]).at_scale(200, 1000))  # factor 1
    side = stats.quantiles["side"]
    assert side[0] == side[1] == side[2] == 10.0  # 60% are small: the median is small
    assert side[3] == side[4] == 100.0


def test_extreme_aspect_ratios_and_the_cap_on_the_longer_side():
    # 100 x 1000 image at scale 600 would be 6000 wide: capped at 1000, factor 1
    boxes = [[0, 0, 399, 3]] * 10 + [[0, 0, 3, 79]] * 10  # 400 x 4 and 4 x 80
    stats = box_stats(BoxProfile.of([record(boxes, height=100, width=1000)]).at_scale(600, 1000))
    assert stats.quantiles["aspect"][0] == 0.01 and stats.quantiles["aspect"][-1] == 20.0
    assert stats.image_sizes == {"height": [100.0, 100.0], "width": [1000.0, 1000.0]}


def test_empty_images_flipped_copies_and_difficult_objects():
    records = [record([]), record([[0, 0, 9, 9]]), record([[0, 0, 9, 9]], flipped=True)]
    records.append(record([[0, 0, 9, 9], [0, 0, 49, 49]], difficult=[False, True]))
    stats = box_stats(BoxProfile.of(records).at_scale(200, 1000))
    assert stats.images == 3 and stats.boxes == 2  # the flipped copy and the difficult box are left out
    assert stats.objects_per_image == {"mean": round(2 / 3, 3), "max": 1, "empty": 1}
    assert describe(box_stats(BoxProfile.of([record([])]).at_scale(200, 1000))) == ["training boxes: none in 1 images"]


def test_the_figure_is_written(tmp_path):
    stats = box_stats(BoxProfile.of([record([[0, 0, 9, 19], [5, 5, 60, 30]])]).at_scale(200, 1000))
    plot_box_stats(stats, tmp_path / "box_stats.png")
    assert (tmp_path / "box_stats.png").stat().st_size > 1000
    assert any("quantiles" in line for line in describe(stats))
