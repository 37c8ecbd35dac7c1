"""`--dataset NAME` -> the training datasets, the test dataset, and the dataset's config profile.

NAME is one of DATASET_NAMES or the path of a dataset YAML file (custom.py). The profile is the
one place that sets per-dataset options (anchor scales, image scales); it is merged into the config
before the net's file, and the merged config is stored in every checkpoint, so training and
testing always use the same anchors.

The built-in dataset and dataset YAML files have `ANCHOR_SCALES: auto` (AUTO_ANCHORS): the trainer
chooses scales and ratios from the training boxes (autofit/anchors.py) and the checkpoint
stores the numbers. A YAML file's own `config: {ANCHOR_SCALES: [...]}` wins over it. The original's
named datasets (pascal_voc, coco, imagenet, vg) keep the original's fixed anchors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .base import DetectionDataset
from .coco import COCOFormatDataset
from .custom import DatasetFile, is_dataset_file
from .imagenet import ImageNetDET
from .pascal_voc import VOC_CLASSES, VOCFormatDataset
from .shapes import ShapesDataset
from .visual_genome import DEFAULT_VERSION, VisualGenome


@dataclass
class DatasetSpec:
    """train: datasets joined for training; test: the evaluation split; profile: config overrides;
    val: the split for choosing among checkpoints during training, when the dataset has one;
    source: the dataset YAML file the profile comes from, if any (named by config errors)."""

    train: Callable[[], list[DetectionDataset]]
    test: Callable[[], DetectionDataset]
    profile: dict = field(default_factory=dict)
    val: Callable[[], DetectionDataset] | None = None
    source: str | None = None


# The profile of data this project knows nothing of in advance: anchors chosen from its boxes.
# ("auto" is config.AUTO, spelt out: the data layer does not import the config.)
AUTO_ANCHORS = {"ANCHOR_SCALES": "auto"}
# ... and tiles where its images are much larger than the training scale (autofit/tiles.py).
AUTO_TILES = {"TILES": {"SIZE": "auto"}}
# The built-in dataset is small and synthetic: images of 192-640 pixels, objects of 10 pixels to
# half the image, so smaller scales than PASCAL VOC's 600-pixel defaults, anchors chosen from the
# boxes (they were 1 to 8 x 16 px in 2^(1/2) steps x 3 ratios, 21 per cell, before `auto`), and
# the RPN's foreground IoU at 0.5: with 0.7 most objects had no anchor that qualified.
SHAPES_PROFILE = {
    **AUTO_ANCHORS,
    "TRAIN": {
        "SCALES": [256],
        "MAX_SIZE": 512,
        "BATCH_SIZE": 64,
        "RPN_POSITIVE_OVERLAP": 0.5,
        "RPN_MIN_SIZE": 4,
        "RPN_PRE_NMS_TOP_N": 1200,
        "RPN_POST_NMS_TOP_N": 300,
    },
    "TEST": {"SCALES": [256], "MAX_SIZE": 512, "RPN_MIN_SIZE": 4, "RPN_PRE_NMS_TOP_N": 600, "RPN_POST_NMS_TOP_N": 100},
}
# COCO and Visual Genome have many small objects: the original added a 4 x 16 = 64-pixel scale.
SMALL_OBJECT_PROFILE = {"ANCHOR_SCALES": [4, 8, 16, 32]}

# COCO annotation file -> image folder (the 2014 minival / valminusminival splits of val2014).
COCO_IMAGE_FOLDERS = {
    "train2014": "train2014",
    "val2014": "val2014",
    "minival2014": "val2014",
    "valminusminival2014": "val2014",
    "train2017": "train2017",
    "val2017": "val2017",
}

DATASET_NAMES = ("shapes", "pascal_voc", "pascal_voc_0712", "coco", "coco_2017", "imagenet", "vg")


def _voc(data_dir: Path, year: str, split: str) -> VOCFormatDataset:
    root = data_dir / f"VOCdevkit{year}" / f"VOC{year}"
    return VOCFormatDataset(
        f"voc_{year}_{split}", root, split, VOC_CLASSES, metric="voc07" if year == "2007" else "voc"
    )


def _coco(data_dir: Path, split: str) -> COCOFormatDataset:
    year = split[-4:]
    return COCOFormatDataset(
        f"coco_{year}_{split[:-4]}",
        data_dir / "coco" / "annotations" / f"instances_{split}.json",
        data_dir / "coco" / "images" / COCO_IMAGE_FOLDERS[split],
    )


def dataset_spec(name: str, data_dir: str | Path = "data", vg_version: str = DEFAULT_VERSION) -> DatasetSpec:
    """The DatasetSpec for a --dataset name or dataset YAML path."""
    data_dir = Path(data_dir)
    if is_dataset_file(name):
        spec = DatasetFile(name)
        profile = {**AUTO_ANCHORS, **AUTO_TILES, **spec.profile}  # the file's own anchors and tiles win
        return DatasetSpec(spec.train, spec.test, profile, spec.val if spec.has_val else None, str(spec.path))
    if name == "shapes":
        root = data_dir / "shapes"
        return DatasetSpec(
            lambda: [ShapesDataset("trainval", root)], lambda: ShapesDataset("test", root), SHAPES_PROFILE
        )
    if name == "pascal_voc":
        return DatasetSpec(lambda: [_voc(data_dir, "2007", "trainval")], lambda: _voc(data_dir, "2007", "test"))
    if name == "pascal_voc_0712":
        return DatasetSpec(
            lambda: [_voc(data_dir, "2007", "trainval"), _voc(data_dir, "2012", "trainval")],
            lambda: _voc(data_dir, "2007", "test"),
        )
    if name == "coco":
        return DatasetSpec(
            lambda: [_coco(data_dir, "train2014"), _coco(data_dir, "valminusminival2014")],
            lambda: _coco(data_dir, "minival2014"),
            SMALL_OBJECT_PROFILE,
        )
    if name == "coco_2017":
        return DatasetSpec(
            lambda: [_coco(data_dir, "train2017")], lambda: _coco(data_dir, "val2017"), SMALL_OBJECT_PROFILE
        )
    if name == "imagenet":
        root = data_dir / "imagenet"
        return DatasetSpec(lambda: [ImageNetDET("train", root)], lambda: ImageNetDET("val", root))
    if name == "vg":
        return DatasetSpec(
            lambda: [VisualGenome("train", vg_version, data_dir)],
            lambda: VisualGenome("test", vg_version, data_dir),
            SMALL_OBJECT_PROFILE,
        )
    raise ValueError(
        f"unknown --dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}, or give a dataset .yaml file"
    )
