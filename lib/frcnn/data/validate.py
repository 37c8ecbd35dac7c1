"""Checking data before the first step: every image decoded once, every box made sane.

Policy: problems are found here, when the roidb is built, and reported with the file and the
reason. Recoverable ones are fixed and counted (a grayscale, alpha or 16-bit image is converted
when read; a box partly outside the image is clipped; a degenerate, non-finite or outside box, or
an object of an unknown class, is dropped; boxes drawn on a photo turned by its EXIF orientation,
as the annotation's size shows, are moved to its stored pixels). Unrecoverable ones (missing,
empty, corrupt, truncated, not-an-image or tiny images, annotation files that do not parse) skip
the image, unless `strict` makes them errors. Readers (datasets/*) report what they find while parsing as
DataIssues; `check_records` adds the image and box checks and writes the summary.

A decoded image's verdict is cached in JSON by path, size and modification time, so a dataset
is decoded once, not once per run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..utils.errors import InputError
from ..utils.files import atomic_write
from .datasets.base import DataIssue, ImageRecord
from .loader import ImageReadError, read_image
from .orientation import SIDES_SWAPPED, boxes_to_stored, exif_orientation

log = logging.getLogger(__name__)
MIN_IMAGE_SIDE = 16  # a stride-16 feature map needs at least one cell
TURNED_BOXES_MOVED = "boxes of turned photos moved to stored pixels"
_CONVERTED_MODES = {
    "L": "grayscale",
    "LA": "grayscale with alpha",
    "P": "palette",
    "1": "1-bit",
    "RGBA": "alpha channel",
    "I;16": "16-bit",
    "I;16B": "16-bit",
    "I": "32-bit integer",
    "F": "floating point",
    "CMYK": "CMYK",
}


class DataError(InputError):
    """Data that cannot be used: with --strict, any unrecoverable problem; always, an empty split."""


@dataclasses.dataclass
class DataReport:
    """What the check found: kept records, fixes and skips (each a DataIssue)."""

    name: str
    total: int
    kept: list[ImageRecord]
    issues: list[DataIssue]

    @property
    def skipped(self) -> list[DataIssue]:
        return [i for i in self.issues if i.action == "skipped"]

    @property
    def fixed(self) -> list[DataIssue]:
        return [i for i in self.issues if i.action != "skipped"]

    def summary(self) -> str:
        """One line: counts by kind of fix, and the skipped images with their reasons."""
        line = f"data check of {self.name}: {self.total} images"
        if not self.issues:
            return line + ", no problems"
        if self.fixed:
            kinds = Counter(i.kind for i in self.fixed)
            line += "; fixed: " + ", ".join(f"{n} {k}" for k, n in kinds.most_common())
        if self.skipped:
            shown = "; ".join(f"{Path(i.where).name} ({i.problem})" for i in self.skipped[:5])
            more = f"; ... {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            line += f"; skipped {len(self.skipped)} images: {shown}{more}"
        return line

    def write(self, path: Path) -> None:
        """Every issue, one per line, to a text file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [self.summary(), ""] + [f"{i.action}\t{i.where}\t{i.problem}" for i in self.issues]
        path.write_text("\n".join(lines) + "\n")


def inspect_image(path: str) -> tuple[str | None, int, int, str | None, int]:
    """Decode an image fully: (problem or None, width, height, conversion needed or None, EXIF
    orientation)."""
    p = Path(path)
    try:
        if not p.is_file():
            return "missing", 0, 0, None, 1
        if p.stat().st_size == 0:
            return "zero bytes", 0, 0, None, 1
    except (OSError, ValueError) as e:  # a name the file system refuses (too long, a NUL)
        return f"unreadable path ({type(e).__name__})", 0, 0, None, 1
    try:
        with Image.open(p) as im:
            im.load()  # full decode: truncated or corrupt data fails here
            width, height, mode, kind = im.width, im.height, im.mode, im.format
            orientation = exif_orientation(im)
    except UnidentifiedImageError:
        return "not an image", 0, 0, None, 1
    except Image.DecompressionBombError as e:
        return f"too large ({_flat(e)})", 0, 0, None, 1
    except Exception as e:  # noqa: BLE001 - on damaged bytes Pillow's decoders fail in many ways
        return f"corrupt or truncated ({type(e).__name__}: {_flat(e)})", 0, 0, None, 1
    if min(width, height) < MIN_IMAGE_SIDE:
        return f"too small ({width}x{height} pixels)", width, height, None, 1
    problem = _loader_problem(path, width, height)
    if problem:
        return problem, 0, 0, None, 1
    if kind == "PNG" and _png_bit_depth(p) == 16:  # Pillow opens 16-bit colour PNGs as 8-bit RGB
        return None, width, height, "16-bit", orientation
    return None, width, height, _CONVERTED_MODES.get(mode), orientation


