"""What a dataset gives the rest of the pipeline: class names and one ImageRecord per image.

Boxes are float32 (G, 4) in the inclusive 0-based pixel convention (modeling/box_ops); each
format's reader converts to it (VOC XML is 1-based, COCO is [x, y, w, h]).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

BACKGROUND = "__background__"


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


def _empty(dtype: type) -> np.ndarray:
    return np.zeros((0,), dtype=dtype)


@dataclass(frozen=True)
class DataIssue:
    """A problem found in the data and what was done about it.

    where: the file concerned. problem: what is wrong, for a person. action: "fixed" (the data
    was corrected), "dropped" (an object was left out) or "skipped" (the image was left out).
    kind: a short label for counting issues alike.
    """

    where: str
    problem: str
    action: str
    kind: str


@dataclass
class ImageRecord:
    """One image and its objects.

    id: the image's identifier in its dataset (file stem for VOC-format data, integer id for COCO).
    path: the image file.
    width, height: pixel size of the image file.
    boxes: (G, 4) float32, inclusive 0-based pixels.
    labels: (G,) int64 class indices, 1..K-1 (0 is background).
    difficult: (G,) bool, objects the VOC metric ignores.
    crowd: (G,) bool, COCO crowd regions (never trained on).
    flipped: the roidb's horizontally flipped copy of the image.
    window: for a tile of a large image (data/tiling.py), the part of the file it is, (x0, y0, x1,
        y1) with exclusive ends; width, height and boxes are then the tile's.
    area: (G,) float32, each object's area as its annotation gives it (COCO's `area`, the
        segment's pixels, which the COCO metric's size ranges use), NaN where it gives none; or
        empty: every area is the box's w * h.
    """

    id: str | int
    path: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=_empty_boxes)
    labels: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    difficult: np.ndarray = field(default_factory=lambda: _empty(bool))
    crowd: np.ndarray = field(default_factory=lambda: _empty(bool))
    flipped: bool = False
    window: tuple[int, int, int, int] | None = None
    area: np.ndarray = field(default_factory=lambda: _empty(np.float32))

    @property
    def aspect_ratio(self) -> float:
        return self.width / self.height

    def objects(self, keep: np.ndarray, **replaced: object) -> ImageRecord:
        """The record with only the objects `keep` (G,) selects, in every per-object field; the
        optional flags and areas (empty when a reader gives none) stay empty or are selected
        alike. `replaced` sets other fields at the same time (boxes=, window=, ...)."""

        def pick(values: np.ndarray, empty_as: np.ndarray) -> np.ndarray:
            return values[keep] if values.size == len(keep) else empty_as

        count = int(np.count_nonzero(keep))
        fields = {
            "boxes": self.boxes[keep],
            "labels": self.labels[keep],
            "difficult": pick(self.difficult, np.zeros(count, bool)),
            "crowd": pick(self.crowd, np.zeros(count, bool)),
            "area": pick(self.area, self.area[:0]),
        }
        return dataclasses.replace(self, **{**fields, **replaced})


class DetectionDataset:
    """A named split of a dataset: its classes and records.

    Subclasses implement `_load_records`; records are loaded once, on first use, and what the
    reader found wrong while parsing (unreadable annotation files, unknown classes, ...) is in
    `issues` (see data/validate.py for the checks of images and boxes that follow).

    Args:
        name: e.g. voc_2007_trainval, shapes_test.
        classes: class names without the background; label i + 1 is classes[i].
        metric: the default evaluation metric: voc07, voc or coco.
    """

    def __init__(self, name: str, classes: Sequence[str], metric: str = "voc") -> None:
        self.name = name
        self._foreground = tuple(classes)
        self.metric = metric
        self._records: list[ImageRecord] | None = None
        self.issues: list[DataIssue] = []

    @property
    def foreground_classes(self) -> tuple[str, ...]:
        """Class names without the background; label i + 1 is foreground_classes[i]."""
        return self._foreground

    @property
    def classes(self) -> tuple[str, ...]:
        """All class names, background first: index = label."""
        return (BACKGROUND, *self.foreground_classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def records(self) -> list[ImageRecord]:
        if self._records is None:
            self.issues = []
            self._records = self._load_records()
        return self._records

    def _load_records(self) -> list[ImageRecord]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self.foreground_classes)} classes)"
