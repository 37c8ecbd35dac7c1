"""LabelMe: a folder of the JSON files LabelMe saves, one per image (found recursively, sorted).

    {"imagePath": "../images/0001.jpg",      # relative to the JSON's folder (\\ read as /)
     "imageWidth": 640, "imageHeight": 480,  # else read from the image's header
     "shapes": [{"label": "cat", "shape_type": "rectangle", "points": [[x1, y1], [x2, y2]],
                 "group_id": null, "flags": {}}, ...]}

Convention: LabelMe's points are positions on the image taken as the continuous area
[0, W] x [0, H], pixel i covering [i, i + 1): LabelMe's canvas draws the image so and lets points
go from 0 to W (not W - 1); its own example 2011_000003.json has a rectangle reaching x = 500 on
its 500-pixel-wide image. A shape's extent, the least and greatest of its points, is so an
exclusive box (BoxMode.XYXY_EXCLUSIVE): a rectangle from (91, 107) to (240, 330) covers pixels
91..239 and 107..329, inclusive XYXY (91, 107, 239, 329). Boxes stay floats. The extent of
- rectangle (two corners), polygon and oriented_rectangle: its points';
- mask: its two points are the first and last pixels of its bitmap (LabelMe pastes the bitmap at
  [y1:y2 + 1, x1:x2 + 1] of the image): they are the inclusive box, in whole pixels;
- circle (its centre and a point on the rim): the centre plus and minus the radius;
- point, points, line and linestrip enclose no area: dropped, an issue each.
Shapes sharing a label and a group_id are one object (as LabelMe's instances are): one box around
them. LabelMe's reserved labels `__ignore__` and `_background_` are no classes: such shapes are
dropped. A shape whose flags have `difficult: true` is difficult (the VOC metric ignores it).
(LabelMe's labelme2coco.py example fills each shape's mask with Pillow, which takes the
boundary's pixels too, and gives boxes up to one pixel larger at the far sides; its labelme2voc.py
writes the points unchanged into VOC's 1-based <bndbox>. Both are within a pixel of these boxes.)

A file that is not JSON or not a LabelMe file, or whose image leaves the dataset root, skips its
image; a malformed shape (no label, points that are not [x, y] numbers, too few points), one of
an unknown class or with a non-finite or wholly outside box is dropped, named by file and
`shapes[i]`. An image only embedded in its JSON (imageData) is not read: export it to a file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath

import numpy as np

from ...structures import BoxMode
from ...utils.errors import one_line
from ...utils.files import is_file
from .base import DataIssue, DetectionDataset, ImageRecord
from .label_files import box_problem, header_size, stays_inside, to_float

RESERVED_LABELS = ("__ignore__", "_background_")
AREA_SHAPES = {"rectangle": 2, "mask": 2, "circle": 2, "polygon": 3, "oriented_rectangle": 4}
LINE_SHAPES = ("point", "points", "line", "linestrip")


class LabelMeError(Exception):
    """A LabelMe file or shape that cannot be used; args: (problem, kind), caught into a DataIssue."""


def read_labelme_json(path: Path) -> dict:
    """The file's object, which has an `imagePath` string and a `shapes` list; LabelMeError else."""
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise LabelMeError(f"not JSON ({one_line(e, 120)})", "annotation does not parse") from None
    except OSError as e:
        raise LabelMeError(f"not readable ({one_line(e, 120)})", "annotation does not parse") from None
    if not (isinstance(data, dict) and isinstance(data.get("imagePath"), str) and data["imagePath"].strip()):
        raise LabelMeError("not a LabelMe file: no 'imagePath'", "not LabelMe files")
    if not isinstance(data.get("shapes"), list):
        raise LabelMeError("not a LabelMe file: no 'shapes' list", "not LabelMe files")
    return data


def shape_box(shape: object) -> tuple[str, list[float]]:
    """(label, inclusive XYXY box) of one shape; LabelMeError (problem, kind) when it has none."""
    label, extent = _shape_extent(shape)
    if shape.get("shape_type") == "mask":  # LabelMe pastes its bitmap at [y1:y2 + 1, x1:x2 + 1]: pixels
        return label, [float(math.floor(v)) if math.isfinite(v) else v for v in extent]
    return label, BoxMode.convert(extent, BoxMode.XYXY_EXCLUSIVE, BoxMode.XYXY)


def _shape_extent(shape: object) -> tuple[str, list[float]]:
    """(label, the shape's extent on the continuous image: exclusive XYXY)."""
    if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
        raise LabelMeError(f"is not a shape with a label: {one_line(repr(shape), 80)}", "malformed shapes dropped")
    label, kind = shape["label"], shape.get("shape_type") or "polygon"  # LabelMe reads None as polygon
    if kind in LINE_SHAPES:
        raise LabelMeError(f"({label!r}) is a {kind}, which encloses no box: dropped", f"{kind} shapes dropped")
    if not isinstance(kind, str) or kind not in AREA_SHAPES:  # (a list is no key of AREA_SHAPES)
        raise LabelMeError(f"({label!r}) has unknown shape_type {one_line(repr(kind), 40)}", "malformed shapes dropped")
    points = shape.get("points")
    if not (isinstance(points, list) and all(_is_point(p) for p in points)):
        raise LabelMeError(f"({label!r}) points are not [x, y] numbers", "malformed shapes dropped")
    if len(points) < AREA_SHAPES[kind] or (kind != "polygon" and len(points) != AREA_SHAPES[kind]):
        raise LabelMeError(f"({label!r}) a {kind} with {len(points)} points", "malformed shapes dropped")
    if kind == "circle":
        (cx, cy), (px, py) = ([to_float(v) for v in p] for p in points)
        r = math.hypot(px - cx, py - cy)
        return label, [cx - r, cy - r, cx + r, cy + r]
    xs, ys = [to_float(p[0]) for p in points], [to_float(p[1]) for p in points]
    return label, [min(xs), min(ys), max(xs), max(ys)]