def _loader_problem(path: str, width: int, height: int) -> str | None:
    """What keeps the loader's decoder (OpenCV) from reading an image Pillow read, or None: the
    two differ on damaged files (OpenCV's libpng checks what Pillow lets pass)."""
    try:
        image = read_image(path)
    except ImageReadError:
        return "corrupt or truncated (OpenCV, which reads images for training, cannot decode it)"
    if image.shape[:2] != (height, width):
        return f"corrupt (OpenCV reads it as {image.shape[1]}x{image.shape[0]}, Pillow as {width}x{height})"
    return None


def _flat(error: Exception) -> str:
    return " ".join(str(error).split())[:200]


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as f:
        header = f.read(26)  # signature (8), IHDR length and type (8), width, height (8), bit depth
    return header[24] if len(header) == 26 else 8


class ImageCheckCache:
    """Verdicts of inspect_image by (path, size, mtime), in a JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list] = {}
        if path is not None and path.is_file():
            try:
                self.entries = json.loads(path.read_text())
            except (ValueError, OSError):  # damaged: every image is decoded again
                self.entries = {}
            if not isinstance(self.entries, dict):
                self.entries = {}

    @staticmethod
    def _stamp(path: str) -> list:
        try:
            st = os.stat(path)
            return [st.st_size, st.st_mtime_ns]
        except (OSError, ValueError):
            return [-1, -1]

    def get(self, path: str) -> tuple | None:
        entry = self.entries.get(path)
        # [stamp, verdict of 5]; anything else (an older or damaged cache file) is decoded again
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == self._stamp(path):
            verdict = entry[1]
            if isinstance(verdict, list) and len(verdict) == 5:
                return tuple(verdict)
        return None

    def put(self, path: str, verdict: tuple) -> None:
        self.entries[path] = [self._stamp(path), list(verdict)]

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path, "w") as f:
            f.write(json.dumps(self.entries))


def inspect_images(paths: Sequence[str], cache: ImageCheckCache, progress: bool = True) -> dict[str, tuple]:
    """inspect_image for every path, from the cache where it can, in parallel otherwise."""
    verdicts = {p: cache.get(p) for p in dict.fromkeys(paths)}
    todo = [p for p, v in verdicts.items() if v is None]
    if todo:
        workers = min(os.cpu_count() or 1, 8)
        with tqdm(
            total=len(todo),
            desc="checking images",
            unit="img",
            file=sys.stderr,
            disable=not progress or len(todo) < 200,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        ) as bar:
            if workers > 1 and len(todo) >= 256:
                with ProcessPoolExecutor(workers) as pool:
                    for path, verdict in zip(todo, pool.map(inspect_image, todo, chunksize=64)):
                        verdicts[path] = verdict
                        bar.update(1)
            else:
                for path in todo:
                    verdicts[path] = inspect_image(path)
                    bar.update(1)
        for path in todo:
            cache.put(path, verdicts[path])
        cache.save()
    return verdicts


def sanitize_boxes(record: ImageRecord, num_classes: int | None = None) -> tuple[ImageRecord, list[DataIssue]]:
    """Drop non-finite, degenerate and outside boxes and labels outside 1..num_classes-1; clip
    boxes partly outside the image."""
    issues = []
    boxes = record.boxes.astype(np.float32).reshape(-1, 4)
    w, h = record.width, record.height
    finite = np.isfinite(boxes).all(axis=1)
    clipped = boxes.copy()
    with np.errstate(invalid="ignore"):
        clipped[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w - 1)
        clipped[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h - 1)
        degenerate = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        outside = (boxes[:, 0] > w - 1) | (boxes[:, 1] > h - 1) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
        moved = (np.abs(clipped - boxes) > 1e-3).any(axis=1)
    where = record.path
    for kind, mask in (
        ("non-finite box", ~finite),
        ("degenerate box", finite & degenerate),
        ("box outside the image", finite & ~degenerate & outside),
    ):
        for box in boxes[mask]:
            issues.append(DataIssue(where, f"{kind} {np.round(box, 1).tolist()} dropped", "dropped", kind + " dropped"))
    keep = finite & ~degenerate & ~outside
    if num_classes is not None:
        bad_label = (record.labels < 1) | (record.labels >= num_classes)
        for label in record.labels[keep & bad_label]:
            problem = f"object with label {int(label)} outside 1..{num_classes - 1} dropped"
            issues.append(DataIssue(where, problem, "dropped", "objects of unknown classes dropped"))
        keep &= ~bad_label
    again = _repeated(record, clipped, keep)
    for box in boxes[again]:
        problem = f"object {np.round(box, 1).tolist()} given again (same class, same box) dropped"
        issues.append(DataIssue(where, problem, "dropped", "duplicate objects dropped"))
    keep &= ~again
    for box in boxes[keep & moved]:
        issues.append(
            DataIssue(where, f"box {np.round(box, 1).tolist()} clipped to the {w}x{h} image", "fixed", "box clipped")
        )
    return record.objects(keep, boxes=clipped[keep]), issues


def _repeated(record: ImageRecord, clipped: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Kept objects equal to an earlier kept one: same label, box (once clipped) and flags. The VOC
    devkit can match only one of them (the other is a miss whatever is detected), so they go."""
    flags = [f if f.size == len(keep) else np.zeros(len(keep), bool) for f in (record.difficult, record.crowd)]
    seen, again = set(), np.zeros(len(keep), bool)
    for i in np.flatnonzero(keep):
        key = (int(record.labels[i]), *clipped[i].tolist(), bool(flags[0][i]), bool(flags[1][i]))
        again[i] = key in seen
        seen.add(key)
    return again


