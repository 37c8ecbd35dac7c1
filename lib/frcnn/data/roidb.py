"""The roidb: the list of ImageRecords one training run iterates over.

Built from the checked records of one or more datasets (pascal_voc_0712 joins two; see
data/validate.py for the checks), with crowd objects left out of training, difficult ones left
out or kept (still flagged: trained on, or ignore regions), and with a horizontally flipped
copy of every image when TRAIN.USE_FLIPPED. Images without objects stay: they train the detector
on background.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .datasets.base import DetectionDataset, ImageRecord


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror (G, 4) inclusive boxes in an image `width` pixels wide: x -> width - 1 - x."""
    flipped = boxes.copy()
    flipped[:, 0] = width - 1 - boxes[:, 2]
    flipped[:, 2] = width - 1 - boxes[:, 0]
    return flipped


DIFFICULT_ROLES = ("drop", "ignore", "train")


def difficult_role(use_difficult: bool, ignore_difficult: bool) -> str:
    """What training does with difficult objects (TRAIN.USE_DIFFICULT, TRAIN.IGNORE_DIFFICULT)."""
    return "train" if use_difficult else "ignore" if ignore_difficult else "drop"


def training_record(record: ImageRecord, difficult: str = "drop") -> ImageRecord:
    """The record with only the objects training uses: no crowd, and difficult objects dropped
    ("drop") or kept, still flagged, as `difficult` says (DIFFICULT_ROLES): the loader trains them
    as objects ("train") or hands them over as ignore regions ("ignore", RoidbDataset)."""
    if difficult not in DIFFICULT_ROLES:
        raise ValueError(f"difficult objects are one of {DIFFICULT_ROLES}; got {difficult!r}")
    keep = ~record.crowd if record.crowd.size else np.ones(len(record.labels), dtype=bool)
    if difficult == "drop" and record.difficult.size:
        keep &= ~record.difficult
    return record.objects(keep)


def joined_records(datasets: Sequence[DetectionDataset]) -> list[ImageRecord]:
    """The records of datasets joined for training, which must share one class list."""
    if len({d.classes for d in datasets}) > 1:
        raise ValueError(f"datasets joined for training must share their classes: {[d.name for d in datasets]}")
    return [r for d in datasets for r in d.records]


def build_roidb(records: Sequence[ImageRecord], use_flipped: bool = True, difficult: str = "drop") -> list[ImageRecord]:
    """Training versions of `records` (training_record), plus their flipped copies."""
    roidb = [training_record(r, difficult) for r in records]
    if use_flipped:
        roidb += [dataclasses.replace(r, boxes=flip_boxes(r.boxes, r.width), flipped=True) for r in roidb]
    return roidb
