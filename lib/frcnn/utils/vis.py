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


TEXT_HEIGHT = 22  # pixels of FONT_HERSHEY_SIMPLEX's capitals at scale 1, with its baseline


def label_style(shape: tuple[int, int], boxes: np.ndarray) -> tuple[int, float]:
    """(line thickness, font scale): growing with the image, so that labels stay legible on a large
    one, but no larger than the boxes drawn allow (text at most half the median box height, lines
    a tenth of it), so that a scene of many small objects is not buried under its labels; never
    below 1 px lines and font 0.35 (about 8 px of text), the smallest legible."""
    thickness, font_scale = max(2, round(min(shape) / 300)), max(0.35, min(shape) / 900)
    if len(boxes):
        height = float(np.median(boxes[:, 3] - boxes[:, 1] + 1))
        thickness = max(1, min(thickness, round(height / 10)))
        font_scale = max(0.35, min(font_scale, height / 2 / TEXT_HEIGHT))
    return thickness, font_scale


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
    thickness, font_scale = label_style(out.shape[:2], np.asarray(boxes)[np.asarray(scores) >= thresh])
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
