"""The built-in dataset: synthetic shapes, generated deterministically in the VOC layout.

`--dataset shapes` writes data/shapes/{JPEGImages, Annotations, ImageSets/Main/{trainval,test}.txt}
on first use, so the VOC reader and evaluator read it like any VOC-format data.

What makes it a detection problem rather than a colour threshold:
- 7 classes told apart by outline only (circle, square, triangle, star, cross, ring, crescent);
  every object's colour, texture and rotation are random, drawn from the same distribution as the
  background's;
- backgrounds of gradients, multi-scale noise and sensor noise, with distractors (line segments,
  scribbles, elongated ellipses, letters) under and over the objects;
- image sizes from 192 to 640 pixels a side, aspect ratios (w / h) from 1:2 to 2:1;
- 0 to 6 objects per image (about 6% of images have none), allowed to overlap; most span 10% to
  55% of the shorter image side, about one in eight is 10 to 20 pixels across; objects under 16
  pixels on their shorter side, or less than 60% visible, are marked difficult (the VOC metric
  ignores them).
Each image is drawn from its own seeded generator, so the data is the same on every machine and
does not depend on the order images are made in.
"""

from __future__ import annotations

import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from ...utils.files import atomic_write
from .pascal_voc import VOCFormatDataset, write_voc_annotation

SHAPES_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring", "crescent")
GENERATOR_VERSION = 2
DEFAULT_SIZES = {"trainval": 1200, "test": 300}
SPLIT_SEEDS = {"trainval": 1_000_000, "test": 2_000_000}
TINY_OBJECT_SHARE = 0.12  # objects 10-20 pixels across, mostly difficult; the rest span 10-55% of the shorter side
DIFFICULT_MIN_SIDE = 16
DIFFICULT_MIN_VISIBLE = 0.6
LETTERS = "ABEFGHJKLMNPRSTUVWYZ"
_SUBPIXEL = 4  # cv2 drawing shift: coordinates in 1/16 pixel


class ShapesDataset(VOCFormatDataset):
    """A split of the shapes dataset under `root`, generated there first if missing.

    Args:
        split: trainval or test.
        root: the dataset folder (default data/shapes).
        sizes: images per split to generate; None takes DEFAULT_SIZES for a new dataset and
            whatever complete dataset is already there otherwise (tests make small ones).
    """

    def __init__(self, split: str, root: str | Path = "data/shapes", sizes: dict[str, int] | None = None) -> None:
        if split not in SPLIT_SEEDS:
            raise ValueError(f"shapes has splits {tuple(SPLIT_SEEDS)}; got {split!r}")
        super().__init__(f"shapes_{split}", root, split, SHAPES_CLASSES, metric="voc")
        self.sizes = sizes

    def _load_records(self):
        ensure_generated(self.root, self.sizes)
        return super()._load_records()


def ensure_generated(root: str | Path, sizes: dict[str, int] | None = None, progress: bool = True) -> dict[str, int]:
    """Generate the dataset under `root` unless a complete copy is there (of `sizes`, when given).

    Returns the sizes of the dataset on disk. A marker file written last makes an interrupted
    generation start again.
    """
    root = Path(root)
    marker = root / "COMPLETE.json"
    found = json.loads(marker.read_text()) if marker.is_file() else None
    if found and found.get("version") == GENERATOR_VERSION and (sizes is None or found.get("sizes") == sizes):
        return found["sizes"]
    sizes = dict(sizes or DEFAULT_SIZES)
    if marker.is_file():
        marker.unlink()
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(split, i) for split, count in sizes.items() for i in range(count)]
    with tqdm(
        total=len(jobs),
        desc=f"generating shapes in {root}",
        unit="img",
        file=sys.stderr,
        disable=not progress,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    ) as bar:
        processes = min(os.cpu_count() or 1, 8) if len(jobs) >= 64 else 1
        if processes > 1:
            chunks = [jobs[i : i + 16] for i in range(0, len(jobs), 16)]
            with ProcessPoolExecutor(processes) as pool:
                for done in pool.map(_write_chunk, [root] * len(chunks), chunks):
                    bar.update(done)
        else:
            bar.update(_write_chunk(root, jobs))
    for split, count in sizes.items():
        ids = [f"{split}_{i:05d}" for i in range(count)]
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    with atomic_write(marker, "w") as f:
        f.write(json.dumps({"version": GENERATOR_VERSION, "sizes": sizes}))
    return sizes


def _write_chunk(root: Path, jobs: list[tuple[str, int]]) -> int:
    for split, i in jobs:
        write_image(root, f"{split}_{i:05d}", SPLIT_SEEDS[split] + i)
    return len(jobs)


