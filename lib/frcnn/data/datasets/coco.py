"""COCO-format data: one instances JSON per split and a folder of images.

Boxes [x, y, w, h] become inclusive (x, y, x + w - 1, y + h - 1), BoxMode.XYWH -> BoxMode.XYXY, as
py-faster-rcnn read them (data/validate.py then clips or drops boxes that leave the image);
`iscrowd` regions are kept as crowd (never trained on, ignored by the metric). Malformed entries are
reported, not fatal. Category ids are sparse (1..90 for COCO's 80 classes): label i + 1 is the i-th
category in id order, and `category_ids` maps labels back for results files.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from ...structures import BoxMode
from ...utils.files import is_inside
from .base import DataIssue, DetectionDataset, ImageRecord

# COCO's categories indexed by category id (1..90), with N/A where the 2014 release left an id
# unused: the label layout of torchvision's COCO detectors (their label is the category id).
COCO_91_CATEGORIES: tuple[str, ...] = (
    "__background__",
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "N/A",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "N/A",
    "backpack",
    "umbrella",
    "N/A",
    "N/A",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "N/A",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "N/A",
    "dining table",
    "N/A",
    "N/A",
    "toilet",
    "N/A",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "N/A",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)


class COCOFormatError(ValueError):
    """An annotation file that is not COCO instances JSON."""


def read_instances(path: Path) -> tuple[dict, list[DataIssue]]:
    """The file's images, annotations and categories, keeping well-formed entries only; the others,
    and annotations of images the file does not list, become DataIssues. Raises COCOFormatError
    when the file as a whole is not COCO instances JSON."""
    data = _read_json(path)
    categories = [
        c
        for c in data["categories"]
        if isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)
    ]
    if len(categories) != len(data["categories"]):
        raise COCOFormatError(f"{path}: every category needs an integer 'id' and a 'name'")
    issues: list[DataIssue] = []
    images = []
    for n, im in enumerate(data["images"]):
        if isinstance(im, dict) and isinstance(im.get("id"), int) and isinstance(im.get("file_name"), str):
            images.append(im)
        else:
            problem = f"images[{n}] needs an integer 'id' and a 'file_name': {str(im)[:80]}"
            issues.append(DataIssue(str(path), problem, "skipped", "malformed image entries"))
    image_ids = {im["id"] for im in images}
    annotations = []
    for n, ann in enumerate(data["annotations"]):
        problem = _annotation_problem(ann, image_ids)
        if problem is None:
            annotations.append({**ann, "id": ann.get("id", n + 1)})
        else:
            issues.append(DataIssue(str(path), f"annotations[{n}] {problem[0]}", "dropped", problem[1]))
    return {**data, "images": images, "annotations": annotations, "categories": categories}, issues


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise COCOFormatError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise COCOFormatError(
            f"{path}: not COCO instances JSON: expected an object with 'images', 'annotations' and 'categories' lists"
        )
    return data


def _annotation_problem(ann: object, image_ids: set) -> tuple[str, str] | None:
    """What is wrong with one annotation entry (problem, kind), or None."""
    bbox = ann.get("bbox") if isinstance(ann, dict) else None
    numbers = isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
    if not (numbers and "category_id" in ann):
        return f"needs a 4-number 'bbox' and a 'category_id': {str(ann)[:80]}", "malformed annotations dropped"
    if ann.get("image_id") not in image_ids:
        return f"points at image id {ann.get('image_id')!r}, which the file does not list", (
            "annotations of missing images dropped"
        )
    return None


class COCOFormatDataset(DetectionDataset):
    """A split in COCO format.

    Args:
        name: the split's name (coco_2014_minival, ...).
        annotation_file: the instances JSON.
        image_dir: the folder that `file_name` entries are relative to.
        classes: class names in label order; None takes every category of the file, in id order.
            With explicit classes, categories named otherwise are left out.
    """

    def __init__(
        self, name: str, annotation_file: str | Path, image_dir: str | Path, classes: Sequence[str] | None = None
    ) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        self._coco = None
        super().__init__(name, classes or (), metric="coco")
        self._from_file = classes is None

    @property
    def coco(self):
        """The pycocotools COCO index of the annotation file's well-formed entries (loaded once)."""
        if self._coco is None:
            data, self._file_issues = read_instances(self.annotation_file)
            coco = COCO()
            coco.dataset = data
            with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress lines
                coco.createIndex()
            self._coco = coco
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
        self.issues += self._file_issues
        label_of = {cat: i + 1 for i, cat in enumerate(self.category_ids)}
        records = []
        for image_id in sorted(coco.getImgIds()):
            info = coco.imgs[image_id]
            path = self.image_dir / str(info["file_name"])
            if not is_inside(self.image_dir, path):
                self.issues.append(
                    DataIssue(
                        str(self.annotation_file),
                        f"image {image_id}: file_name {info['file_name']!r} leaves {self.image_dir}",
                        "skipped",
                        "path leaves the dataset root",
                    )
                )
                continue
            width, height = int(info.get("width") or 0), int(info.get("height") or 0)
            boxes, labels, crowd = [], [], []
            for ann in coco.imgToAnns.get(image_id, []):
                label = label_of.get(ann["category_id"])
                if label is None:
                    continue  # a category left out by `classes`
                # degenerate and outside boxes: data/validate.py
                boxes.append(BoxMode.convert([float(v) for v in ann["bbox"]], BoxMode.XYWH, BoxMode.XYXY))
                labels.append(label)
                crowd.append(bool(ann.get("iscrowd", 0)))
            records.append(
                ImageRecord(
                    id=image_id,
                    path=str(path),
                    width=width,
                    height=height,
                    boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                    labels=np.asarray(labels, dtype=np.int64),
                    difficult=np.zeros(len(labels), dtype=bool),
                    crowd=np.asarray(crowd, dtype=bool),
                )
            )
        return records
