"""Detections on disk: COCO results JSON, whatever the dataset's format.

A list of {"image_id", "category_id", "bbox": [x, y, w, h], "score"}. For VOC-format data image_id
is the image's file stem and category_id the class name; for COCO data both are the dataset's own
ids. Boxes convert from the inclusive convention as x = x1, w = x2 - x1 + 1 (and back), that is
BoxMode.XYXY <-> BoxMode.XYWH, in float64 so that a file written and read back gives the same boxes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.datasets.base import ImageRecord
from ..structures import BoxMode


def to_results(
    records: Sequence[ImageRecord], detections: Sequence[dict[str, np.ndarray]], category_of: Callable[[int], str | int]
) -> list[dict]:
    """Detections per record -> a COCO results list; category_of maps a label to its category id."""
    results = []
    for record, det in zip(records, detections):
        xywh = BoxMode.convert(np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4), BoxMode.XYXY, BoxMode.XYWH)
        for box, score, label in zip(xywh, det["scores"], det["labels"]):
            results.append(
                {
                    "image_id": record.id,
                    "category_id": category_of(int(label)),
                    "bbox": [float(v) for v in box],  # unrounded: evaluating the file gives the same APs
                    "score": float(score),
                }
            )
    return results


def from_results(
    results: Sequence[dict],
    records: Sequence[ImageRecord],
    label_of: Callable[[str | int], int | None],
    ignored_ids: Sequence = (),
) -> list[dict[str, np.ndarray]]:
    """A COCO results list -> detections per record. Entries of unknown images or classes raise,
    except those of `ignored_ids` (images the data check skipped), which are left out."""
    index = {r.id: i for i, r in enumerate(records)}
    ignored = set(ignored_ids)
    per_image: list[list[tuple]] = [[] for _ in records]
    for n, entry in enumerate(results):
        try:
            image, category, box, score = (
                entry["image_id"],
                entry["category_id"],
                BoxMode.convert(entry["bbox"], BoxMode.XYWH, BoxMode.XYXY),
                float(entry["score"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"detection {n} is not of the form {{image_id, category_id, bbox [x, y, w, h], score}}: {entry!r}"
            ) from None
        if image in ignored:
            continue
        if image not in index:
            raise ValueError(f"detection {n}: image_id {image!r} is not in the dataset")
        label = label_of(category)
        if label is None:
            raise ValueError(f"detection {n}: category_id {category!r} is not a class of the dataset")
        per_image[index[image]].append((*box, score, label))
    out = []
    for dets in per_image:
        arr = np.asarray(dets, dtype=np.float64).reshape(-1, 6)
        out.append(
            {
                "boxes": arr[:, :4].astype(np.float32),
                "scores": arr[:, 4].astype(np.float32),
                "labels": arr[:, 5].astype(np.int64),
            }
        )
    return out


def save_results(path: Path, results: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))


def load_results(path: Path) -> list[dict]:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of detections")
    return data
