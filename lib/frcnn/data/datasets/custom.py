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

Label-file formats (each reader's docstring states its box convention):

    format: yolo            # yolo.py. An Ultralytics data.yaml (no `format`, a `names` key) is read as is
    path: /path/to/data     # or root: (either may be relative to this file's folder)
    train: images/train     # a folder of images, a .txt list of image paths, or a list of those
    val: images/val         # needed, as Ultralytics needs it
    test: images/test       # optional: else val is the test split
    names: [cat, dog]       # or {0: cat, 1: dog}, or classes: [...]; YOLO class i is label i + 1
    nc: 2                   # optional; must agree with names

    format: labelme         # labelme.py: a folder of LabelMe JSON files a split
    train: {folder: labels/train}       # or train: labels/train
    test: {folder: labels/test}
    classes: [cat, dog]     # optional; default: every shape label in the training folder, sorted

    format: csv             # csv_boxes.py: image_path,xmin,ymin,xmax,ymax,label rows
    train: {csv: train.csv, images: images}   # images: what image paths are relative to
    test: {csv: test.csv, images: images}     # (default: the CSV's folder); or train: train.csv
    classes: [cat, dog]     # optional; default: every label in the training CSV, sorted

Large images: `tiles: {size: 512, overlap: 0.2, empty_share: 0.25, shift: 0.4}` (or `tiles: 512`) trains on
tiles cut at load and detects whole test images in the same tiles (config TILES). Without
`tiles:` (or with `tiles: auto`, or a mapping without a size) the size is chosen from the training
images and boxes, tiles only where images are much larger than the training scale and their
objects would shrink too small (autofit/tiles.py); `tiles: 0` keeps every image whole.

The file is read with yaml.safe_load. Paths inside it may not leave `root` (`path` for YOLO data),
and neither may the images and label files they lead to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...utils.errors import InputError, one_line, reading
from ...utils.files import is_dir, is_file, is_inside, read_yaml
from .base import DetectionDataset
from .coco import COCOFormatDataset
from .csv_boxes import CSVFormatDataset
from .labelme import LabelMeDataset
from .pascal_voc import VOCFormatDataset, voc_class_names
from .yolo import YOLOFormatDataset

FORMATS = ("coco", "voc", "yolo", "labelme", "csv")
LABEL_FILE_FORMATS = ("yolo", "labelme", "csv")


class DatasetFileError(InputError):
    """A dataset YAML file that does not describe a dataset."""


def is_dataset_file(name: str) -> bool:
    return name.endswith((".yml", ".yaml"))


def _inside(root: Path, relative: object, what: str, source: Path) -> Path:
    text = _path_text(relative, what, source)
    path = (root / text).resolve()
    if not is_inside(root, path):
        raise DatasetFileError(f"{source}: {what} {text!r} leaves the dataset root {root}")
    return path


def _path_text(value: object, what: str, source: Path) -> str:
    """A path or name from the file: a string (or number) a file name can hold."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise DatasetFileError(f"{source}: {what} should be a path or name; got {one_line(repr(value), 60)}")
    text = str(value)
    try:
        os.fsencode(text)
    except UnicodeError:
        text = "\x00"  # refused below, as a NUL is
    if "\x00" in text:
        raise DatasetFileError(f"{source}: {what} {one_line(repr(value), 60)} is no file name")
    return text


def _read_spec(path: Path) -> dict:
    if not is_file(path):
        raise (DatasetFileError if is_dir(path) else FileNotFoundError)(f"dataset file not found: {path}")
    spec: Any = read_yaml(path, DatasetFileError)
    if not isinstance(spec, dict):
        raise DatasetFileError(f"{path}: expected a mapping with format, train and test")
    return spec


def _classes(spec: dict, path: Path) -> tuple[str, ...] | None:
    classes = spec.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise DatasetFileError(f"{path}: classes must be a list of names")
    twice = sorted({c for c in classes or () if classes.count(c) > 1})
    if twice:
        raise DatasetFileError(f"{path}: classes lists {one_line(repr(twice[:3]), 80)} more than once")
    return tuple(classes) if classes else None


def _yolo_names(spec: dict, path: Path) -> tuple[str, ...]:
    """Ultralytics' `names`, a list or a mapping {0: name, 1: name, ...}, or `classes:`; YOLO data
    carries no class names of its own, so one of them is needed."""
    names = spec.get("names")
    if isinstance(names, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in names) or sorted(names) != list(
            range(len(names))
        ):
            raise DatasetFileError(f"{path}: names must map 0, 1, ... N-1 to class names")
        names = [names[i] for i in range(len(names))]
    classes = _classes({"classes": names} if names is not None else spec, path)
    if classes is None:
        raise DatasetFileError(f"{path}: YOLO data needs names: [class 0, class 1, ...]")
    nc = spec.get("nc")
    if nc is not None and nc != len(classes):
        raise DatasetFileError(f"{path}: nc is {one_line(repr(nc), 20)} but names lists {len(classes)} classes")
    return classes


class DatasetFile:
    """A parsed dataset YAML: builds its train and test datasets and carries its config profile."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with reading(self.path):
            spec = _read_spec(self.path)
        self.format = spec.get("format", "yolo" if "names" in spec else None)  # Ultralytics' data.yaml has none
        if self.format not in FORMATS:
            shown = one_line(repr(self.format), 60)
            raise DatasetFileError(
                f"{self.path}: format must be coco or voc (annotation files) or yolo, labelme or csv; got {shown}"
            )
        for key in ("train", "val") if self.format == "yolo" else ("train", "test"):
            if spec.get(key) is None:
                raise DatasetFileError(f"{self.path}: missing '{key}'")
        root = spec.get("root", spec.get("path") or ".") if self.format == "yolo" else spec.get("root", ".")
        self.root = (self.path.parent / _path_text(root, "root", self.path)).resolve()
        self.name = self.path.stem
        self.spec = spec
        self.classes = _yolo_names(spec, self.path) if self.format == "yolo" else _classes(spec, self.path)
        self._found_classes: tuple[str, ...] | None = None
        self.metric = spec.get("metric", "coco" if self.format == "coco" else "voc")
        if self.metric not in ("voc07", "voc", "coco"):
            shown = one_line(repr(self.metric), 60)
            raise DatasetFileError(f"{self.path}: metric must be voc07, voc or coco; got {shown}")
        self.profile = spec.get("config") or {}
        if not isinstance(self.profile, dict):
            raise DatasetFileError(f"{self.path}: config must be a mapping of config keys")
        if spec.get("tiles") is not None:
            self.profile = {**self.profile, "TILES": self._tiles(spec["tiles"])}

    def _tiles(self, tiles: Any) -> dict:
        """`tiles: {size: 512, overlap: 0.2, empty_share: 0.25}` (or `tiles: 512`, `tiles: auto`,
        `tiles: 0` for none) as TILES config; a mapping without a size has size auto."""
        if (isinstance(tiles, int) and not isinstance(tiles, bool)) or tiles == "auto":
            tiles = {"size": tiles}
        if not isinstance(tiles, dict) or not set(tiles) <= {"size", "overlap", "empty_share", "shift"}:
            raise DatasetFileError(
                f"{self.path}: tiles is a size, auto, or a mapping of size, overlap, empty_share and shift"
            )
        return {"SIZE": "auto", **{str(key).upper(): value for key, value in tiles.items()}}

    def train(self) -> list[DetectionDataset]:
        if self.format == "coco":
            return [self._coco("train")]
        if self.format in LABEL_FILE_FORMATS:
            return [self._label_files("train")]
        splits = self.spec["train"] if isinstance(self.spec["train"], list) else [self.spec["train"]]
        classes = self.classes or self._voc_classes(splits)
        return [self._voc(split, classes) for split in splits]

    def test(self) -> DetectionDataset:
        if self.format == "yolo" and self.spec.get("test") is None:  # optional in Ultralytics' data.yaml
            return self._held_out("val")
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
        if self.format in LABEL_FILE_FORMATS:
            return self._label_files(key)
        train = self.spec["train"] if isinstance(self.spec["train"], list) else [self.spec["train"]]
        return self._voc(self.spec[key], self.classes or self._voc_classes(train))

    def _coco(self, key: str) -> COCOFormatDataset:
        part = self.spec[key]
        if not isinstance(part, dict) or "images" not in part or "annotations" not in part:
            raise DatasetFileError(f"{self.path}: '{key}' needs images and annotations for COCO data")
        classes = self.classes
        if classes is None and key != "train":  # held-out splits are read with the training split's classes
            classes = self._coco("train").foreground_classes
        dataset = COCOFormatDataset(
            f"{self.name}_{key}",
            _inside(self.root, part["annotations"], "annotations", self.path),
            _inside(self.root, part["images"], "images", self.path),
            classes,
        )
        dataset.metric = self.metric
        return dataset

    def _voc(self, split: object, classes: tuple[str, ...]) -> VOCFormatDataset:
        name = _path_text(split, "split", self.path)
        _inside(self.root, f"ImageSets/Main/{name}.txt", "split", self.path)
        return VOCFormatDataset(f"{self.name}_{name}", self.root, name, classes, metric=self.metric)

    def _voc_classes(self, splits: list) -> tuple[str, ...]:
        ids = [i for split in splits for i in self._voc(split, ()).image_ids()]
        xml_files = [self.root / "Annotations" / f"{i}.xml" for i in ids if "\x00" not in i]
        # as the records are read: an annotation path that leaves the root is not read
        names = voc_class_names([path for path in xml_files if is_inside(self.root, path)])
        if not names:
            raise DatasetFileError(f"{self.path}: no objects in the training split to take class names from")
        return names

    def _label_files(self, key: str) -> DetectionDataset:
        """A split of YOLO, LabelMe or CSV data; without `classes:`, every split takes the names
        found in the training split (LabelMe and CSV data; YOLO data must name its classes)."""
        if self.classes is None and self._found_classes is None:
            self._found_classes = self._reader("train", ()).label_names()
            if not self._found_classes:
                raise DatasetFileError(f"{self.path}: no objects in the training split to take class names from")
        return self._reader(key, self.classes or self._found_classes)

    def _reader(self, key: str, classes: tuple[str, ...]) -> YOLOFormatDataset | LabelMeDataset | CSVFormatDataset:
        part, name = self.spec[key], f"{self.name}_{key}"
        if self.format == "yolo":
            sources = [_inside(self.root, s, key, self.path) for s in (part if isinstance(part, list) else [part])]
            return YOLOFormatDataset(name, self.root, sources, classes, metric=self.metric)
        field = "folder" if self.format == "labelme" else "csv"
        if isinstance(part, dict) and field not in part:
            raise DatasetFileError(f"{self.path}: '{key}' needs a {field} for {self.format} data")
        found = _inside(self.root, part[field] if isinstance(part, dict) else part, field, self.path)
        if self.format == "labelme":
            return LabelMeDataset(name, found, classes, self.root, metric=self.metric)
        images = part.get("images") if isinstance(part, dict) else None  # default: the CSV's folder
        if images is not None:
            images = _inside(self.root, images, "images", self.path)
        return CSVFormatDataset(name, found, classes, images, self.root, metric=self.metric)
