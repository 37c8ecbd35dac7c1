"""Cutting a large image (an orthomosaic, a slide) into overlapping tiles, and its boxes with it.

`tile_windows` gives the same windows as SAHI's `sahi.slicing.get_slice_bboxes` with square slices
(tested against it), so that sliced inference here and in SAHI sees the same pixels: windows of
`size` pixels stepping by `size - int(overlap * size)`, the last one of a row or column moved back
to end on the image's edge, and an image smaller than a tile one window of its own size.

Windows are (x0, y0, x1, y1) pixel integers with EXCLUSIVE ends (`image[y0:y1, x0:x1]`); boxes are
BoxMode.XYXY, inclusive corners, as everywhere else in the project.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .datasets.base import ImageRecord
from .roidb import flip_boxes, training_record

Window = tuple[int, int, int, int]


def tile_windows(height: int, width: int, size: int, overlap: float = 0.2) -> list[Window]:
    """The (x0, y0, x1, y1) windows (exclusive ends) of `size` x `size` tiles overlapping by
    `int(overlap * size)` pixels that cover a height x width image, row by row, top left first.

    Equals `sahi.slicing.get_slice_bboxes(height, width, size, size, overlap_height_ratio=overlap,
    overlap_width_ratio=overlap)`. Raises ValueError for size <= 0, overlap outside [0, 1) or an
    empty image.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"the tile size is a positive number of pixels; got {size!r}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"the tile overlap is a fraction of the tile in [0, 1); got {overlap!r}")
    if height < 1 or width < 1:
        raise ValueError(f"an image to tile has at least one pixel; got {height} x {width}")
    step_back = int(overlap * size)  # SAHI's rounding (towards zero), so that the windows agree
    rows, columns = _spans(height, int(size), step_back), _spans(width, int(size), step_back)
    return [(x0, y0, x1, y1) for y0, y1 in rows for x0, x1 in columns]


def _spans(length: int, size: int, step_back: int) -> list[tuple[int, int]]:
    """(start, end) of the windows along one axis: each starts `step_back` before the previous one
    ends; one that would pass the edge ends on it instead (starting at 0 if the axis is short)."""
    spans, start, end = [], 0, 0
    while end < length:
        end = start + size
        if end > length:
            end = length
            start = max(0, end - size)
        spans.append((start, end))
        start = end - step_back
    return spans


def boxes_in_window(boxes: np.ndarray, window: Window, min_side: int = 2) -> np.ndarray:
    """(G,) bool: which of the (G, 4) inclusive boxes show at least `min_side` x `min_side` pixels
    inside `window` (x0, y0, x1, y1, exclusive ends). The rows `crop_boxes` keeps, so that a
    box's label or other fields can be selected alike."""
    x0, y0, x1, y1 = window[0], window[1], window[2] - 1, window[3] - 1
    boxes = np.asarray(boxes).reshape(-1, 4)
    # sides of the part inside, in inclusive pixels (<= 0 where the box misses the window)
    visible_w = np.minimum(boxes[:, 2], x1) - np.maximum(boxes[:, 0], x0) + 1
    visible_h = np.minimum(boxes[:, 3], y1) - np.maximum(boxes[:, 1], y0) + 1
    return (visible_w >= min_side) & (visible_h >= min_side)


