"""Drawing detections (utils/vis.py): labels sized to the image and to the boxes drawn."""

import numpy as np

from frcnn.utils.vis import draw_detections, label_style


def boxes_of(side: float, count: int = 5) -> np.ndarray:
    return np.array([[10 * i, 10, 10 * i + side - 1, 10 + side - 1] for i in range(count)], np.float32)


def test_labels_grow_with_the_image_when_the_boxes_allow():
    # 600 px: thickness 2, font 0.667; 2400 px with 300 px boxes: 8 and 2.667
    assert label_style((600, 800), boxes_of(300)) == (2, 600 / 900)
    assert label_style((2400, 2400), boxes_of(300)) == (8, 2400 / 900)


def test_small_boxes_in_a_large_scene_keep_small_labels():
    # 40 px crowns in a 2400 px scene: text at most 20 px (font 20 / 22), lines 4 px
    thickness, font = label_style((2400, 2400), boxes_of(40))
    assert (thickness, font) == (4, 20 / 22)
    assert label_style((2400, 2400), boxes_of(8)) == (1, 0.35)  # floors: 1 px lines, font 0.35


def test_the_style_follows_the_boxes_that_are_drawn():
    image = np.zeros((2400, 2400, 3), np.uint8)
    # three 40 px boxes drawn, three of 1000 px below the threshold: the median of all would be 520
    boxes = np.concatenate([boxes_of(40, 3), boxes_of(1000, 3)])
    scores = np.array([0.9] * 3 + [0.1] * 3, np.float32)
    drawn, count = draw_detections(image, boxes, scores, np.ones(6, np.int64), ["bg", "tree"], thresh=0.5)
    assert count == 3 and drawn[200:, :].sum() == 0
    # first box (y 10-49) and its label: rows 0-49 with a font of 20 / 22; a 2.67 font's label
    # alone would be about 86 rows high
    rows = np.flatnonzero(drawn[:, 15].any(axis=1))
    assert rows.max() - rows.min() < 60
