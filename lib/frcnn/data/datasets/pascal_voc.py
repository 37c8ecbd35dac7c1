"""PASCAL VOC layout: JPEGImages/, Annotations/ (one XML per image), ImageSets/Main/<split>.txt.

XML boxes are 1-based inclusive pixels; they become 0-based by subtracting 1 and stay float (the
original stored them as uint16 and a 0 coordinate wrapped to 65535). XML in the wild has float
coordinates, empty <difficult/> tags and missing optional fields; all are accepted.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import escape

import numpy as np

from .base import DetectionDataset, ImageRecord

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
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
        split_file = self.root / "ImageSets" / "Main" / f"{self.split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"{self.name}: split file not found: {split_file}")
        return [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]

    def image_path(self, image_id: str) -> Path:
        folder = self.root / "JPEGImages"
        for ext in IMAGE_EXTENSIONS:
            candidate = folder / f"{image_id}{ext}"
            if candidate.is_file():
                return candidate
        return folder / f"{image_id}.jpg"

    def _load_records(self) -> list[ImageRecord]:
        index = {name: i + 1 for i, name in enumerate(self.foreground_classes)}
        return [self._read(image_id, index) for image_id in self.image_ids()]

    def _read(self, image_id: str, class_index: dict[str, int]) -> ImageRecord:
        path = self.image_path(image_id)
        return read_voc_xml(self.root / "Annotations" / f"{image_id}.xml", image_id, path, class_index)


def read_voc_xml(
    xml_path: Path, image_id: str, image_path: Path, class_index: dict[str, int], one_based: bool = True, lowercase: bool = False
) -> ImageRecord:
    """An ImageRecord from a VOC-style XML file; objects of other classes are left out.

    one_based: VOC's coordinates start at 1 (ImageNet's and Visual Genome's at 0).
    lowercase: match class names case-insensitively (ImageNet's WordNet ids, Visual Genome).
    """
    tree = ET.parse(xml_path).getroot()
    size = tree.find("size")
    width = int(float(_text(size, "width") or 0)) if size is not None else 0
    height = int(float(_text(size, "height") or 0)) if size is not None else 0
    if width <= 0 or height <= 0:
        width, height = _image_size(image_path)
    offset = 1.0 if one_based else 0.0
    boxes, labels, difficult = [], [], []
    for obj in tree.findall("object"):
        name = (_text(obj, "name") or "").strip()
        label = class_index.get(name.lower() if lowercase else name)
        box = obj.find("bndbox")
        if label is None or box is None:
            continue
        boxes.append([float(_text(box, tag)) - offset for tag in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(label)
        difficult.append(_flag(_text(obj, "difficult")))
    return ImageRecord(
        id=image_id,
        path=str(image_path),
        width=width,
        height=height,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        difficult=np.asarray(difficult, dtype=bool),
        crowd=np.zeros(len(labels), dtype=bool),
    )


def voc_class_names(xml_paths: Sequence[Path]) -> tuple[str, ...]:
    """Every object name found in the XML files, sorted: the classes of VOC-format data that
    does not list its own."""
    names = set()
    for path in xml_paths:
        for obj in ET.parse(path).getroot().findall("object"):
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
    except ValueError:
        return False


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image  # header only; Pillow comes with matplotlib

    with Image.open(path) as im:
        return im.size


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