def _is_point(p: object) -> bool:
    return (
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
    )


def image_of(json_path: Path, data: dict) -> Path:
    """The image file a LabelMe file names, relative to the file's folder."""
    return json_path.parent / PureWindowsPath(data["imagePath"]).as_posix()


def image_size(data: dict, image: Path) -> tuple[int, int]:
    """(width, height) as the file gives them when they are positive whole numbers, else the header's."""
    w, h = data.get("imageWidth"), data.get("imageHeight")
    if all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1e9 for v in (w, h)):
        return w, h
    return header_size(image)


class LabelMeDataset(DetectionDataset):
    """A folder of LabelMe files.

    Args:
        name: the split's name.
        folder: where the JSON files are (searched recursively).
        root: the dataset's root: images outside it are not read (default: the folder).
        classes: class names in label order.
        metric: the default evaluation metric.
    """

    def __init__(
        self,
        name: str,
        folder: str | Path,
        classes: Sequence[str],
        root: str | Path | None = None,
        metric: str = "voc",
    ) -> None:
        super().__init__(name, classes, metric)
        self.folder = Path(folder)
        self.root = Path(root if root is not None else folder).resolve()

    def json_files(self) -> list[Path]:
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.name}: LabelMe folder not found: {self.folder}")
        return sorted(p for p in self.folder.rglob("*.json") if is_file(p))

    def label_names(self) -> tuple[str, ...]:
        """Every label of a shape with a box in the folder's files, sorted, the reserved ones left out;
        files and shapes that cannot be read are passed over here."""
        names = set()
        for path in self.json_files():
            try:
                shapes = read_labelme_json(path)["shapes"]
            except LabelMeError:
                continue
            for shape in shapes:
                try:
                    names.add(shape_box(shape)[0])
                except LabelMeError:
                    continue
        return tuple(sorted(names - set(RESERVED_LABELS)))

    def _load_records(self) -> list[ImageRecord]:
        records = []
        for path in self.json_files():
            try:
                records.append(self._record(path))
            except LabelMeError as e:
                self.issues.append(DataIssue(str(path), e.args[0], "skipped", e.args[1]))
        return records

    def _record(self, path: Path) -> ImageRecord:
        data = read_labelme_json(path)
        image = image_of(path, data)
        if not stays_inside(self.root, image):
            raise LabelMeError(
                f"image {one_line(image, 120)} leaves the dataset root {self.root}", "path leaves the dataset root"
            )
        if not is_file(image) and data.get("imageData"):
            raise LabelMeError(
                "image only embedded in the file (imageData): export it to a file", "images only embedded"
            )
        width, height = image_size(data, image)
        boxes, labels, difficult = self._objects(path, data["shapes"], width, height)
        return ImageRecord(
            id=path.relative_to(self.folder).with_suffix("").as_posix(),
            path=str(image),
            width=width,
            height=height,
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(labels, np.int64),
            difficult=np.asarray(difficult, bool),
            crowd=np.zeros(len(labels), bool),
        )

    def _objects(self, path: Path, shapes: list, width: int, height: int) -> tuple[list, list, list]:
        """Boxes, labels and difficult flags of a file's shapes, a group's shapes joined."""
        index = {name: i + 1 for i, name in enumerate(self.foreground_classes)}
        objects: dict = {}  # (label, group_id or the shape's own number) -> [box, label, difficult]
        for n, shape in enumerate(shapes):
            try:
                name, box = shape_box(shape)
                label = _label(name, index)
                problem = box_problem(box, width, height)
                if problem is not None:
                    raise LabelMeError(f"({name!r}) {problem[0]}", problem[1])
            except LabelMeError as e:
                self.issues.append(DataIssue(str(path), f"shapes[{n}] {e.args[0]}", "dropped", e.args[1]))
                continue
            group = shape.get("group_id")
            grouped = isinstance(group, (int, str)) and not isinstance(group, bool)  # LabelMe's are ints
            key = (name, group) if grouped else (name, "shape", n)
            hard = isinstance(shape.get("flags"), dict) and shape["flags"].get("difficult") is True
            if key in objects:
                old = objects[key][0]
                box = [min(old[0], box[0]), min(old[1], box[1]), max(old[2], box[2]), max(old[3], box[3])]
                hard = hard and objects[key][2]
            objects[key] = [box, label, hard]
        values = list(objects.values())
        return [v[0] for v in values], [v[1] for v in values], [v[2] for v in values]


def _label(name: str, index: dict[str, int]) -> int:
    if name in RESERVED_LABELS:
        raise LabelMeError(f"({name!r}) is LabelMe's reserved label: dropped", f"{name} shapes dropped")
    if name not in index:
        raise LabelMeError(f"({name!r}) of unknown class dropped", "objects of unknown classes dropped")
    return index[name]
