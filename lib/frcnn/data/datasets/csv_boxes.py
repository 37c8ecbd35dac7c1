"""CSV boxes: one object a row, `image_path,xmin,ymin,xmax,ymax,label` (DeepForest's and
keras-retinanet's format).

Convention: xmax and ymax are exclusive, the box's far edges on the image taken as the continuous
area [0, W] x [0, H]: a box over pixels 0..9 is 0,0,10,10 (BoxMode.XYXY_EXCLUSIVE; the record's
inclusive x2 is xmax - 1). DeepForest's own data says so: its OSBS_029.csv has boxes reaching
xmax = 400 and ymax = 400 on its 400 x 400 image, and its training data check refuses
xmax > width (not >= width), clamps boxes to [0, W] and measures a width as xmax - xmin.

Header: optional. A first row whose four coordinate fields are all text, none a number, is a
header; when it names the columns (image_path / xmin ymin xmax ymax / label, or keras-retinanet's
path x1 y1 x2 y2 class_name), they are found by name and other columns are passed over (DeepForest
files with more columns read), else they are taken by position.

A row with its four coordinate fields empty (keras-retinanet's `path/to/image.jpg,,,,,`) or all 0
(DeepForest's code for an empty frame) lists an image without objects: a negative image. Image
paths are relative to the image folder (default: the CSV's folder); an image's rows may be
anywhere in the file, and the images keep the order in which the file first names them.

Bad rows are dropped, each an issue naming the file and line: too few fields, no image path,
coordinates that are not numbers or only some of them empty, a box without a label or of a class
not among the classes, a non-finite box, one without a pixel (xmax <= xmin) or wholly outside the
image. An image whose path leaves the dataset root is skipped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ...structures import BoxMode
from ...utils.errors import InputError, one_line
from ...utils.files import is_file
from .base import DetectionDataset, ImageRecord
from .label_files import box_problem, header_size, line_issue, number, read_text, stays_inside

# The names a header may give each column, in the order of a row: image, xmin, ymin, xmax, ymax, label.
COLUMN_NAMES = (
    ("image_path", "image", "path", "filename", "file_name", "image_name"),
    ("xmin", "x1", "x_min"),
    ("ymin", "y1", "y_min"),
    ("xmax", "x2", "x_max"),
    ("ymax", "y2", "y_max"),
    ("label", "class", "class_name", "name", "category"),
)
POSITIONS = (0, 1, 2, 3, 4, 5)


class CSVFormatError(InputError):
    """A CSV file that cannot be read as a whole."""


def header_columns(first: list[str]) -> tuple[int, ...] | None:
    """The column of each field when `first` is a header row, else None (`first` is a row of data)."""
    names = [field.strip().lower() for field in first]
    if len(names) < 5 or any(not name or number(name) is not None for name in names[1:5]):
        return None
    found = [next((names.index(a) for a in aliases if a in names), None) for aliases in COLUMN_NAMES]
    return POSITIONS if None in found else tuple(found)


def csv_rows(path: Path) -> Iterator[tuple[int, list[str], tuple[int, ...]]]:
    """(line, fields, columns) of every non-blank data row; CSVFormatError when the file cannot be read."""
    if not is_file(path):
        raise FileNotFoundError(f"CSV file not found: {path}")
    text, why = read_text(path)
    if text is None:
        raise CSVFormatError(f"{path}: {why}")
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = None
    try:
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if columns is None:
                columns = header_columns(fields)
                if columns is not None:
                    continue
                columns = POSITIONS
            yield reader.line_num, fields, columns
    except csv.Error as e:
        raise CSVFormatError(f"{path}, line {reader.line_num}: not CSV ({one_line(e, 120)})") from None


def parse_row(fields: list[str], columns: tuple[int, ...]) -> tuple:
    """("box", image, exclusive box, label), ("negative", image) or ("bad", problem, kind)."""
    if len(fields) <= max(columns):
        shown = one_line(",".join(fields), 80)
        return "bad", f"expected image_path,xmin,ymin,xmax,ymax,label; got {shown!r}", "malformed rows"
    image, *coords, label = (fields[c].strip() for c in columns)
    if not image:
        return "bad", "no image path", "malformed rows"
    if all(c == "" for c in coords) or all(number(c) == 0 for c in coords):
        return "negative", image
    values = [number(c) for c in coords]
    if None in values:
        return "bad", f"coordinates {coords} are not all numbers", "malformed rows"
    if not label:
        return "bad", f"box {coords} has no label", "malformed rows"
    return "box", image, values, label


class CSVFormatDataset(DetectionDataset):
    """A CSV file of boxes and its folder of images.

    Args:
        name: the split's name.
        csv_file: the CSV file.
        classes: class names in label order.
        image_dir: what image paths are relative to (default: the CSV's folder).
        root: the dataset's root: images outside it are not read (default: image_dir).
        metric: the default evaluation metric.
    """

    def __init__(
        self,
        name: str,
        csv_file: str | Path,
        classes: Sequence[str],
        image_dir: str | Path | None = None,
        root: str | Path | None = None,
        metric: str = "voc",
    ) -> None:
        super().__init__(name, classes, metric)
        self.csv_file = Path(csv_file)
        self.image_dir = Path(image_dir) if image_dir is not None else self.csv_file.parent
        self.root = Path(root if root is not None else self.image_dir).resolve()

    def label_names(self) -> tuple[str, ...]:
        """Every label of a box row, sorted (the classes of a CSV that does not come with them)."""
        rows = (parse_row(fields, columns) for _, fields, columns in csv_rows(self.csv_file))
        return tuple(sorted({row[3] for row in rows if row[0] == "box"}))

    def _load_records(self) -> list[ImageRecord]:
        index = {name: i + 1 for i, name in enumerate(self.foreground_classes)}
        objects: dict[str, list] = {}  # image path as written -> [(box, label)], in the file's order
        sizes: dict[str, tuple[int, int]] = {}
        skipped: set[str] = set()
        for line, fields, columns in csv_rows(self.csv_file):
            row = parse_row(fields, columns)
            if row[0] == "bad":
                self.issues.append(line_issue(self.csv_file, line, row[1], row[2]))
                continue
            image = row[1]
            if image in skipped or (image not in objects and not self._usable(image, line, skipped)):
                continue
            if image not in objects:
                objects[image], sizes[image] = [], header_size(self.image_dir / image)
            if row[0] == "box":
                found = self._object(row, index, sizes[image])
                if isinstance(found[0], str):
                    self.issues.append(line_issue(self.csv_file, line, *found))
                else:
                    objects[image].append(found)
        return [self._record(image, objects[image], sizes[image]) for image in objects]

    def _usable(self, image: str, line: int, skipped: set[str]) -> bool:
        """Whether an image path first named on `line` stays inside the root; else an issue, once."""
        if stays_inside(self.root, self.image_dir / image):
            return True
        skipped.add(image)
        problem = f"image {one_line(repr(image), 120)} leaves the dataset root {self.root}"
        self.issues.append(line_issue(self.csv_file, line, problem, "path leaves the dataset root", "skipped"))
        return False

    @staticmethod
    def _object(row: tuple, index: dict[str, int], size: tuple[int, int]) -> tuple:
        """(inclusive box, label) of a box row, or (problem, kind)."""
        _, _, exclusive, name = row
        if name not in index:
            return f"object of unknown class {one_line(repr(name), 60)} dropped", "objects of unknown classes dropped"
        box = BoxMode.convert(exclusive, BoxMode.XYXY_EXCLUSIVE, BoxMode.XYXY)
        problem = box_problem(box, *size)
        return problem if problem is not None else (box, index[name])

    def _record(self, image: str, objects: list, size: tuple[int, int]) -> ImageRecord:
        with np.errstate(over="ignore"):
            boxes = np.asarray([box for box, _ in objects], np.float32).reshape(-1, 4)
        return ImageRecord(
            id=image,
            path=str(self.image_dir / image),
            width=size[0],
            height=size[1],
            boxes=boxes,
            labels=np.asarray([label for _, label in objects], np.int64),
            difficult=np.zeros(len(objects), bool),
            crowd=np.zeros(len(objects), bool),
        )
