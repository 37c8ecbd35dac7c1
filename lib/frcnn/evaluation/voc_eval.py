"""PASCAL VOC detection metric, following the VOC devkit (VOCevaldet.m).

Per class: detections of all images sorted by decreasing score; each is a true positive if its best
IoU (inclusive pixel convention, +1 in widths) with a ground-truth object of its class in its image
is >= 0.5 and that object is not yet taken, a false positive otherwise (so duplicate detections of
one object are false positives). A detection whose best match is a difficult object counts as
neither. Recall is over non-difficult objects. AP is the 11-point interpolated average (VOC 2007)
or the area under the monotone precision/recall curve (VOC 2010 and later).
A class with no non-difficult ground truth has no defined AP (NaN) and is left out of the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_11_point: bool) -> float:
    """AP from a precision/recall curve (points in order of decreasing score)."""
    if use_11_point:
        ap = 0.0
        for t in np.linspace(0.0, 1.0, 11):
            above = precision[recall >= t]
            ap += (above.max() if above.size else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, non-increasing
    changes = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


@dataclass
class ClassResult:
    """AP of one class, its precision/recall curve, and its counts. With the VOC metric also the
    curve's scores (decreasing) and each detection's verdict there (1 true, 0 false positive, -1
    matched to a difficult object: neither), from which thresholds are chosen (thresholds.py)."""

    ap: float
    precision: np.ndarray
    recall: np.ndarray
    num_positives: int
    num_detections: int
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    verdicts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix1 = np.maximum(boxes[:, 0], box[0])
    iy1 = np.maximum(boxes[:, 1], box[1])
    ix2 = np.minimum(boxes[:, 2], box[2])
    iy2 = np.minimum(boxes[:, 3], box[3])
    inter = np.maximum(ix2 - ix1 + 1.0, 0.0) * np.maximum(iy2 - iy1 + 1.0, 0.0)
    union = (
        (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
        + (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)
        - inter
    )
    return inter / union


def evaluate_class(
    gt_boxes: Sequence[np.ndarray],
    gt_difficult: Sequence[np.ndarray],
    det_images: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    iou_threshold: float = 0.5,
    use_11_point: bool = False,
) -> ClassResult:
    """VOC AP of one class.

    gt_boxes[i], gt_difficult[i]: the class's objects in image i, (G_i, 4) and (G_i,).
    det_images, det_boxes, det_scores: the class's detections, (D,), (D, 4), (D,).
    """
    num_positives = int(sum((~d.astype(bool)).sum() for d in gt_difficult))
    order = np.argsort(-det_scores, kind="stable")
    taken = [np.zeros(len(b), dtype=bool) for b in gt_boxes]
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for rank, d in enumerate(order):
        image = int(det_images[d])
        boxes = gt_boxes[image]
        if len(boxes) == 0:
            fp[rank] = 1
            continue
        overlaps = iou_one_to_many(det_boxes[d], boxes)
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou_threshold:
            if gt_difficult[image][best]:
                continue  # neither true nor false positive
            if not taken[image][best]:
                tp[rank] = 1
                taken[image][best] = True
            else:
                fp[rank] = 1  # a duplicate
        else:
            fp[rank] = 1
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(fp)
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    scores, verdicts = np.asarray(det_scores, np.float64)[order], (tp - (1 - tp - fp)).astype(np.int64)
    if num_positives == 0:
        return ClassResult(float("nan"), precision, np.zeros_like(tp_cum), 0, len(order), scores, verdicts)
    recall = tp_cum / num_positives
    ap = voc_ap(recall, precision, use_11_point)
    return ClassResult(ap, precision, recall, num_positives, len(order), scores, verdicts)


def evaluate_voc(
    gt: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    num_classes: int,
    iou_threshold: float = 0.5,
    use_11_point: bool = False,
) -> list[ClassResult]:
    """Per-class results for classes 1..K-1.

    gt[i] = (boxes (G, 4), labels (G,), difficult (G,)) of image i;
    detections[i] = (boxes (D, 4), scores (D,), labels (D,)) of image i, same image order.
    """
    if len(gt) != len(detections):
        raise ValueError(f"{len(detections)} images of detections for {len(gt)} images of ground truth")
    results = []
    for cls in range(1, num_classes):
        gt_boxes = [b[labels == cls] for b, labels, _ in gt]
        gt_difficult = [d[labels == cls].astype(bool) for _, labels, d in gt]
        masks = [labels == cls for _, _, labels in detections]
        det_images = np.concatenate([np.full(int(m.sum()), i) for i, m in enumerate(masks)]) if masks else np.zeros(0)
        det_boxes = (
            np.concatenate([b[m] for (b, _, _), m in zip(detections, masks)]).reshape(-1, 4)
            if masks
            else np.zeros((0, 4))
        )
        det_scores = np.concatenate([s[m] for (_, s, _), m in zip(detections, masks)]) if masks else np.zeros(0)
        results.append(
            evaluate_class(gt_boxes, gt_difficult, det_images, det_boxes, det_scores, iou_threshold, use_11_point)
        )
    return results


def mean_ap(results: Sequence[ClassResult]) -> float:
    """Mean AP over classes with ground truth."""
    aps = [r.ap for r in results if not np.isnan(r.ap)]
    return float(np.mean(aps)) if aps else float("nan")
