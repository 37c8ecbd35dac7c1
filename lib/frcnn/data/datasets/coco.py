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
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from ...structures import BoxMode
from ...utils.errors import InputError, one_line, reading
from ...utils.files import is_dir, is_file, is_inside
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


# An area the COCO metric's "all" range (0 to 1e5 ** 2) holds; one beyond it, or not a positive
# number, is taken from the box instead, so that every object the check keeps is counted.
MAX_AREA = 1e10


class COCOFormatError(InputError):
    """An annotation file that is not COCO instances JSON."""


def read_instances(path: Path) -> tuple[dict, list[DataIssue]]:
    """The file's images, annotations and categories, keeping well-formed entries only; the others,
    images that share an id, and annotations of images the file does not list become DataIssues.
    Entries are normalised: sizes that are not finite positive numbers become 0 (the image check
    reads them off the image), bbox values floats, iscrowd 0 or 1 (absent: 0), area a positive
    number or absent (the box's), annotation ids 1..N. Raises COCOFormatError when the file as a
    whole is not COCO instances JSON."""
    with reading(path):
        data = _read_json(path)
        categories = _categories(data["categories"], path)
        images, issues = _images(data["images"], path)
        listed = {im.get("id") for im in data["images"] if isinstance(im, dict) and _integer(im.get("id"))}
        skipped = listed - {im["id"] for im in images}
        annotations, more = _annotations(data["annotations"], {im["id"] for im in images}, skipped, path)
    return {**data, "images": images, "annotations": annotations, "categories": categories}, issues + more


def _read_json(path: Path) -> dict:
    if not is_file(path):
        what = "is a folder, not a file" if is_dir(path) else "not found"
        raise (COCOFormatError if is_dir(path) else FileNotFoundError)(f"annotation file {path} {what}")
    try:
        data = json.loads(path.read_bytes())  # bytes: JSON's own encodings (UTF-8, -16, -32)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise COCOFormatError(f"{path}: not JSON ({one_line(e, 160)})") from None
    except OSError as e:
        raise COCOFormatError(f"{path}: not readable ({one_line(e, 160)})") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise COCOFormatError(
            f"{path}: not COCO instances JSON: expected an object with 'images', 'annotations' and 'categories' lists"
        )
    return data


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(entries: list, path: Path) -> list[dict]:
    """The categories, which must each have an integer id and a name, both unique."""
    if not all(isinstance(c, dict) and _integer(c.get("id")) and isinstance(c.get("name"), str) for c in entries):
        raise COCOFormatError(f"{path}: every category needs an integer 'id' and a 'name'")
    for key in ("id", "name"):
        seen: dict = {}
        for n, c in enumerate(entries):
            if c[key] in seen:
                same = f"the same {key} {one_line(repr(c[key]), 60)}"
                raise COCOFormatError(f"{path}: categories[{seen[c[key]]}] and categories[{n}] have {same}")
            seen[c[key]] = n
    return [{"id": c["id"], "name": c["name"]} for c in entries]


def _images(entries: list, path: Path) -> tuple[list[dict], list[DataIssue]]:
    """Well-formed image entries with their sizes normalised; images sharing an id are all
    skipped (which of them an annotation belongs to is unknown), one issue naming them each."""
    issues, images, by_id = [], [], {}
    for n, im in enumerate(entries):
        if isinstance(im, dict) and _integer(im.get("id")) and _file_name(im.get("file_name")):
            images.append({**im, "width": _side(im.get("width")), "height": _side(im.get("height"))})
            by_id.setdefault(im["id"], []).append(im["file_name"])
        else:
            problem = f"images[{n}] needs an integer 'id' and a 'file_name': {one_line(repr(im), 80)}"
            issues.append(DataIssue(str(path), problem, "skipped", "malformed image entries"))
    for image_id, names in by_id.items():
        if len(names) > 1:
            shown = " and ".join(one_line(repr(name), 80) for name in names[:3]) + (" ..." if len(names) > 3 else "")
            problem = (
                f"image id {image_id} is given to {len(names)} files, {shown}: all skipped (whose boxes are unknown)"
            )
            issues.append(DataIssue(str(path), problem, "skipped", "images sharing an id"))
    return [im for im in images if len(by_id[im["id"]]) == 1], issues


