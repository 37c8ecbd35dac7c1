"""YOLO (Ultralytics) labels: `images/<split>/<name>.jpg` beside `labels/<split>/<name>.txt`.

A split is a folder of images (searched recursively, in sorted order), a .txt file listing image
paths one a line (relative paths are relative to the list's folder, as Ultralytics reads its
`./...` lines), or a list of those. An image's label file is its path with the last folder named
`images` replaced by `labels` and the extension by `.txt` (Ultralytics' img2label_paths; an image
under no `images` folder has its .txt beside it). An image without a label file, or with an empty
one, is a negative image: no objects.

A row is `class cx cy w h`, whitespace-separated: class a 0-based index (label = class + 1), the
four numbers normalised to 0..1 by the image's width and height, read from the image's header. A
row of a class and three or more `x y` pairs is a polygon (Ultralytics' segment labels), read as
its bounding box.

Convention: the normalised numbers measure the image as the continuous area [0, W] x [0, H], as
Ultralytics' converters write them from COCO's [x, y, w, h] (cx = x + w / 2): (cx W, cy H, w W, h H)
is BoxMode.CXCYWH, which is XYXY (cx W - w W / 2, cy H - h H / 2, cx W + w W / 2 - 1,
cy H + h H / 2 - 1). The boxes stay floats, with no rounding to whole pixels: a box written from
whole pixels with 6 significant digits (Ultralytics' `%g`) comes back within 0.001 px of them.

Bad rows are dropped, each an issue naming the label file and line: not 5 numbers nor a polygon,
a class outside the names, a number that is not finite, outside 0..1 (Ultralytics' own rule: not
normalised) or a zero width or height, a box wholly outside the image. A label file that cannot be
read skips its image; a split whose images have no label file at all is an error (the labels are
not where they are looked for).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...structures import BoxMode
from ...utils.errors import InputError, one_line
from ...utils.files import is_dir, is_file
from .base import DataIssue, DetectionDataset, ImageRecord
from .label_files import IMAGE_SUFFIXES, box_problem, header_size, line_issue, number, read_text, stays_inside


class YOLOFormatError(InputError):
    """A YOLO split that cannot be read: its folder or list is missing or unreadable, or no image
    of it has a label file."""


def label_path(image: Path) -> Path:
    """Ultralytics' img2label_paths: the last `images` folder becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):  # folders only, never the file name
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def listed_images(source: Path) -> list[Path]:
    """The images of one split source: a folder's image files, sorted, or a .txt list's lines."""
    if is_dir(source):
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and is_file(p))
    if not is_file(source):
        raise FileNotFoundError(f"YOLO split not found: {source} (a folder of images or a .txt list of them)")
    text, why = read_text(source)
    if text is None:
        raise YOLOFormatError(f"{source}: {why}")
    return [source.parent / line.strip() for line in text.splitlines() if line.strip()]