def write_image(root: Path, image_id: str, seed: int) -> None:
    image, objects = render(np.random.default_rng(seed))
    cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    write_voc_annotation(
        root / "Annotations" / f"{image_id}.xml", f"{image_id}.jpg", image.shape[1], image.shape[0], objects
    )


def render(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[str, list[float], bool]]]:
    """One RGB uint8 image and its objects (class, 0-based inclusive box, difficult)."""
    ratio = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))  # w / h
    short = int(rng.integers(192, 321))
    width, height = (round(short * ratio), short) if ratio >= 1 else (short, round(short / ratio))
    image = _background(rng, height, width)
    for _ in range(int(rng.integers(2, 7))):
        _distractor(rng, image, thin=False)
    num_objects = 0 if rng.random() < 0.06 else int(rng.integers(1, 7))
    placed: list[tuple[str, np.ndarray, np.ndarray]] = []  # (class, mask, box)
    for _ in range(num_objects):
        obj = _place_object(rng, image, placed)
        if obj is not None:
            placed.append(obj)
    for _ in range(int(rng.integers(0, 3))):
        _distractor(rng, image, thin=True)
    image = np.clip(image + rng.normal(0, rng.uniform(3, 10), image.shape), 0, 255).astype(np.uint8)

    covered = np.zeros((height, width), dtype=np.float32)
    objects = []
    for name, mask, box in reversed(placed):  # later objects lie on top of earlier ones
        visible = float((mask * (1 - covered)).sum() / max(mask.sum(), 1e-6))
        covered = np.maximum(covered, mask)
        small = min(box[2] - box[0] + 1, box[3] - box[1] + 1) < DIFFICULT_MIN_SIDE
        objects.append((name, box.tolist(), bool(small or visible < DIFFICULT_MIN_VISIBLE)))
    return image, objects[::-1]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / max(height, width)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = c0 * (1 - t[..., None]) + c1 * t[..., None]
    for cells, amplitude in ((4, 50), (16, 30), (48, 14)):  # multi-scale value noise
        noise = rng.normal(0, 1, (cells, max(2, cells * width // height), 3)).astype(np.float32)
        image += amplitude * rng.uniform(0.3, 1.0) * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0, 255).astype(np.float32)


def _random_colour(rng: np.random.Generator, avoid: np.ndarray | None = None) -> np.ndarray:
    colour = rng.uniform(0, 255, 3)
    for _ in range(10):
        if avoid is None or np.abs(colour - avoid).sum() > 120:
            break
        colour = rng.uniform(0, 255, 3)
    return colour


def _fill(rng: np.random.Generator, height: int, width: int, colour: np.ndarray) -> np.ndarray:
    """A colour field for an object: flat, gradient or stripes, with a little noise."""
    kind = rng.integers(3)
    if kind == 0:
        field = np.broadcast_to(colour, (height, width, 3)).astype(np.float32)
    else:
        other = np.clip(colour + rng.uniform(-70, 70, 3), 0, 255)
        angle = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        t = (
            (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
            if kind == 1
            else (np.sin(t / rng.uniform(2, 5)) + 1) / 2
        )
        field = colour * (1 - t[..., None]) + other * t[..., None]
    return field + rng.normal(0, 4, (height, width, 3))


def _polygon_mask(height: int, width: int, points: np.ndarray) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(points * (1 << _SUBPIXEL)).astype(np.int32)], 255, cv2.LINE_AA, _SUBPIXEL)
    return mask


def _disc_mask(
    height: int, width: int, cx: float, cy: float, r: float, value: int = 255, mask: np.ndarray | None = None
) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8) if mask is None else mask
    s = 1 << _SUBPIXEL
    cv2.circle(mask, (round(cx * s), round(cy * s)), round(r * s), value, -1, cv2.LINE_AA, _SUBPIXEL)
    return mask


def _regular(cx: float, cy: float, radii: list[float], angle: float) -> np.ndarray:
    n = len(radii)
    a = angle + np.arange(n) * 2 * math.pi / n
    r = np.asarray(radii)
    return np.stack((cx + r * np.cos(a), cy + r * np.sin(a)), axis=1)


