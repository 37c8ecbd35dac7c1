"""Writers of tiny datasets in the label-file formats (YOLO, LabelMe, CSV), each after the convention
its reader states, and images drawn with cv2 whose boxes are known to the pixel.

Samples are (BGR image, [(class name, inclusive 0-based box [x1, y1, x2, y2])]).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from frcnn.structures import BoxMode

CLASSES = ("cat", "dog", "bird")


def drawn_samples() -> list[tuple[np.ndarray, list[tuple[str, list[int]]]]]:
    """Four images of odd sizes: filled rectangles on noise, one box reaching the far corner, one
    image without objects."""
    rng = np.random.default_rng(7)
    layouts = [
        ((131, 97), [("cat", [3, 4, 40, 30]), ("dog", [50, 60, 130, 96]), ("bird", [70, 5, 71, 6])]),
        ((64, 80), []),
        ((150, 101), [("dog", [0, 0, 9, 9]), ("dog", [20, 33, 88, 70]), ("cat", [100, 10, 149, 100])]),
        ((77, 123), [("bird", [10, 11, 66, 119])]),
    ]
    samples = []
    for (width, height), objects in layouts:
        image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        for n, (_, (x1, y1, x2, y2)) in enumerate(objects):
            cv2.rectangle(image, (x1, y1), (x2, y2), (80 + 50 * n, 200, 255 - 40 * n), thickness=-1)  # pixels x1..x2
        samples.append((image, objects))
    return samples


def write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def write_yolo(root: Path, split: str, samples: list, classes=CLASSES, names: list[str] | None = None) -> list[str]:
    """images/<split>/<name>.png and labels/<split>/<name>.txt, numbers as Ultralytics writes them (%g)."""
    names = names or [f"sample_{i:03d}" for i in range(len(samples))]
    for name, (image, objects) in zip(names, samples):
        write_image(root / "images" / split / f"{name}.png", image)
        height, width = image.shape[:2]
        rows = []
        for cls, box in objects:
            cx, cy, w, h = BoxMode.convert([float(v) for v in box], BoxMode.XYXY, BoxMode.CXCYWH)
            numbers = (classes.index(cls), cx / width, cy / height, w / width, h / height)
            rows.append(("%g " * 5).rstrip() % numbers)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split / f"{name}.txt").write_text("".join(r + "\n" for r in rows))
    return names


def labelme_shape(label: str, box: list[int], polygon: bool = False) -> dict:
    """A LabelMe shape over an inclusive box: its corners on the continuous image (x2 + 1)."""
    x1, y1, x2, y2 = BoxMode.convert([float(v) for v in box], BoxMode.XYXY, BoxMode.XYXY_EXCLUSIVE)
    points = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]] if polygon else [[x1, y1], [x2, y2]]
    kind = "polygon" if polygon else "rectangle"
    return {"label": label, "points": points, "group_id": None, "shape_type": kind, "flags": {}}


def write_labelme_file(path: Path, image_path: str, width: int, height: int, shapes: list) -> None:
    data = {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": height,
        "imageWidth": width,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def write_labelme(folder: Path, samples: list) -> None:
    """<name>.png and <name>.json side by side (as LabelMe saves them); every second object a polygon."""
    for i, (image, objects) in enumerate(samples):
        write_image(folder / f"sample_{i:03d}.png", image)
        shapes = [labelme_shape(cls, box, polygon=n % 2 == 1) for n, (cls, box) in enumerate(objects)]
        write_labelme_file(folder / f"sample_{i:03d}.json", f"sample_{i:03d}.png", *image.shape[1::-1], shapes)


def write_csv(path: Path, image_dir: Path, samples: list, header: bool = True) -> None:
    """One row a box, xmax and ymax exclusive (DeepForest's convention); `name,,,,,` for an image
    without objects."""
    rows = ["image_path,xmin,ymin,xmax,ymax,label"] if header else []
    for i, (image, objects) in enumerate(samples):
        name = f"sample_{i:03d}.png"
        write_image(image_dir / name, image)
        for cls, box in objects:
            x1, y1, x2, y2 = BoxMode.convert(list(box), BoxMode.XYXY, BoxMode.XYXY_EXCLUSIVE)
            rows.append(f"{name},{x1},{y1},{x2},{y2},{cls}")
        if not objects:
            rows.append(f"{name},,,,,")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
