"""Drawing detections on images: boxes, class names and scores."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np


def class_colour(label: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per class (golden-ratio hue steps)."""
    hue = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    thresh: float = 0.0,
) -> tuple[np.ndarray, int]:
    """A copy of RGB `image` with every detection scoring >= thresh drawn; returns it and the count."""
    out = np.ascontiguousarray(image.copy())
    thickness = max(2, round(min(out.shape[:2]) / 300))
    font_scale = max(0.35, min(out.shape[:2]) / 900)
    drawn = 0
    for box, score, label in sorted(zip(boxes, scores, labels), key=lambda d: d[1]):  # best drawn last, on top
        if score < thresh:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = class_colour(int(label))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        text = f"{class_names[int(label)]} {score:.2f}"
        (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = max(y1, th + baseline)
        cv2.rectangle(out, (x1, ty - th - baseline), (x1 + tw, ty), colour, -1)
        cv2.putText(out, text, (x1, ty - baseline), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
        drawn += 1
    return out, drawn
