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
from ..utils.errors import InputError, one_line, reading
from ..utils.files import is_dir, is_file


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


class DetectionsFileError(InputError):
    """A detections file (test_net.py --detections) that cannot be evaluated."""


def from_results(
    results: Sequence[dict],
    records: Sequence[ImageRecord],
    label_of: Callable[[str | int], int | None],
    ignored_ids: Sequence = (),
    source: str | Path = "detections",
) -> list[dict[str, np.ndarray]]:
    """A COCO results list -> detections per record. Entries of unknown images or classes, and
    entries that are not {image_id, category_id, bbox [x, y, w, h] of finite numbers, w and h
    >= 0, finite score}, raise DetectionsFileError naming `source`, except those of `ignored_ids`
    (images the data check skipped), which are left out."""
    index = {r.id: i for i, r in enumerate(records)}
    ignored = set(ignored_ids)
    per_image: list[list[tuple]] = [[] for _ in records]
    for n, entry in enumerate(results):
        image, category, box, score = _entry(entry, n, source)
        if image in ignored:
            continue
        if image not in index:
            raise DetectionsFileError(f"{source}: detection {n}: image_id {image!r} is not in the dataset")
        label = label_of(category)
        if label is None:
            raise DetectionsFileError(
                f"{source}: detection {n}: category_id {category!r} is not a class of the dataset"
            )
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


def _entry(entry: object, n: int, source: str | Path) -> tuple:
    """(image id, category id, XYXY box, score) of one results entry, or DetectionsFileError."""
    wanted = "{image_id, category_id, bbox [x, y, w, h], score}"
    if not isinstance(entry, dict) or not all(k in entry for k in ("image_id", "category_id", "bbox", "score")):
        raise DetectionsFileError(f"{source}: detection {n} is not of the form {wanted}: {one_line(repr(entry), 80)}")
    image, category, bbox, score = (entry[k] for k in ("image_id", "category_id", "bbox", "score"))
    for key, value in (("image_id", image), ("category_id", category)):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            shown = one_line(repr(value), 60)
            raise DetectionsFileError(f"{source}: detection {n}: {key} should be a number or a name; got {shown}")
    numbers = [*bbox, score] if isinstance(bbox, list) and len(bbox) == 4 else None
    if numbers is None or not all(_finite(v) for v in numbers) or bbox[2] < 0 or bbox[3] < 0:
        shown = one_line(f"bbox {bbox!r}, score {score!r}", 100)
        raise DetectionsFileError(
            f"{source}: detection {n}: bbox should be 4 finite numbers with w, h >= 0 and score a finite number; "
            f"got {shown}"
        )
    return image, category, BoxMode.convert([float(v) for v in bbox], BoxMode.XYWH, BoxMode.XYXY), float(score)


def _finite(value: object) -> bool:
    """A number that stays finite as float32 (the detections' type)."""
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= FLOAT32_LIMIT
    except OverflowError:  # an integer too large for a float
        return False


FLOAT32_LIMIT = 1e30  # well inside float32's 3.4e38, so x + w stays finite too; NaN compares False


def save_results(path: Path, results: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))


def load_results(path: Path) -> list[dict]:
    """A results file's list; DetectionsFileError naming it when it is no JSON list."""
    path = Path(path)
    if not is_file(path):
        raise (DetectionsFileError if is_dir(path) else FileNotFoundError)(f"detections file {path} is not a file")
    try:
        with reading(path):
            data = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DetectionsFileError(f"{path}: not JSON ({one_line(e, 160)})") from None
    except OSError as e:
        raise DetectionsFileError(f"{path}: not readable ({one_line(e, 160)})") from None
    if not isinstance(data, list):
        raise DetectionsFileError(f"{path}: expected a JSON list of detections")
    return data
