"""report.html: what a model gets wrong, in one self-contained page (images embedded, no scripts).

The page holds the per-class AP table (the figures of ap.json), the precision / recall curves,
recall per COCO size class (small < 32^2, medium < 96^2, large, by ground-truth area in the
image's pixels), and two galleries: the images with the most false positives and those with the
most missed objects. Errors are judged as the VOC devkit judges them (IoU >= 0.5 in the inclusive
convention, per class, best score first, one detection per object, difficult objects neither
counted nor missed, nor crowd regions), for the detections scoring at least the threshold that
maximises F1 over all classes together.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..data.datasets.base import ImageRecord
from ..utils.files import atomic_write
from .evaluate import Evaluation
from .voc_eval import iou_one_to_many

# RGB colours of the four kinds of box, and their legend.
COLOURS = {"ground truth": (255, 255, 255), "true positive": (0, 200, 0), "false positive": (230, 0, 0)}
COLOURS["missed"] = (255, 170, 0)
SIZE_CLASSES = (("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, math.inf))


@dataclass
class ImageErrors:
    """One image's detections judged at the report's threshold: index arrays into its detections
    (tp, fp) and its ground truth (missed, found)."""

    tp: np.ndarray
    fp: np.ndarray
    missed: np.ndarray
    found: np.ndarray


def ignored(record: ImageRecord) -> np.ndarray:
    """Objects neither counted nor missed: difficult ones (VOC) and crowd regions (COCO)."""
    crowd = record.crowd if len(record.crowd) == len(record.labels) else np.zeros(len(record.labels), bool)
    return record.difficult.astype(bool) | crowd


def judge(
    records: Sequence[ImageRecord], detections: Sequence[dict[str, np.ndarray]], iou: float = 0.5
) -> tuple[list, np.ndarray]:
    """Every detection judged true (1) or false (0) positive at the least IoU `iou`, or ignored
    (-1, a difficult object), per image; and all detections' (score, judgement) pairs, for
    choosing the threshold."""
    judged, pooled = [], []
    for record, det in zip(records, detections):
        verdict = np.full(len(det["scores"]), -1, np.int8)
        taken = np.zeros(len(record.labels), bool)
        for d in np.argsort(-det["scores"], kind="stable"):
            same = np.flatnonzero(record.labels == det["labels"][d])
            overlaps = iou_one_to_many(det["boxes"][d], record.boxes[same]) if len(same) else np.zeros(0)
            best = int(np.argmax(overlaps)) if len(same) else -1
            if best < 0 or overlaps[best] < iou:
                verdict[d] = 0
            elif not ignored(record)[same[best]]:
                verdict[d] = 0 if taken[same[best]] else 1
                taken[same[best]] = True
        judged.append(verdict)
        pooled += [(s, v) for s, v in zip(det["scores"], verdict) if v >= 0]
    return judged, np.array(pooled, dtype=np.float64).reshape(-1, 2)


def best_f1_threshold(pooled: np.ndarray, num_positives: int) -> tuple[float, float]:
    """(score threshold, F1) where F1 over all classes is highest."""
    if len(pooled) == 0 or num_positives == 0:
        return 1.0, 0.0
    order = np.argsort(-pooled[:, 0], kind="stable")
    tp = np.cumsum(pooled[order, 1])
    precision, recall = tp / np.arange(1, len(order) + 1), tp / num_positives
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1))
    return float(pooled[order[best], 0]), float(f1[best])


def image_errors(record: ImageRecord, det: dict[str, np.ndarray], verdict: np.ndarray, threshold: float) -> ImageErrors:
    """The detections at or above `threshold` as judged (matching runs best score first, so no
    lower-scoring detection changes a higher one's verdict), and the objects they miss."""
    kept = det["scores"] >= threshold
    tp, fp = np.flatnonzero(kept & (verdict == 1)), np.flatnonzero(kept & (verdict == 0))
    found = np.zeros(len(record.labels), bool)
    for d in tp:
        same = np.flatnonzero(record.labels == det["labels"][d])
        found[same[int(np.argmax(iou_one_to_many(det["boxes"][d], record.boxes[same])))]] = True
    missed = np.flatnonzero(~found & ~ignored(record))
    return ImageErrors(tp, fp, missed, np.flatnonzero(found))


def size_recall(records: Sequence[ImageRecord], errors: Sequence[ImageErrors]) -> dict[str, tuple[int, int]]:
    """(found, total) non-difficult objects per COCO size class."""
    counts = {name: [0, 0] for name, _, _ in SIZE_CLASSES}
    for record, err in zip(records, errors):
        wh = record.boxes[:, 2:] - record.boxes[:, :2] + 1
        area = wh[:, 0] * wh[:, 1]
        found = np.zeros(len(area), bool)
        found[err.found] = True
        for name, low, high in SIZE_CLASSES:
            chosen = (area >= low) & (area < high) & ~ignored(record)
            counts[name][0] += int((chosen & found).sum())
            counts[name][1] += int(chosen.sum())
    return {name: (found, total) for name, (found, total) in counts.items()}


def draw(record: ImageRecord, det: dict[str, np.ndarray], err: ImageErrors, classes: Sequence[str]) -> str:
    """The image with its ground truth, true positives, false positives and misses drawn, as a
    base64 JPEG (at most 640 px on its longer side). The image as stored, EXIF orientation
    ignored, as the loader reads it: the boxes are in those pixels."""
    image = cv2.imread(record.path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        image = np.zeros((max(record.height, 1), max(record.width, 1), 3), np.uint8)
    if record.flipped:
        image = image[:, ::-1].copy()
    scale = min(1.0, 640 / max(image.shape[:2]))
    image = cv2.resize(image, None, fx=scale, fy=scale) if scale < 1 else image
    layers = [
        ("ground truth", record.boxes, record.labels, 3),
        ("true positive", det["boxes"][err.tp], det["labels"][err.tp], 2),
        ("false positive", det["boxes"][err.fp], det["labels"][err.fp], 2),
        ("missed", record.boxes[err.missed], record.labels[err.missed], 2),
    ]
    for kind, boxes, labels, width in layers:
        bgr = COLOURS[kind][::-1]
        for box, label in zip(boxes, labels):
            x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
            cv2.rectangle(image, (x1, y1), (x2, y2), bgr, width)
            if kind in ("false positive", "missed"):
                cv2.putText(
                    image, classes[int(label)], (x1 + 2, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, bgr, 1
                )
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return base64.b64encode(data.tobytes()).decode("ascii") if ok else ""


CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
.gallery{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.legend{display:inline-block;background:#333;color:#eee;padding:6px 12px 6px 0;border-radius:4px}
figure{margin:0;background:#333;padding:6px;border-radius:4px}figcaption{color:#eee;font-size:13px;padding-top:4px}
.key{display:inline-block;width:14px;height:14px;border:3px solid;margin:0 4px 0 14px;vertical-align:middle}
img{max-width:100%}"""


def _table(evaluation: Evaluation) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class='ap'>{'' if math.isnan(r.ap) else f'{r.ap:.4f}'}</td>"
        f"<td>{r.num_positives}</td><td>{r.num_detections}</td></tr>"
        for name, r in zip(evaluation.class_names, evaluation.classes)
    )
    mean = "" if math.isnan(evaluation.mean_ap) else f"{evaluation.mean_ap:.4f}"
    head = "<tr><th>class</th><th>AP</th><th>objects</th><th>detections</th></tr>"
    return f"<table id='ap'>{head}{rows}<tr><th>mean</th><th class='ap'>{mean}</th><th></th><th></th></tr></table>"


def _gallery(title: str, items: list[tuple[str, str]]) -> str:
    figures = "".join(
        f"<figure><img src='data:image/jpeg;base64,{data}' alt='{html.escape(caption)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, data in items
    )
    return f"<h2>{html.escape(title)}</h2><div class='gallery'>{figures or '<p>none</p>'}</div>"


def _size_table(recall: dict[str, tuple[int, int]]) -> str:
    rows = "".join(
        f"<tr><td>{name}</td><td>{found}</td><td>{total}</td><td>{found / total:.3f}</td></tr>"
        if total
        else f"<tr><td>{name}</td><td>0</td><td>0</td><td></td></tr>"
        for name, (found, total) in recall.items()
    )
    return f"<table id='sizes'><tr><th>size</th><th>found</th><th>objects</th><th>recall</th></tr>{rows}</table>"


def write_html_report(
    path: Path,
    evaluation: Evaluation,
    records: Sequence[ImageRecord],
    detections: Sequence[dict[str, np.ndarray]],
    classes: Sequence[str],
    pr_curves: Path | None = None,
    gallery_size: int = 8,
) -> dict:
    """Write report.html; returns its threshold, F1 and recall per size class."""
    judged, pooled = judge(records, detections, evaluation.iou)
    positives = sum(int((~ignored(r)).sum()) for r in records)
    threshold, f1 = best_f1_threshold(pooled, positives)
    errors = [image_errors(r, d, v, threshold) for r, d, v in zip(records, detections, judged)]
    recall = size_recall(records, errors)

    def worst(count) -> list[tuple[str, str]]:
        ranked = sorted((i for i in range(len(records)) if count(errors[i])), key=lambda i: -count(errors[i]))
        return [
            (
                f"{Path(records[i].path).name}: {len(errors[i].fp)} false positives, {len(errors[i].missed)} missed",
                draw(records[i], detections[i], errors[i], classes),
            )
            for i in ranked[:gallery_size]
        ]

    legend = "".join(f"<span class='key' style='border-color:rgb{c}'></span>{k}" for k, c in COLOURS.items())
    curves = ""
    if pr_curves is not None and pr_curves.is_file():
        data = base64.b64encode(pr_curves.read_bytes()).decode("ascii")
        curves = f"<h2>Precision / recall</h2><img src='data:image/png;base64,{data}' alt='precision recall curves'>"
    body = (
        f"<h1>Evaluation report</h1><p>metric <b>{evaluation.metric}</b>, {len(records)} images, "
        f"{positives} objects. Errors below are judged at IoU {evaluation.iou:g} (VOC devkit rules) for "
        f"detections scoring at least <b id='threshold'>{threshold:.3f}</b>, the threshold of the best F1 "
        f"({f1:.3f}).</p>"
        f"<h2>Average precision per class</h2>{_table(evaluation)}{curves}"
        f"<h2>Recall per object size (COCO's size classes)</h2>{_size_table(recall)}<p class='legend'>{legend}</p>"
        + _gallery("Most false positives", worst(lambda e: len(e.fp)))
        + _gallery("Most missed objects", worst(lambda e: len(e.missed)))
    )
    head = f"<meta charset='utf-8'><title>Evaluation report</title><style>{CSS}</style>"
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>")
    return {"threshold": threshold, "f1": f1, "size_recall": recall}
