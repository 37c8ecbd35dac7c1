"""Your own data without code: `--dataset path/to/data.yaml`.

    format: coco            # or voc
    root: /path/to/data     # optional; relative paths are relative to this file's folder
    train: {images: images/train, annotations: annotations/train.json}   # coco
    test:  {images: images/test,  annotations: annotations/test.json}
    val:   {images: images/val,   annotations: annotations/val.json}   # optional: chooses the best
                            # checkpoint during training (--eval_interval); else test is used
    # voc:  train: trainval   (or a list of split names)   test: test   val: val (optional)
    classes: [cat, dog]     # optional; default: read from the data (COCO: by category id,
                            # VOC: every object name in the training split, sorted)
    metric: voc             # optional; default coco for COCO data, voc (area AP) for VOC data
    config:                 # optional config overrides for this data, e.g. fixed anchor scales
      ANCHOR_SCALES: [4, 8, 16, 32]   # default: auto, chosen from the training boxes (factory.py)

The file is read with yaml.safe_load. Paths inside it may not leave `root`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ...utils.files import is_inside
from .base import DetectionDataset
from .coco import COCOFormatDataset
from .pascal_voc import VOCFormatDataset, voc_class_names


class DatasetFileError(ValueError):
    """A dataset YAML file that does not describe a dataset."""


def is_dataset_file(name: str) -> bool:
    return name.endswith((".yml", ".yaml"))


def _inside(root: Path, relative: str, what: str, source: Path) -> Path:
    path = (root / relative).resolve()
    if not is_inside(root, path):
        raise DatasetFileError(f"{source}: {what} {relative!r} leaves the dataset root {root}")
    return path


class DatasetFile:
    """A parsed dataset YAML: builds its train and test datasets and carries its config profile."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"dataset file not found: {self.path}")
        try:
            spec: Any = yaml.safe_load(self.path.read_text())
        except yaml.YAMLError as e:
            raise DatasetFileError(f"{self.path}: not valid YAML ({e})") from None
        if not isinstance(spec, dict):
            raise DatasetFileError(f"{self.path}: expected a mapping with format, train and test")
        self.format = spec.get("format")
        if self.format not in ("coco", "voc"):
            raise DatasetFileError(f"{self.path}: format must be coco or voc; got {self.format!r}")
        for key in ("train", "test"):
            if key not in spec:
                raise DatasetFileError(f"{self.path}: missing '{key}'")
        self.root = (self.path.parent / str(spec.get("root", "."))).resolve()
        self.name = self.path.stem
        self.spec = spec
        classes = spec.get("classes")
        if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
            raise DatasetFileError(f"{self.path}: classes must be a list of names")
        self.classes = tuple(classes) if classes else None
        self.metric = spec.get("metric", "coco" if self.format == "coco" else "voc")
        if self.metric not in ("voc07", "voc", "coco"):
            raise DatasetFileError(f"{self.path}: metric must be voc07, voc or coco; got {self.metric!r}")
        self.profile = spec.get("config") or {}
        if not isinstance(self.profile, dict):
            raise DatasetFileError(f"{self.path}: config must be a mapping of config keys")

    def train(self) -> list[DetectionDataset]:
        if self.format == "coco":
            return [self._coco("train")]
        splits = self.spec["train"] if isinstance(self.spec["train"], list) else [self.spec["train"]]
        classes = self.classes or self._voc_classes(splits)
        return [self._voc(str(split), classes) for split in splits]

    def test(self) -> DetectionDataset:
        return self._held_out("test")

    @property
    def has_val(self) -> bool:
        return "val" in self.spec

    def val(self) -> DetectionDataset:
        """The validation split (`val:`, laid out like `test:`), for evaluation during training."""
        return self._held_out("val")

    def _held_out(self, key: str) -> DetectionDataset:
        if self.format == "coco":
            return self._coco(key)
        train = self.spec["train"] if isinstance(self.spec["train"], list) else [self.spec["train"]]
        return self._voc(str(self.spec[key]), self.classes or self._voc_classes(train))

    def _coco(self, key: str) -> COCOFormatDataset:
        part = self.spec[key]
        if not isinstance(part, dict) or "images" not in part or "annotations" not in part:
            raise DatasetFileError(f"{self.path}: '{key}' needs images and annotations for COCO data")
        classes = self.classes
        if classes is None and key != "train":  # held-out splits are read with the training split's classes
            classes = self._coco("train").foreground_classes
        dataset = COCOFormatDataset(
            f"{self.name}_{key}",
            _inside(self.root, str(part["annotations"]), "annotations", self.path),
            _inside(self.root, str(part["images"]), "images", self.path),
            classes,
        )
        dataset.metric = self.metric
        return dataset

    def _voc(self, split: str, classes: tuple[str, ...]) -> VOCFormatDataset:
        return VOCFormatDataset(f"{self.name}_{split}", self.root, split, classes, metric=self.metric)

    def _voc_classes(self, splits: list) -> tuple[str, ...]:
        ids = [i for split in splits for i in VOCFormatDataset("", self.root, str(split), ()).image_ids()]
        names = voc_class_names([self.root / "Annotations" / f"{i}.xml" for i in ids])
        if not names:
            raise DatasetFileError(f"{self.path}: no objects in the training split to take class names from")
        return names
