"""report.html: errors judged by the devkit's rules at the best-F1 threshold, in one page."""

from __future__ import annotations

import base64
import math
import re

import cv2
import numpy as np
from PIL import Image

from frcnn.data.datasets.base import ImageRecord
from frcnn.evaluation.evaluate import Evaluation
from frcnn.evaluation.html_report import COLOURS, ImageErrors, best_f1_threshold, draw, judge, write_html_report
from frcnn.evaluation.voc_eval import ClassResult

CLASSES = ("__background__", "circle", "square", "triangle")


def records(tmp_path) -> list[ImageRecord]:
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / f"{name}.jpg"), np.full((120, 160, 3), 90, np.uint8))
    a = ImageRecord(
        "a",
        str(tmp_path / "a.jpg"),
        160,
        120,
        boxes=np.array([[10, 10, 29, 29], [60, 40, 109, 89], [0, 0, 5, 5]], np.float32),  # 20x20, 50x50, difficult
        labels=np.array([1, 2, 2]),
        difficult=np.array([False, False, True]),
    )
    b = ImageRecord(
        "b", str(tmp_path / "b.jpg"), 160, 120, boxes=np.array([[100, 100, 109, 109]], np.float32), labels=np.array([3])
    )
    b.difficult = np.array([False])
    return [a, b]


DETECTIONS = [
    {  # a: circle found (0.9); a misplaced square (0.8); the circle again (0.7); the square, weakly (0.1);
        # the difficult square (0.6): neither right nor wrong
        "boxes": np.array(
            [[10, 10, 29, 29], [120, 0, 150, 30], [11, 11, 30, 30], [60, 40, 109, 89], [0, 0, 5, 5]], np.float32
        ),
        "scores": np.array([0.9, 0.8, 0.7, 0.1, 0.6], np.float32),
        "labels": np.array([1, 2, 1, 2, 2]),
    },
    {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, np.int64)},
]


def test_verdicts_and_threshold_by_hand(tmp_path):
    judged, pooled = judge(records(tmp_path), DETECTIONS)
    assert judged[0].tolist() == [1, 0, 0, 1, -1] and judged[1].tolist() == []
    # by score: 0.9 TP (P 1, R 1/3, F1 .5), 0.8 FP, 0.7 FP, 0.1 TP (P .5, R 2/3, F1 4/7)
    threshold, f1 = best_f1_threshold(pooled, num_positives=3)
    assert math.isclose(threshold, 0.1, rel_tol=1e-6) and math.isclose(f1, 4 / 7)


def test_the_page_shows_the_table_the_sizes_and_the_galleries(tmp_path):
    results = [ClassResult(0.5, np.zeros(0), np.zeros(0), 1, 2), ClassResult(0.25, np.zeros(0), np.zeros(0), 1, 3)]
    results.append(ClassResult(float("nan"), np.zeros(0), np.zeros(0), 0, 0))
    evaluation = Evaluation("voc", CLASSES[1:], results, 0.375)
    summary = write_html_report(tmp_path / "report.html", evaluation, records(tmp_path), DETECTIONS, CLASSES)
    page = (tmp_path / "report.html").read_text()
    assert re.findall(r"<td class='ap'>([0-9.]*)</td>", page) == ["0.5000", "0.2500", ""]
    assert "<th class='ap'>0.3750</th>" in page
    # small: the circle (found) and the triangle (missed); medium: the square (found at 0.1)
    assert summary["size_recall"] == {"small": (1, 2), "medium": (1, 1), "large": (0, 0)}
    assert all(f"rgb{colour}" in page for colour in COLOURS.values()) and len(set(COLOURS.values())) == 4
    assert page.count("data:image/jpeg;base64,") == 2  # a.jpg (2 false positives), b.jpg (its triangle missed)
    assert "a.jpg: 2 false positives, 0 missed" in page and "b.jpg: 0 false positives, 1 missed" in page
    assert "<script" not in page


def test_boxes_are_drawn_on_the_pixels_as_stored_whatever_the_exif_orientation(tmp_path):
    # a phone's JPEG: 160 x 120 as stored, tagged "rotate 90 degrees" (orientation 6); the loader
    # and the annotation tools use the stored pixels, so the drawing must too
    path = tmp_path / "phone.jpg"
    pixels = np.full((120, 160, 3), 90, np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, exif=exif)
    assert cv2.imread(str(path)).shape[:2] == (160, 120)  # OpenCV alone applies the tag
    record = ImageRecord("phone", str(path), 160, 120, boxes=np.array([[100, 10, 149, 59]], np.float32))
    record.labels = np.array([1])
    none = np.zeros(0, np.int64)
    no_detections = {"boxes": np.zeros((0, 4), np.float32), "labels": none}
    drawn = draw(record, no_detections, ImageErrors(none, none, np.array([0]), none), CLASSES)
    image = cv2.imdecode(np.frombuffer(base64.b64decode(drawn), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (120, 160)
    missed = np.array(COLOURS["missed"][::-1])  # drawn over the ground truth
    assert np.abs(image[35, 100].astype(int) - missed).max() < 40  # the box's left edge, where the box is
