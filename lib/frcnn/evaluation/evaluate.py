"""One entry point for evaluation: a dataset split, its detections, and a metric name.

Metrics: voc07 (VOC devkit, 11-point AP), voc (VOC devkit, area under the curve), coco
(pycocotools' COCOeval). The headline `mean_ap` is the mean over classes of AP at IoU 0.5 for the
VOC metrics (another IoU on request: DeepForest, for one, judges tree crowns at 0.4) and COCO's AP
at IoU .50:.95 for coco.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..data.datasets.base import DetectionDataset, ImageRecord
from ..data.datasets.coco import COCO_91_CATEGORIES, COCOFormatDataset
from .coco_eval import evaluate_coco
from .voc_eval import ClassResult, evaluate_voc, mean_ap

METRICS = ("voc07", "voc", "coco")


@dataclass
class Evaluation:
    """Per-class results in label order, the headline figure, and metric-specific extras."""

    metric: str
    class_names: tuple[str, ...]
    classes: list[ClassResult]
    mean_ap: float
    stats: dict[str, float] = field(default_factory=dict)
    summary: str = ""
    iou: float = 0.5  # the VOC metrics' match threshold (coco: .50:.95 whatever this says)


def category_maps(dataset: DetectionDataset) -> tuple[Callable[[int], str | int], Callable[[str | int], int | None]]:
    """(label -> category id in results files, category id -> label or None).

    COCO data uses the file's own category ids; VOC-format data uses class names.
    """
    if isinstance(dataset, COCOFormatDataset):
        ids = dataset.category_ids
        by_id = {cat: i + 1 for i, cat in enumerate(ids)}
        return (lambda label: ids[label - 1]), by_id.get
    names = dataset.classes
    by_name = {n: i for i, n in enumerate(names) if i}
    return (lambda label: names[label]), by_name.get


def labelled_by_category_id(classes: Sequence[str], dataset: DetectionDataset) -> bool:
    """A model whose labels are COCO category ids (torchvision's COCO detectors, 91 classes with
    N/A gaps) evaluated on COCO-format data: its labels are matched to the data's by id."""
    return tuple(classes) == COCO_91_CATEGORIES and isinstance(dataset, COCOFormatDataset)


def relabel_by_category_id(
    detections: Sequence[dict[str, np.ndarray]], dataset: DetectionDataset
) -> list[dict[str, np.ndarray]]:
    """Detections labelled by category id -> labelled as `dataset`'s classes; ids it lacks are dropped."""
    _, label_of = category_maps(dataset)
    out = []
    for det in detections:
        labels = np.array([label_of(int(c)) or 0 for c in det["labels"]], dtype=np.int64)
        keep = labels > 0
        out.append({"boxes": det["boxes"][keep], "scores": det["scores"][keep], "labels": labels[keep]})
    return out


def check_metric(metric: str, iou: float) -> None:
    """Refuse a metric or least IoU evaluate() cannot score (test_net.py asks before detecting)."""
    if metric not in METRICS:
        raise ValueError(f"--metric must be one of {METRICS}; got {metric!r}")
    if not 0.0 < iou < 1.0 or (metric == "coco" and iou != 0.5):
        raise ValueError(f"--iou {iou}: the VOC metrics take an IoU between 0 and 1; coco averages over .50:.95")


def evaluate(
    dataset: DetectionDataset,
    detections: Sequence[dict[str, np.ndarray]],
    metric: str,
    records: Sequence[ImageRecord] | None = None,
    iou: float = 0.5,
) -> Evaluation:
    """Evaluate detections, one dict per record, in the order of `records` (default: all of the
    dataset's; test_net.py passes those that passed the data check). `iou`: the least IoU of a
    true positive, for the VOC metrics."""
    check_metric(metric, iou)
    records = dataset.records if records is None else records
    if len(detections) != len(records):
        raise ValueError(f"{len(detections)} images of detections for the {len(records)} images of {dataset.name}")
    names = dataset.classes[1:]
    if metric == "coco":  # against the records, as the VOC metrics: never the file the check read
        result = evaluate_coco(records, detections, dataset.num_classes)
        return Evaluation(metric, names, result.classes, result.stats["AP"], result.stats, result.summary)
    gt = [(r.boxes, r.labels, r.difficult | (r.crowd if r.crowd.size else False)) for r in records]
    dets = [(d["boxes"], d["scores"], d["labels"]) for d in detections]
    results = evaluate_voc(gt, dets, dataset.num_classes, iou, use_11_point=metric == "voc07")
    return Evaluation(metric, names, results, mean_ap(results), iou=iou)
