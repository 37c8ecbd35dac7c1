"""One pass over the training boxes: the profile that every fitting choice is computed from.

Shapes: I images (each counted once: a flipped copy has the same boxes' sizes), B boxes that
train (neither difficult nor crowd: the RPN does not learn those).

`BoxProfile.of(records)` walks the records once and keeps the boxes in their images' own pixels;
`at_scale(scale, max_size)` gives them as the loader resizes the images (`ScaledBoxes`), with no
second walk, for every scale a choice tries. Two sizes, each defined here only:

- `widths`, `heights`, `sides`: the ground truth the model is trained on. The loader scales the
  corners, and the inclusive pixel comes after: w = (x2 - x1) x factor + 1. The anchors, their
  coverage and the summary a person reads use these.
- `object_sides`: the object's extent, sqrt of its inclusive area in the image's own pixels,
  times the factor. It grows in proportion to the scale, which the input scale choice solves
  for (scale.py); it differs from `sides` by less than |factor - 1| pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..data.datasets.base import ImageRecord
from ..data.loader import SIZE_DIVISIBILITY, resize_scale


@dataclass(frozen=True)
class BoxProfile:
    """boxes: (B, 4) float32 BoxMode.XYXY (inclusive corners) in their image's own pixels.
    image_of_box: (B,) index of each box's image. heights, widths: (I,) image sizes in pixels.
    objects: (I,) boxes that train in each image (0 for an image without any)."""

    boxes: np.ndarray
    image_of_box: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    objects: np.ndarray

    @classmethod
    def of(cls, records: Sequence[ImageRecord]) -> BoxProfile:
        boxes, owners, heights, widths, objects = [np.zeros((0, 4), np.float32)], [np.zeros(0, int)], [], [], []
        for record in (r for r in records if not r.flipped):
            keep = ~(record.difficult | record.crowd) if len(record.boxes) else np.zeros(0, bool)
            boxes.append(np.asarray(record.boxes[keep], np.float32).reshape(-1, 4))
            owners.append(np.full(int(keep.sum()), len(heights)))
            heights.append(record.height)
            widths.append(record.width)
            objects.append(int(keep.sum()))
        return cls(
            np.concatenate(boxes),
            np.concatenate(owners),
            np.array(heights, np.int64),
            np.array(widths, np.int64),
            np.array(objects, np.int64),
        )

    @property
    def images(self) -> int:
        return len(self.heights)

    def __len__(self) -> int:
        return len(self.boxes)

    def object_sides(self) -> np.ndarray:
        """(B,) float32 objects' extents in their image's own pixels (module docstring)."""
        b = self.boxes
        return np.sqrt((b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1))

    def at_scale(self, scale: int, max_size: int) -> ScaledBoxes:
        """The boxes and images resized as the loader resizes them for `scale` / `max_size`."""
        factors = np.array([resize_scale(int(h), int(w), scale, max_size) for h, w in zip(self.heights, self.widths)])
        # float32 corners x the factor rounded to float32: what the loader's float32 boxes x a
        # Python float give, bit for bit
        per_box = factors.astype(np.float32)[self.image_of_box]
        boxes = self.boxes * per_box[:, None]
        object_sides = self.object_sides() * per_box
        sizes = np.stack((self.heights * factors, self.widths * factors), axis=1)
        return ScaledBoxes(boxes, object_sides, self.image_of_box, sizes, self.objects)


@dataclass(frozen=True)
class ScaledBoxes:
    """A profile at one input scale. boxes: (B, 4) float32 corners in resized pixels.
    object_sides: (B,) float32 objects' extents in resized pixels (module docstring).
    image_sizes: (I, 2) float h, w of the resized images before rounding. image_of_box and
    objects as in BoxProfile."""

    boxes: np.ndarray
    object_sides: np.ndarray
    image_of_box: np.ndarray
    image_sizes: np.ndarray
    objects: np.ndarray

    @property
    def widths(self) -> np.ndarray:
        return self.boxes[:, 2] - self.boxes[:, 0] + 1

    @property
    def heights(self) -> np.ndarray:
        return self.boxes[:, 3] - self.boxes[:, 1] + 1

    @property
    def sides(self) -> np.ndarray:
        """sqrt(w x h) of the ground-truth boxes, the size in one number."""
        return np.sqrt(self.widths * self.heights)

    def resized_sizes(self) -> np.ndarray:
        """(I, 2) int h, w of the resized images, rounded as the loader rounds them."""
        return np.round(self.image_sizes).astype(np.int64)

    def padded_sizes(self) -> np.ndarray:
        """(I, 2) int h, w of the resized images padded to SIZE_DIVISIBILITY, as batched."""
        return -(-self.resized_sizes() // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY

    def model_boxes(self, offset: float) -> np.ndarray:
        """(B, 4) float32 boxes in the model's convention: with box offset 0 (continuous
        coordinates) x2, y2 get + 1, the inclusive corners' far edges."""
        return self.boxes + np.array([0, 0, 1, 1], np.float32) if offset == 0 else self.boxes

    def per_image(self, offset: float) -> Iterator[tuple[tuple[int, int], tuple[int, int], np.ndarray]]:
        """((h, w), padded (h, w), boxes (G, 4) float32 in the model's convention) of each image
        with boxes that train, in image order."""
        boxes, sizes, padded = self.model_boxes(offset), self.resized_sizes(), self.padded_sizes()
        order = np.argsort(self.image_of_box, kind="stable")
        starts = np.searchsorted(self.image_of_box[order], np.arange(len(sizes) + 1))
        for image in np.flatnonzero(self.objects):
            own = order[starts[image] : starts[image + 1]]
            yield tuple(sizes[image].tolist()), tuple(padded[image].tolist()), boxes[own]

    def on_grid(self, stride: int, offset: float) -> GridBoxes:
        """The boxes with their image's size and its feature grid at `stride`, one row each."""
        sizes, padded = self.resized_sizes(), self.padded_sizes()
        grids = -(-padded // stride)
        owner = self.image_of_box
        return GridBoxes(self.model_boxes(offset).astype(np.float64), sizes[owner], grids[owner])


@dataclass
class GridBoxes:
    """Boxes at the training scale, one row each: corners (B, 4) in the model's convention, and
    their image's size (B, 2: h, w) and feature grid (B, 2: rows, columns)."""

    boxes: np.ndarray
    sizes: np.ndarray
    grids: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, index: np.ndarray | slice) -> GridBoxes:
        return GridBoxes(self.boxes[index], self.sizes[index], self.grids[index])
