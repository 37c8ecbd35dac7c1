"""COCO metrics through pycocotools' COCOeval, for COCO data and for VOC-format data alike.

The ground truth is always the records that passed the data check (data/validate.py), never the
annotation file itself: what the check dropped (non-finite, degenerate or outside boxes, objects of
unknown classes, skipped images) is gone from the metric, what it clipped is clipped, and fields
annotation tools leave out cannot break it. Boxes go to [x, y, w, h] with w = x2 - x1 + 1
(BoxMode.XYWH); an object's area is the annotation's own (COCO's segment area, for the size
ranges) or else the box's w * h, as pycocotools' loadRes takes it for results; crowd regions, and
difficult objects of VOC-format data, are crowd regions, which COCOeval ignores the way the VOC
metric ignores difficult objects. Images are numbered by position and classes by label inside the
index, so ids the data gives (strings, duplicates) do not matter. Per-class AP is COCOeval's
precision averaged over IoU .50:.95, all recall thresholds, all areas, 100 detections per image,
for that class.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.datasets.base import ImageRecord
from ..structures import BoxMode
from .voc_eval import ClassResult

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class CocoResult:
    """Headline figures (STAT_NAMES, -1 where undefined), per-class results, COCOeval's summary."""

    stats: dict[str, float]
    classes: list[ClassResult]
    summary: str


def ground_truth_from_records(records: Sequence[ImageRecord], num_classes: int):
    """A pycocotools COCO index of the records' objects (image ids are record positions, category
    ids labels)."""
    images, annotations = [], []
    for i, r in enumerate(records):
        images.append({"id": i, "width": r.width, "height": r.height})
        crowd = r.crowd if r.crowd.size == len(r.labels) else np.zeros(len(r.labels), bool)
        difficult = r.difficult if r.difficult.size == len(r.labels) else np.zeros(len(r.labels), bool)
        xywh = BoxMode.convert(r.boxes.reshape(-1, 4), BoxMode.XYXY, BoxMode.XYWH)
        areas = xywh[:, 2] * xywh[:, 3]  # of the checked (clipped) box, where the annotation gives none
        if r.area.size == len(r.labels):
            areas = np.where(np.isnan(r.area), areas, r.area)
        for box, label, ignored, area in zip(xywh, r.labels, difficult | crowd, areas):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": int(label),
                    "bbox": [float(v) for v in box],
                    "area": float(area),
                    "iscrowd": int(ignored),
                }
            )
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k} for k in range(1, num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def detections_to_results(detections: Sequence[dict[str, np.ndarray]], image_ids: Sequence) -> list[dict]:
    """Per-image detections -> COCO results entries (category id = label)."""
    results = []
    for image_id, det in zip(image_ids, detections):
        xywh = BoxMode.convert(det["boxes"].reshape(-1, 4), BoxMode.XYXY, BoxMode.XYWH)
        for box, score, label in zip(xywh, det["scores"], det["labels"]):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )
    return results


def evaluate_coco(
    records: Sequence[ImageRecord], detections: Sequence[dict[str, np.ndarray]], num_classes: int
) -> CocoResult:
    """COCOeval on the detections (one dict per record, in record order, labels 1..num_classes-1)
    against the records' objects (those that passed the data check)."""
    coco_gt = ground_truth_from_records(records, num_classes)
    image_ids, category_ids = list(range(len(records))), list(range(1, num_classes))
    results = detections_to_results(detections, image_ids)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        coco_dt = coco_gt.loadRes(results) if results else _empty_results(coco_gt)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.imgIds = image_ids
        evaluator.params.catIds = category_ids
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    stats = dict(zip(STAT_NAMES, (float(v) for v in evaluator.stats[:6])))
    classes = [_class_result(evaluator, coco_gt, k, cat, image_ids, results) for k, cat in enumerate(category_ids)]
    return CocoResult(stats, classes, summary.getvalue())


def _class_result(evaluator: COCOeval, coco_gt, k: int, cat: int, image_ids: list, results: list) -> ClassResult:
    precision = evaluator.eval["precision"]  # (IoU T, recall R, class K, area A, max dets M)
    p = precision[:, :, k, 0, -1]
    valid = p[p > -1]
    ap = float(valid.mean()) if valid.size else float("nan")
    curve = precision[0, :, k, 0, -1]  # at IoU 0.5, for the plot
    keep = curve > -1
    num_gt = len(coco_gt.getAnnIds(imgIds=image_ids, catIds=[cat], iscrowd=False))
    num_det = sum(1 for r in results if r["category_id"] == cat)
    recall_points = evaluator.params.recThrs
    return ClassResult(ap if num_gt else float("nan"), curve[keep], recall_points[keep], num_gt, num_det)


def _empty_results(coco_gt):
    empty = COCO()
    empty.dataset = {
        "images": coco_gt.dataset["images"],
        "categories": coco_gt.dataset.get("categories", []),
        "annotations": [],
    }
    empty.createIndex()
    return empty