def check_records(
    name: str,
    records: Sequence[ImageRecord],
    reader_issues: Iterable[DataIssue] = (),
    strict: bool = False,
    cache_file: Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
) -> DataReport:
    """Check every image and box (and labels, given num_classes); returns the usable records and
    everything found.

    Raises DataError if nothing usable is left, or if `strict` and anything was skipped.
    """
    reader_issues = list(reader_issues)
    issues = list(reader_issues)
    verdicts = inspect_images([r.path for r in records], ImageCheckCache(cache_file), progress)
    kept = []
    for record in records:
        record, record_issues = _checked(record, verdicts[record.path], num_classes)
        issues += record_issues
        if record is not None:
            kept.append(record)
    _warn_orientation(kept, verdicts, issues)
    report = DataReport(name, len(records) + sum(1 for i in reader_issues if i.action == "skipped"), kept, issues)
    if not kept:
        raise DataError(f"{name}: no usable images ({report.summary()})")
    if strict and report.skipped:
        raise DataError(f"--strict: {report.summary()}")
    return report


def _checked(
    record: ImageRecord, verdict: tuple, num_classes: int | None
) -> tuple[ImageRecord | None, list[DataIssue]]:
    """One record against its image's verdict: None if the image is skipped, else the record
    with its size, orientation and boxes made right, and what was done."""
    problem, width, height, conversion, orientation = verdict
    if problem:
        return None, [DataIssue(record.path, problem, "skipped", problem.split(" (")[0])]
    issues = []
    if conversion:
        problem = f"{conversion} image converted to 8-bit RGB when read"
        issues.append(DataIssue(record.path, problem, "fixed", f"{conversion} images converted"))
    if orientation in SIDES_SWAPPED and width != height and (record.width, record.height) == (height, width):
        # the annotation's size is the turned picture's: the boxes were drawn on it as shown
        boxes = boxes_to_stored(record.boxes, orientation, width, height)
        record = dataclasses.replace(record, width=width, height=height, boxes=boxes)
        problem = f"boxes drawn on the picture turned by its EXIF orientation {orientation}, moved to its stored pixels"
        issues.append(DataIssue(record.path, problem, "fixed", TURNED_BOXES_MOVED))
    if (width, height) != (record.width, record.height):
        problem = f"annotation says {record.width}x{record.height}, image is {width}x{height}"
        issues.append(DataIssue(record.path, problem, "fixed", "image sizes corrected"))
        record = dataclasses.replace(record, width=width, height=height)
    record, box_issues = sanitize_boxes(record, num_classes)
    return record, issues + box_issues


def _warn_orientation(kept: Sequence[ImageRecord], verdicts: dict[str, tuple], issues: list[DataIssue]) -> None:
    """Say once when kept images carry an EXIF orientation their boxes were not seen to follow."""
    moved = {i.where for i in issues if i.kind == TURNED_BOXES_MOVED}
    tagged = [r.path for r in kept if verdicts[r.path][4] != 1 and r.path not in moved]
    if tagged:
        log.warning(
            "%d images carry an EXIF orientation (e.g. %s): they are read as stored and their boxes "
            "taken in stored pixels. If the labelling tool showed them turned, turn the image files "
            "on disk to match (PIL.ImageOps.exif_transpose does).",
            len(tagged),
            tagged[0],
        )


def check_dataset(
    name: str,
    records: Sequence[ImageRecord],
    reader_issues: Iterable[DataIssue],
    num_classes: int,
    data_dir: str | Path,
    details_file: Path | None,
    strict: bool = False,
    main: bool = True,
) -> DataReport:
    """check_records as training and evaluation run it: verdicts cached under data_dir/cache,
    the summary logged, and every issue written to details_file (by the main process only)."""
    cache = Path(data_dir) / "cache" / "image_check.json"
    report = check_records(name, records, reader_issues, strict, cache, progress=main, num_classes=num_classes)
    log.info("%s", report.summary())
    if main and report.issues and details_file is not None:
        report.write(details_file)
        log.info("every problem found: %s", details_file)
    return report