def crop_boxes(
    boxes: np.ndarray, window: Window, min_visible: float = 0.5, min_side: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """The part of each (G, 4) inclusive box (image pixels) inside `window` (x0, y0, x1, y1,
    exclusive ends), in the window's pixels, and whether it is difficult.

    Returns (K, 4) boxes of the input's dtype and (K,) bool `difficult`: less than `min_visible` of
    the box's area is inside (a crown or cell cut by the tile's edge, kept so that a detector that
    finds it is not called wrong). A box showing less than `min_side` pixels along a side inside
    (none at all included) is dropped; `boxes_in_window` says which rows are kept.
    """
    boxes = np.asarray(boxes).reshape(-1, 4)
    keep = boxes_in_window(boxes, window, min_side)
    x0, y0, x1, y1 = window[0], window[1], window[2] - 1, window[3] - 1
    kept = boxes[keep]
    clipped = np.stack(
        [kept[:, 0].clip(x0, x1), kept[:, 1].clip(y0, y1), kept[:, 2].clip(x0, x1), kept[:, 3].clip(y0, y1)], 1
    ).reshape(-1, 4)
    area = (kept[:, 2] - kept[:, 0] + 1) * (kept[:, 3] - kept[:, 1] + 1)
    inside = (clipped[:, 2] - clipped[:, 0] + 1) * (clipped[:, 3] - clipped[:, 1] + 1)
    shifted = clipped - np.array([x0, y0, x0, y0], dtype=clipped.dtype)
    return shifted, inside < min_visible * area


def tile_record(record: ImageRecord, window: Window, min_visible: float = 0.5) -> ImageRecord:
    """The tile `window` of a record: its size, and the objects that show in it cut to their
    visible part (difficult where less than `min_visible` of the object is inside)."""
    keep = boxes_in_window(record.boxes, window)
    boxes, hidden = crop_boxes(record.boxes, window, min_visible)
    kept = record.objects(keep)
    return dataclasses.replace(
        kept,
        id=f"{record.id}@{window[0]},{window[1]}",
        width=window[2] - window[0],
        height=window[3] - window[1],
        boxes=boxes.astype(np.float32),
        difficult=kept.difficult | hidden,
        area=record.area[:0],  # an annotated area is the whole object's, not its part in a tile
        window=window,
    )


def tile_records(
    records: Sequence[ImageRecord], size: int, overlap: float, empty_share: float, seed: int = 0
) -> list[ImageRecord]:
    """Every record larger than a `size` tile on either side as its tiles (tile_windows), the
    others as they are. Of the tiles with no object to learn, `empty_share` are kept (drawn with
    `seed`): they teach the background, but a scene is mostly background."""
    tiles: list[ImageRecord] = []
    empty: list[ImageRecord] = []
    for record in records:
        if record.width <= size and record.height <= size:
            tiles.append(record)
            continue
        for window in tile_windows(record.height, record.width, size, overlap):
            tile = tile_record(record, window)
            (tiles if (~tile.difficult).any() else empty).append(tile)
    kept = np.random.default_rng(seed).random(len(empty)) < empty_share
    return tiles + [tile for tile, keep in zip(empty, kept) if keep]


def shifted_window(window: Window, height: int, width: int, shift: int, rng: np.random.Generator) -> Window:
    """`window` moved by up to `shift` pixels along each axis (uniform integers), kept inside the
    height x width image and of the same size: a tile where the image is no larger does not move."""
    x0, y0, x1, y1 = window
    dx, dy = rng.integers(-shift, shift, size=2, endpoint=True)
    x = int(np.clip(x0 + dx, 0, max(0, width - (x1 - x0))))
    y = int(np.clip(y0 + dy, 0, max(0, height - (y1 - y0))))
    return (x, y, x + x1 - x0, y + y1 - y0)


class TileShift:
    """Tiles drawn afresh at each load: the tile's window moved by up to `shift` x its size along
    each axis, and its objects cut again from the scene's, so that over the epochs a crown is seen
    at every place in a tile, and cut by its edges in every way, not at the one place the fixed
    grid put it. The window keeps its size, so the roidb's aspect-ratio groups stay true.

    Args:
        scenes: the untiled records the roidb's tiles were cut from (matched by path).
        shift: the largest move, a fraction of the tile's side (TILES.SHIFT); 0.4 with the
            default overlap of 0.2 reaches half-way to the next tile of the grid.
        difficult: what training does with difficult objects (roidb.training_record), as
            build_roidb does.
    """

    def __init__(self, scenes: Sequence[ImageRecord], shift: float, difficult: str = "drop") -> None:
        if not 0.0 <= shift <= 1.0:
            raise ValueError(f"TILES.SHIFT is a fraction of the tile in [0, 1]; got {shift!r}")
        self.scenes = {scene.path: scene for scene in scenes}
        self.shift = shift
        self.difficult = difficult

    def __call__(self, tile: ImageRecord, seed: int) -> ImageRecord:
        """The roidb entry `tile` cut again with its window moved (drawn from `seed`); an entry
        that is no tile is returned as it is."""
        scene = self.scenes.get(tile.path)
        if tile.window is None or scene is None:
            return tile
        shift = round(self.shift * max(tile.width, tile.height))
        window = shifted_window(tile.window, scene.height, scene.width, shift, np.random.default_rng([seed, 1]))
        cut = training_record(tile_record(scene, window), self.difficult)
        if tile.flipped:
            cut = dataclasses.replace(cut, boxes=flip_boxes(cut.boxes, cut.width), flipped=True)
        return cut
