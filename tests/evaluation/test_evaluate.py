"""evaluate(): the VOC metrics at another least IoU (test_net.py --iou), by hand, through to
ap.json and the report's verdicts."""

import argparse
import json

import numpy as np
import pytest

from frcnn.cli import overlap_threshold
from frcnn.data.datasets.base import DetectionDataset, ImageRecord
from frcnn.evaluation.evaluate import evaluate
from frcnn.evaluation.html_report import judge
from frcnn.evaluation.report import save_report

# one 10 x 10 object (inclusive pixels); the detection covers its top 4 rows: IoU 40 / 100 = 0.4
RECORD = ImageRecord("a", "a.jpg", 32, 32, np.array([[0, 0, 9, 9]], np.float32), np.array([1]), np.array([False]))
DETECTIONS = [{"boxes": np.array([[0, 0, 9, 3]], np.float32), "scores": np.array([0.9]), "labels": np.array([1])}]


class OneImage(DetectionDataset):
    def __init__(self) -> None:
        super().__init__("one", ("crown",))

    def _load_records(self) -> list[ImageRecord]:
        return [RECORD]


@pytest.mark.parametrize("iou, ap, verdict", [(0.5, 0.0, 0), (0.4, 1.0, 1), (0.35, 1.0, 1), (0.45, 0.0, 0)])
def test_the_least_iou_decides_the_match(iou, ap, verdict):
    evaluation = evaluate(OneImage(), DETECTIONS, "voc", iou=iou)
    assert evaluation.mean_ap == ap and evaluation.iou == iou
    assert judge([RECORD], DETECTIONS, iou)[0][0].tolist() == [verdict]


def test_the_iou_is_written_into_ap_json(tmp_path):
    save_report(tmp_path, evaluate(OneImage(), DETECTIONS, "voc07", iou=0.35))
    written = json.loads((tmp_path / "ap.json").read_text())
    assert written["iou"] == 0.35 and written["mean_ap"] == pytest.approx(1.0) and written["metric"] == "voc07"


def test_coco_keeps_its_own_thresholds_and_the_flag_its_range():
    with pytest.raises(ValueError, match="coco averages over .50:.95"):
        evaluate(OneImage(), DETECTIONS, "coco", iou=0.4)
    assert overlap_threshold("0.4") == 0.4
    for text in ("0", "1", "1.5", "nan", "half"):
        with pytest.raises(argparse.ArgumentTypeError, match="an IoU between 0 and 1"):
            overlap_threshold(text)
