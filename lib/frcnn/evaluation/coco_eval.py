"""COCO metrics through pycocotools' COCOeval, for COCO data and for VOC-format data alike.

For VOC-format data the ground truth is converted in memory: boxes to [x, y, w, h] with
w = x2 - x1 + 1 (BoxMode.XYWH), and difficult objects become crowd regions, which COCOeval ignores
the way the VOC metric ignores difficult objects. Per-class AP is COCOeval's precision averaged over
IoU .50:.95, all recall thresholds, all areas, 100 detections per image, for that class.
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
    """A pycocotools COCO index of the records' objects (image ids are record positions)."""
    images, annotations = [], []
    for i, r in enumerate(records):
        images.append({"id": i, "width": r.width, "height": r.height})
        crowd = r.crowd if r.crowd.size else np.zeros(len(r.labels), bool)
        xywh = BoxMode.convert(r.boxes, BoxMode.XYXY, BoxMode.XYWH)
        for box, label, difficult, is_crowd in zip(xywh, r.labels, r.difficult, crowd):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": int(label),
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "iscrowd": int(bool(difficult) or bool(is_crowd)),
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


def detections_to_results(
    detections: Sequence[dict[str, np.ndarray]], image_ids: Sequence, category_ids: Sequence[int]
) -> list[dict]:
    """Per-image detections -> COCO results entries (category_ids[label - 1] per label)."""
    results = []
    for image_id, det in zip(image_ids, detections):
        xywh = BoxMode.convert(det["boxes"].reshape(-1, 4), BoxMode.XYXY, BoxMode.XYWH)
        for box, score, label in zip(xywh, det["scores"], det["labels"]):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(category_ids[int(label) - 1]),
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )
    return results


def evaluate_coco(
    records: Sequence[ImageRecord],
    detections: Sequence[dict[str, np.ndarray]],
    num_classes: int,
    coco_gt=None,
    category_ids: Sequence[int] | None = None,
) -> CocoResult:
    """COCOeval on the detections (one dict per record, in record order).

    coco_gt / category_ids: the dataset's own COCO index and the category id of each label, for
    COCO data; None converts the records (VOC-format data; labels are the category ids).
    """
    if coco_gt is None:
        coco_gt = ground_truth_from_records(records, num_classes)
        image_ids, category_ids = list(range(len(records))), list(range(1, num_classes))
    else:
        image_ids = [r.id for r in records]
        if category_ids is None:
            raise ValueError("category_ids are needed with a dataset's own COCO index")
    results = detections_to_results(detections, image_ids, category_ids)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        coco_dt = coco_gt.loadRes(results) if results else _empty_results(coco_gt)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.imgIds = image_ids
        evaluator.params.catIds = list(category_ids)
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    stats = dict(zip(STAT_NAMES, (float(v) for v in evaluator.stats[:6])))
    precision = evaluator.eval["precision"]  # (IoU T, recall R, class K, area A, max dets M)
    recall_points = evaluator.params.recThrs
    classes = []
    for k, cat in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        ap = float(valid.mean()) if valid.size else float("nan")
        curve = precision[0, :, k, 0, -1]  # at IoU 0.5, for the plot
        keep = curve > -1
        num_gt = len(coco_gt.getAnnIds(imgIds=image_ids, catIds=[cat], iscrowd=False))
        num_det = sum(1 for r in results if r["category_id"] == cat)
        classes.append(ClassResult(ap if num_gt else float("nan"), curve[keep], recall_points[keep], num_gt, num_det))
    return CocoResult(stats, classes, summary.getvalue())


def _empty_results(coco_gt):
    empty = COCO()
    empty.dataset = {
        "images": coco_gt.dataset["images"],
        "categories": coco_gt.dataset.get("categories", []),
        "annotations": [],
    }
    empty.createIndex()
    return empty
