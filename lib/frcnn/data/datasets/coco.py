"""COCO-format data: one instances JSON per split and a folder of images.

Boxes [x, y, w, h] become inclusive (x, y, x + w - 1, y + h - 1), clipped to the image, as
py-faster-rcnn read them; `iscrowd` regions are kept as crowd (never trained on, ignored by the
metric). Category ids are sparse (1..90 for COCO's 80 classes): label i + 1 is the i-th category
in id order, and `category_ids` maps labels back for results files.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import DetectionDataset, ImageRecord


class COCOFormatDataset(DetectionDataset):
    """A split in COCO format.

    Args:
        name: the split's name (coco_2014_minival, ...).
        annotation_file: the instances JSON.
        image_dir: the folder that `file_name` entries are relative to.
        classes: class names in label order; None takes every category of the file, in id order.
            With explicit classes, categories named otherwise are left out.
    """

    def __init__(self, name: str, annotation_file: str | Path, image_dir: str | Path, classes: Sequence[str] | None = None) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        self._coco = None
        super().__init__(name, classes or (), metric="coco")
        self._from_file = classes is None

    @property
    def coco(self):
        """The pycocotools COCO index of the annotation file (loaded once)."""
        if self._coco is None:
            from pycocotools.coco import COCO

            if not self.annotation_file.is_file():
                raise FileNotFoundError(f"{self.name}: annotation file not found: {self.annotation_file}")
            with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints timing lines
                self._coco = COCO(str(self.annotation_file))
        return self._coco

    @property
    def foreground_classes(self) -> tuple[str, ...]:
        if self._from_file:
            self._foreground = tuple(c["name"] for c in self.coco.loadCats(sorted(self.coco.getCatIds())))
            self._from_file = False
        return self._foreground

    @property
    def category_ids(self) -> list[int]:
        """category_ids[label - 1] is the dataset's category id of that label."""
        by_name = {c["name"]: c["id"] for c in self.coco.loadCats(self.coco.getCatIds())}
        missing = [n for n in self.foreground_classes if n not in by_name]
        if missing:
            raise ValueError(f"{self.name}: classes {missing} are not categories of {self.annotation_file}")
        return [by_name[n] for n in self.foreground_classes]

    def _load_records(self) -> list[ImageRecord]:
        coco = self.coco
        label_of = {cat: i + 1 for i, cat in enumerate(self.category_ids)}
        records = []
        for image_id in sorted(coco.getImgIds()):
            info = coco.imgs[image_id]
            width, height = int(info["width"]), int(info["height"])
            boxes, labels, crowd = [], [], []
            for ann in coco.imgToAnns.get(image_id, []):
                label = label_of.get(ann["category_id"])
                if label is None:
                    continue
                x, y, w, h = (float(v) for v in ann["bbox"])
                x1, y1 = max(0.0, x), max(0.0, y)
                x2, y2 = min(width - 1.0, x1 + max(0.0, w - 1.0)), min(height - 1.0, y1 + max(0.0, h - 1.0))
                if ann.get("area", 1) <= 0 or x2 < x1 or y2 < y1:
                    continue
                boxes.append([x1, y1, x2, y2])
                labels.append(label)
                crowd.append(bool(ann.get("iscrowd", 0)))
            records.append(
                ImageRecord(
                    id=image_id,
                    path=str(self.image_dir / info["file_name"]),
                    width=width,
                    height=height,
                    boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                    labels=np.asarray(labels, dtype=np.int64),
                    difficult=np.zeros(len(labels), dtype=bool),
                    crowd=np.asarray(crowd, dtype=bool),
                )
            )
        return records
