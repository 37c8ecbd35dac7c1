"""PASCAL VOC layout: JPEGImages/, Annotations/ (one XML per image), ImageSets/Main/<split>.txt.

XML boxes are 1-based inclusive pixels; they become 0-based by subtracting 1 and stay float (the
original stored them as uint16 and a 0 coordinate wrapped to 65535). XML in the wild has float
coordinates, empty <difficult/> tags and missing optional fields; all are accepted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from ...utils.errors import InputError, one_line, reading
from ...utils.files import is_file, is_inside
from .base import DataIssue, DetectionDataset, ImageRecord

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".JPEG", ".JPG", ".PNG")


class VOCFormatDataset(DetectionDataset):
    """A split of a VOC-layout folder.

    Args:
        name: the split's name (voc_2007_test, shapes_trainval, ...).
        root: the folder holding JPEGImages/, Annotations/ and ImageSets/Main/.
        split: the ImageSets/Main/<split>.txt to read.
        classes: class names in label order (without background).
        metric: default metric (voc07 for VOC 2007, voc otherwise).
    """

    def __init__(self, name: str, root: str | Path, split: str, classes: Sequence[str], metric: str = "voc") -> None:
        super().__init__(name, classes, metric)
        self.root = Path(root)
        self.split = split

    def image_ids(self) -> list[str]:
        """The ids the split file lists, in its order (each line's first word)."""
        return read_split_file(self.root / "ImageSets" / "Main" / f"{self.split}.txt", self.name)

    def image_path(self, image_id: str) -> Path:
        folder = self.root / "JPEGImages"
        for ext in IMAGE_EXTENSIONS:
            candidate = folder / f"{image_id}{ext}"
            if is_file(candidate):
                return candidate
        return folder / f"{image_id}.jpg"

    def _load_records(self) -> list[ImageRecord]:
        index = {name: i + 1 for i, name in enumerate(self.foreground_classes)}
        split_file = str(self.root / "ImageSets" / "Main" / f"{self.split}.txt")
        records = []
        for image_id in usable_ids(self.image_ids(), split_file, self.issues):
            xml = self.root / "Annotations" / f"{image_id}.xml"
            record = read_or_skip(self, self.root, xml, image_id, self.image_path(image_id), index)
            if record is not None:
                records.append(record)
        return records


def read_or_skip(
    dataset: DetectionDataset,
    root: Path,
    xml: Path,
    image_id: str,
    image_path: Path,
    index: dict[str, int],
    one_based: bool = True,
    lowercase: bool = False,
) -> ImageRecord | None:
    """read_voc_xml for one image of `dataset`, its problems added to dataset.issues; None when
    the image must be skipped (annotation missing or unreadable, paths leaving `root`)."""
    try:
        inside(root, xml, "annotation")
        inside(root, image_path, "image")
        record, issues = read_voc_xml(xml, image_id, image_path, index, one_based, lowercase)
    except AnnotationError as e:
        dataset.issues.append(DataIssue(str(xml), str(e), "skipped", e.kind))
        return None
    dataset.issues += issues
    return record


MAX_ID_BYTES = 240  # a file name is at most 255 bytes, with its extension


class VOCFormatError(InputError):
    """A split file that cannot be read."""


def read_split_file(path: Path, name: str) -> list[str]:
    """The first word of each non-blank line of an ImageSets list; VOCFormatError naming the file
    when it is not UTF-8 text, FileNotFoundError when it is missing."""
    if not is_file(path):
        raise FileNotFoundError(f"{name}: split file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise VOCFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise VOCFormatError(f"{path}: not readable ({one_line(e, 160)})") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def usable_ids(ids: Sequence[str], split_file: str, issues: list[DataIssue]) -> list[str]:
    """`ids` less those listed before (read once) and those no file name can hold (a NUL), each
    an issue added to `issues`."""
    seen, usable = set(), []
    for image_id in ids:
        if image_id in seen:
            issues.append(DataIssue(split_file, f"{image_id!r} listed again: read once", "fixed", "ids listed twice"))
        elif "\x00" in image_id or len(image_id.encode("utf-8", "replace")) > MAX_ID_BYTES:
            problem = f"{one_line(repr(image_id), 80)} is no file name (a NUL, or too long)"
            issues.append(DataIssue(split_file, problem, "skipped", "unusable ids in the split file"))
        else:
            usable.append(image_id)
        seen.add(image_id)
    return usable


class AnnotationError(InputError):
    """An annotation file that cannot be used; `kind` groups alike problems."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def inside(root: Path, path: Path, what: str) -> None:
    """Refuse paths (from annotation or list files) that leave the dataset root."""
    if not is_inside(root, path):
        raise AnnotationError(f"{what} path {path} leaves the dataset root {root}", "path leaves the dataset root")


def read_voc_xml(
    xml_path: Path,
    image_id: str,
    image_path: Path,
    class_index: dict[str, int],
    one_based: bool = True,
    lowercase: bool = False,
) -> tuple[ImageRecord, list[DataIssue]]:
    """An ImageRecord from a VOC-style XML file, and the objects it left out (unknown class,
    unreadable box). Raises AnnotationError when the file is missing or does not parse.

    one_based: VOC's coordinates start at 1 (ImageNet's and Visual Genome's at 0).
    lowercase: match class names case-insensitively (ImageNet's WordNet ids, Visual Genome).
    """
    tree = _parse(xml_path)
    width, height = _declared_size(tree)
    if width <= 0 or height <= 0:
        width, height = _image_size(image_path)
    offset = 1.0 if one_based else 0.0
    boxes, labels, difficult, issues = [], [], [], []
    where = str(xml_path)
    for obj in tree.findall("object"):
        name = (_text(obj, "name") or "").strip()
        label = class_index.get(name.lower() if lowercase else name)
        if label is None:
            problem = f"object of unknown class {name!r} dropped"
            issues.append(DataIssue(where, problem, "dropped", "objects of unknown classes dropped"))
            continue
        box = obj.find("bndbox")
        try:
            coords = [float(_text(box, tag)) - offset for tag in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            problem = f"{name} object without a readable bndbox dropped"
            issues.append(DataIssue(where, problem, "dropped", "unreadable boxes dropped"))
            continue
        boxes.append(coords)
        labels.append(label)
        difficult.append(_flag(_text(obj, "difficult")))
    with np.errstate(over="ignore"):  # a coordinate beyond float32 is infinite: the check drops it
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    record = ImageRecord(
        id=image_id,
        path=str(image_path),
        width=width,
        height=height,
        boxes=boxes,
        labels=np.asarray(labels, dtype=np.int64),
        difficult=np.asarray(difficult, dtype=bool),
        crowd=np.zeros(len(labels), dtype=bool),
    )
    return record, issues


def _parse(xml_path: Path) -> ET.Element:
    """The XML file's root element; AnnotationError when it is missing or does not parse."""
    if not is_file(xml_path):
        raise AnnotationError("annotation file missing", "annotation missing")
    try:
        with reading(xml_path):
            return ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise AnnotationError(f"XML does not parse ({one_line(e, 160)})", "annotation does not parse") from None
    except OSError as e:
        raise AnnotationError(f"not readable ({one_line(e, 160)})", "annotation does not parse") from None


def _declared_size(tree: ET.Element) -> tuple[int, int]:
    """(width, height) from <size>, or (0, 0) when missing or unreadable."""
    size = tree.find("size")
    return _side(_text(size, "width")), _side(_text(size, "height"))


def _side(text: str | None) -> int:
    """A side from <size>: a finite positive number, else 0 (read from the image instead)."""
    try:
        value = float(text) if text is not None else 0.0
    except ValueError:
        return 0
    return int(value) if 0 < value < 1e9 else 0  # NaN compares False


def voc_class_names(xml_paths: Sequence[Path]) -> tuple[str, ...]:
    """Every object name found in the XML files, sorted: the classes of VOC-format data that
    does not list its own. Files that are missing or do not parse are passed over here."""
    names = set()
    for path in xml_paths:
        try:
            objects = ET.parse(path).getroot().findall("object")
        except (ET.ParseError, OSError, ValueError):  # ValueError: a name no file can have (a NUL)
            continue
        for obj in objects:
            name = (_text(obj, "name") or "").strip()
            if name:
                names.add(name)
    return tuple(sorted(names))


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text if child is not None and child.text is not None else None


def _flag(text: str | None) -> bool:
    """<difficult>1</difficult> -> True; empty, missing or 0 -> False."""
    try:
        return bool(int(float(text))) if text and text.strip() else False
    except (ValueError, OverflowError):  # not a number, or infinite
        return False


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image's header, or (0, 0) if it cannot be read (the image check
    in data/validate.py then skips it with the reason)."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 - any unreadable file is the image check's to report
        return 0, 0


def write_voc_annotation(
    path: str | Path,
    filename: str,
    width: int,
    height: int,
    objects: Sequence[tuple[str, Sequence[float], bool]],
) -> None:
    """Write a VOC XML file; objects are (class name, 0-based inclusive box, difficult)."""
    lines = [
        "<annotation>",
        f"  <filename>{escape(filename)}</filename>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for name, box, difficult in objects:
        x1, y1, x2, y2 = (int(round(v)) + 1 for v in box)
        lines += [
            "  <object>",
            f"    <name>{escape(name)}</name><difficult>{int(difficult)}</difficult>",
            f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>",
            "  </object>",
        ]
    lines.append("</annotation>")
    Path(path).write_text("\n".join(lines) + "\n")