def _file_name(name: object) -> bool:
    """A file name the file system can hold: a non-empty string without NUL, encodable."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        return False
    try:
        os.fsencode(name)
    except UnicodeError:  # an unpaired surrogate from a \ud800 escape
        return False
    return True


def _side(value: object) -> int:
    """An image side from the file: a finite positive number, else 0 (the image check reads it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return int(value) if 0 < value < 1e9 else 0  # NaN compares False


def _annotations(entries: list, image_ids: set, skipped: set, path: Path) -> tuple[list[dict], list[DataIssue]]:
    """Well-formed annotations of listed images, normalised; the others become DataIssues
    (those of images skipped for sharing an id go with their images' issue)."""
    annotations, issues, first_with_id = [], [], {}
    for n, ann in enumerate(entries):
        problem = _annotation_problem(ann, image_ids)
        if problem is not None:
            if not (isinstance(ann, dict) and _integer(ann.get("image_id")) and ann["image_id"] in skipped):
                issues.append(DataIssue(str(path), f"annotations[{n}] {problem[0]}", "dropped", problem[1]))
            continue
        if _integer(ann.get("id")):
            if ann["id"] in first_with_id:
                problem = (
                    f"annotations[{n}] has id {ann['id']}, as annotations[{first_with_id[ann['id']]}] has: both kept"
                )
                issues.append(DataIssue(str(path), problem, "fixed", "duplicate annotation ids renumbered"))
            first_with_id.setdefault(ann["id"], n)
        annotations.append(_normalised(ann, len(annotations) + 1))
    return annotations, issues


def _normalised(ann: dict, number: int) -> dict:
    area = ann.get("area")
    entry = {
        "id": number,
        "image_id": ann["image_id"],
        "category_id": ann["category_id"],
        "bbox": [_float(v) for v in ann["bbox"]],
        "iscrowd": int(_number(ann.get("iscrowd")) and ann["iscrowd"] != 0),
    }
    if _number(area) and 0 < area < MAX_AREA:  # NaN compares False
        entry["area"] = float(area)
    return entry


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float(value: int | float) -> float:
    """float(value); an integer too large for a float is infinite (the box check drops it)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _annotation_problem(ann: object, image_ids: set) -> tuple[str, str] | None:
    """What is wrong with one annotation entry (problem, kind), or None."""
    bbox = ann.get("bbox") if isinstance(ann, dict) else None
    numbers = isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)
    if not (numbers and _integer(ann.get("category_id"))):
        return f"needs a 4-number 'bbox' and an integer 'category_id': {one_line(repr(ann), 80)}", (
            "malformed annotations dropped"
        )
    image_id = ann.get("image_id")
    if not (_integer(image_id) and image_id in image_ids):
        return f"points at image id {one_line(repr(image_id), 40)}, which the file does not list", (
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
            if not self._foreground:
                raise COCOFormatError(f"{self.annotation_file}: lists no categories to take class names from")
            self._from_file = False
        return self._foreground

    @property
    def category_ids(self) -> list[int]:
        """category_ids[label - 1] is the dataset's category id of that label."""
        by_name = {c["name"]: c["id"] for c in self.coco.loadCats(self.coco.getCatIds())}
        missing = [n for n in self.foreground_classes if n not in by_name]
        if missing:
            shown = one_line(repr(missing[:5]), 120)
            raise COCOFormatError(f"{self.annotation_file}: classes {shown} of {self.name} are not categories of it")
        return [by_name[n] for n in self.foreground_classes]

    def _load_records(self) -> list[ImageRecord]:
        coco = self.coco
        self.issues += self._file_issues
        label_of = {cat: i + 1 for i, cat in enumerate(self.category_ids)}
        records = []
        for image_id in sorted(coco.getImgIds()):  # (read_instances normalised every entry used here)
            info = coco.imgs[image_id]
            path = self.image_dir / info["file_name"]
            if not is_inside(self.image_dir, path):
                problem = f"image {image_id}: file_name {one_line(repr(info['file_name']), 80)} leaves {self.image_dir}"
                self.issues.append(
                    DataIssue(str(self.annotation_file), problem, "skipped", "path leaves the dataset root")
                )
                continue
            records.append(_record(image_id, path, info, coco.imgToAnns.get(image_id, []), label_of))
        return records


def _record(image_id: int, path: Path, info: dict, annotations: list[dict], label_of: dict[int, int]) -> ImageRecord:
    """One image's record from its normalised entries (read_instances); categories left out by
    `classes` are left out. Degenerate and outside boxes are data/validate.py's to find."""
    boxes, labels, crowd, area = [], [], [], []
    for ann in annotations:
        label = label_of.get(ann["category_id"])
        if label is None:
            continue
        boxes.append(BoxMode.convert(ann["bbox"], BoxMode.XYWH, BoxMode.XYXY))
        labels.append(label)
        crowd.append(bool(ann["iscrowd"]))
        area.append(ann.get("area", math.nan))  # NaN: the box's, once checked (coco_eval.py)
    with np.errstate(over="ignore"):  # a coordinate beyond float32 is infinite: the check drops it
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return ImageRecord(
        id=image_id,
        path=str(path),
        width=info["width"],
        height=info["height"],
        boxes=boxes,
        labels=np.asarray(labels, dtype=np.int64),
        difficult=np.zeros(len(labels), dtype=bool),
        crowd=np.asarray(crowd, dtype=bool),
        area=np.asarray(area, dtype=np.float32),
    )