def _shape_mask(
    rng: np.random.Generator, name: str, height: int, width: int, cx: float, cy: float, r: float
) -> np.ndarray:
    """Mask (0..255) of a shape of circumradius r centred at (cx, cy)."""
    angle = rng.uniform(0, 2 * math.pi)
    if name == "circle":
        return _disc_mask(height, width, cx, cy, r)
    if name == "square":
        return _polygon_mask(height, width, _regular(cx, cy, [r] * 4, angle))
    if name == "triangle":
        return _polygon_mask(height, width, _regular(cx, cy, [r] * 3, angle))
    if name == "star":
        return _polygon_mask(height, width, _regular(cx, cy, [r, 0.42 * r] * 5, angle))
    if name == "cross":
        arm = rng.uniform(0.28, 0.4) * r
        unit = np.array(
            [
                [arm, r],
                [arm, arm],
                [r, arm],
                [r, -arm],
                [arm, -arm],
                [arm, -r],
                [-arm, -r],
                [-arm, -arm],
                [-r, -arm],
                [-r, arm],
                [-arm, arm],
                [-arm, r],
            ]
        )
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        return _polygon_mask(height, width, unit @ rot.T + [cx, cy])
    if name == "ring":
        mask = _disc_mask(height, width, cx, cy, r)
        return _disc_mask(height, width, cx, cy, r * rng.uniform(0.5, 0.7), value=0, mask=mask)
    if name == "crescent":
        mask = _disc_mask(height, width, cx, cy, r)
        off = r * rng.uniform(0.4, 0.55)
        return _disc_mask(
            height, width, cx + off * math.cos(angle), cy + off * math.sin(angle), r * 0.9, value=0, mask=mask
        )
    raise ValueError(name)


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda x: (x[2] - x[0] + 1) * (x[3] - x[1] + 1)  # noqa: E731
    return float(inter / (area(a) + area(b) - inter))


def _place_object(
    rng: np.random.Generator, image: np.ndarray, placed: list
) -> tuple[str, np.ndarray, np.ndarray] | None:
    height, width = image.shape[:2]
    name = SHAPES_CLASSES[int(rng.integers(len(SHAPES_CLASSES)))]
    tiny = rng.random() < TINY_OBJECT_SHARE
    for _ in range(20):
        short = min(height, width)
        diameter = rng.uniform(10, 20) if tiny else short * rng.uniform(0.1, 0.55)
        r = diameter / 2
        cx, cy = rng.uniform(r * 0.6, width - r * 0.6), rng.uniform(r * 0.6, height - r * 0.6)
        mask = _shape_mask(rng, name, height, width, cx, cy, r)
        ys, xs = np.nonzero(mask > 127)
        if xs.size < 9:
            continue
        box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)
        if any(_box_iou(box, other) > 0.35 for _, _, other in placed):
            continue
        x, y, w, h = cv2.boundingRect(mask)
        under = image[y : y + h, x : x + w][mask[y : y + h, x : x + w] > 127].mean(axis=0)
        colour = _random_colour(rng, avoid=under)
        _blend(image, mask, lambda hh, ww, colour=colour: _fill(rng, hh, ww, colour))  # called before the loop moves on
        alpha = mask.astype(np.float32) / 255.0
        return name, alpha, box
    return None


def _distractor(rng: np.random.Generator, image: np.ndarray, thin: bool) -> None:
    height, width = image.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    kind = rng.integers(2) if thin else rng.integers(4)
    pt = lambda: (int(rng.integers(0, width)), int(rng.integers(0, height)))  # noqa: E731
    if kind == 0:  # line segment
        cv2.line(mask, pt(), pt(), 255, int(rng.integers(1, 3 if thin else 6)), cv2.LINE_AA)
    elif kind == 1:  # scribble
        points = np.cumsum(rng.normal(0, min(height, width) / 10, (int(rng.integers(3, 8)), 2)), axis=0) + pt()
        cv2.polylines(mask, [points.astype(np.int32)], False, 255, int(rng.integers(1, 4)), cv2.LINE_AA)
    elif kind == 2:  # elongated ellipse, never round enough to pass for a circle
        major = rng.uniform(10, min(height, width) / 3)
        cv2.ellipse(
            mask,
            pt(),
            (int(major), int(major / rng.uniform(2.5, 5))),
            rng.uniform(0, 180),
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
        )
    else:  # letters, without those that look like a class (O Q C D: ring or crescent; X: cross)
        text = "".join(LETTERS[int(i)] for i in rng.integers(0, len(LETTERS), int(rng.integers(1, 4))))
        cv2.putText(
            mask, text, pt(), cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.5, 1.5), 255, int(rng.integers(1, 3)), cv2.LINE_AA
        )
    colour = rng.uniform(0, 255, 3)
    _blend(image, mask, lambda h, w: colour)


def _blend(image: np.ndarray, mask: np.ndarray, field: Callable[[int, int], np.ndarray]) -> None:
    """image = image * (1 - a) + field * a with a = mask / 255, inside the mask's bounding box only."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    alpha = mask[y : y + h, x : x + w].astype(np.float32)[..., None] / 255.0
    window = image[y : y + h, x : x + w]
    window[:] = window * (1 - alpha) + field(h, w) * alpha