class YOLOFormatDataset(DetectionDataset):
    """A split of YOLO-format data.

    Args:
        name: the split's name.
        root: the dataset's root; images and labels outside it are not read.
        sources: the split's image folders and .txt lists.
        classes: class names in label order, `names[0]` first (label = YOLO class + 1).
        metric: the default evaluation metric.
    """

    def __init__(
        self, name: str, root: str | Path, sources: Sequence[str | Path], classes: Sequence[str], metric: str = "voc"
    ) -> None:
        super().__init__(name, classes, metric)
        self.root = Path(root).resolve()
        self.sources = [Path(s) for s in sources]

    def image_paths(self) -> list[Path]:
        """The split's images, each once, those outside the root left out (an issue each)."""
        images, seen = [], set()
        for source in self.sources:
            for image in listed_images(source):
                if not stays_inside(self.root, image):
                    problem = f"image {one_line(image, 120)} leaves the dataset root {self.root}"
                    self.issues.append(DataIssue(str(source), problem, "skipped", "path leaves the dataset root"))
                elif image.resolve() not in seen:
                    seen.add(image.resolve())
                    images.append(image)
        return images

    def _load_records(self) -> list[ImageRecord]:
        images = self.image_paths()
        if images and not any(is_file(label_path(image)) for image in images):
            example = label_path(images[0])
            raise YOLOFormatError(f"{self.name}: none of its {len(images)} images has a label file (e.g. {example})")
        records = [self._record(image) for image in images]
        return [r for r in records if r is not None]

    def _record(self, image: Path) -> ImageRecord | None:
        """The image's record; None (an issue) when its label file cannot be read."""
        width, height = header_size(image)
        boxes, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        label_file = label_path(image)
        if is_file(label_file) and width > 0:  # an image that cannot be read: the image check says why
            text, why = read_text(label_file) if stays_inside(self.root, label_file) else (None, "")
            if text is None:
                kind = "label files unreadable" if why else "path leaves the dataset root"
                self.issues.append(DataIssue(str(label_file), why or "leaves the dataset root", "skipped", kind))
                return None
            boxes, labels, issues = read_rows(text, label_file, width, height, len(self.foreground_classes))
            self.issues += issues
        return ImageRecord(
            id=image.resolve().relative_to(self.root).as_posix(),
            path=str(image),
            width=width,
            height=height,
            boxes=boxes,
            labels=labels,
            difficult=np.zeros(len(labels), bool),
            crowd=np.zeros(len(labels), bool),
        )


def read_rows(
    text: str, path: Path, width: int, height: int, num_names: int
) -> tuple[np.ndarray, np.ndarray, list[DataIssue]]:
    """The boxes (inclusive XYXY, float32) and labels of a label file's rows, and the rows dropped."""
    boxes, labels, issues = [], [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        found = _row(line.split(), width, height, num_names)
        if isinstance(found[0], str):
            issues.append(line_issue(path, n, *found))
        else:
            boxes.append(found[0])
            labels.append(found[1])
    with np.errstate(over="ignore"):
        array = np.asarray(boxes, np.float32).reshape(-1, 4)
    return array, np.asarray(labels, np.int64), issues


def _row(fields: list[str], width: int, height: int, num_names: int) -> tuple:
    """(box, label) of one row, or (problem, kind) when it is dropped."""
    values = [number(f) for f in fields]
    if None in values or not (len(values) == 5 or (len(values) >= 7 and len(values) % 2 == 1)):
        shown = one_line(" ".join(fields), 80)
        return f"expected 'class cx cy w h' (5 numbers) or a class and x y pairs; got {shown!r}", "malformed rows"
    cls = values[0]
    if not (math.isfinite(cls) and cls.is_integer() and 0 <= cls < num_names):
        return f"class {fields[0]!r} is not one of the {num_names} names (0..{num_names - 1})", (
            "objects of unknown classes dropped"
        )
    if not all(math.isfinite(v) for v in values[1:]):
        return f"non-finite number in {one_line(' '.join(fields), 80)!r}", "non-finite box dropped"
    if not all(0 <= v <= 1 for v in values[1:]):
        return f"numbers outside 0..1 (not normalised) in {one_line(' '.join(fields), 80)!r}", "rows not normalised"
    box = _pixels(values[1:], width, height)
    problem = box_problem(box, width, height)
    return problem if problem is not None else (box, int(cls) + 1)


def _pixels(values: list[float], width: int, height: int) -> list[float]:
    """A row's normalised numbers -> its inclusive XYXY box in pixels."""
    if len(values) == 4:  # cx cy w h
        cx, cy, w, h = values
        return BoxMode.convert([cx * width, cy * height, w * width, h * height], BoxMode.CXCYWH, BoxMode.XYXY)
    xs, ys = values[0::2], values[1::2]  # a polygon: its bounding box, continuous like the rest
    edges = [min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height]
    return BoxMode.convert(edges, BoxMode.XYXY_EXCLUSIVE, BoxMode.XYXY)
