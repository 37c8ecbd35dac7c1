"""What the readers of label files (yolo.py, labelme.py, csv_boxes.py) share.

- `header_size`: an image's size read from its header (Pillow reads no pixels), for formats
  that give none (YOLO, CSV) or may give a wrong one (LabelMe).
- `box_problem`: the check of one row's box (inclusive XYXY) that lets a reader name the file
  and line of a bad row: a coordinate that is not a finite number, a box with no pixel (its
  far side before its near one) or one wholly outside the image is dropped there, with the
  kinds data/validate.py gives the same problems. A box partly outside the image is kept: the
  data check clips it and counts the fix.
- `line_issue`: a DataIssue whose `where` is `file:line`.
- `stays_inside`: utils/files.is_inside for a path read from a label file, False (not an
  exception) for a name no file can have.
- `read_text`: a label file's text, or why it cannot be read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ...utils.errors import one_line
from ...utils.files import is_inside
from .base import DataIssue

IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})


def header_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the image's header, or (0, 0) when it cannot be read (the image check
    in data/validate.py then skips the image and says why)."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 - any unreadable file is the image check's to report
        return 0, 0


def number(text: str) -> float | None:
    """The number a field holds (NaN and infinities included: box_problem names them), or None."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def box_problem(box: Sequence[float], width: int, height: int) -> tuple[str, str] | None:
    """(problem, kind) of an inclusive XYXY box in a width x height image, or None when the box
    can be used. A size of 0 (an image that cannot be read) checks no position."""
    shown = [round(float(v), 1) for v in box]
    if not all(math.isfinite(v) for v in box):
        return f"non-finite box {shown} dropped", "non-finite box dropped"
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        return f"degenerate box {shown} (no pixel) dropped", "degenerate box dropped"
    if width > 0 and height > 0 and (x1 > width - 1 or y1 > height - 1 or x2 < 0 or y2 < 0):
        return f"box {shown} outside the {width}x{height} image dropped", "box outside the image dropped"
    return None


def stays_inside(root: Path, path: Path) -> bool:
    """Whether a path from a label file lies inside the dataset root; False for a name no file can
    have (a NUL, an unpaired surrogate), which a resolve would raise on."""
    try:
        return "\x00" not in str(path) and is_inside(root, path)
    except (OSError, ValueError):
        return False


def to_float(value: int | float) -> float:
    """float(value); an integer too large for a float is infinite (box_problem names it)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def line_issue(path: str | Path, line: int, problem: str, kind: str, action: str = "dropped") -> DataIssue:
    """An issue of one line of a label file, where = `file:line`."""
    return DataIssue(f"{path}:{line}", problem, action, kind)


def read_text(path: Path) -> tuple[str | None, str]:
    """(text, "") of a UTF-8 label file (a byte-order mark is dropped), or (None, why not)."""
    try:
        return path.read_bytes().decode("utf-8-sig"), ""
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text ({e.reason} at byte {e.start})"
    except (OSError, ValueError) as e:  # ValueError: a name the file system refuses
        return None, f"not readable ({type(e).__name__}: {one_line(e, 120)})"
