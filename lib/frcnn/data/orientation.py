"""EXIF orientation: boxes drawn on a photo as viewers show it, brought back to its stored pixels.

The project reads images as stored (`loader.read_image` ignores the EXIF orientation tag) and
takes boxes to be in those pixels. A labelling tool that shows a photo turned by its tag (web
browsers do, and so do detectron2's and Ultralytics' readers) writes its boxes on the turned
picture instead. Where the annotation gives the image's size, that size tells which picture was
labelled for the tags that swap width and height (5 to 8): the data check then maps the boxes
back with `boxes_to_stored`, exactly, in the inclusive pixel convention of `ImageRecord`.

Orientation values (EXIF 2.3, tag 0x0112) and the turn a viewer applies to the stored pixels:
1 none, 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom, 5 transpose, 6 rotate 90
clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

EXIF_ORIENTATION_TAG = 0x0112
SIDES_SWAPPED = frozenset({5, 6, 7, 8})

# For each orientation: where a stored (x, y) comes from in the shown picture. Each entry is
# (axis of the shown point, mirrored against the stored side): axis 0 is the shown x, 1 the shown y.
_SHOWN_TO_STORED = {
    1: ((0, False), (1, False)),
    2: ((0, True), (1, False)),
    3: ((0, True), (1, True)),
    4: ((0, False), (1, True)),
    5: ((1, False), (0, False)),
    6: ((1, False), (0, True)),
    7: ((1, True), (0, True)),
    8: ((1, True), (0, False)),
}


def exif_orientation(image: Image.Image) -> int:
    """The image's EXIF orientation, 1 (as stored) when it has none or an invalid one."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - damaged EXIF blocks fail in many ways; the pixels still load
        return 1
    return value if isinstance(value, int) and value in _SHOWN_TO_STORED else 1


def boxes_to_stored(boxes: np.ndarray, orientation: int, width: int, height: int) -> np.ndarray:
    """(G, 4) inclusive x1, y1, x2, y2 boxes on the picture as shown -> the same boxes in the stored
    pixels of a width x height (stored size) image. Invariant: the mapping is exact on pixel
    indices, so a box covering pixels i..j of the shown picture covers the same pixels stored."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    corners = []
    for side, (axis, mirrored) in zip((width, height), _SHOWN_TO_STORED[orientation]):
        ends = boxes[:, [axis, axis + 2]]
        corners.append(side - 1 - ends if mirrored else ends)
    xs, ys = corners
    return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1).astype(np.float32)
