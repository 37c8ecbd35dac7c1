"""Box formats, and the one place boxes change from one to another: `BoxMode.convert`.

Every mode lays a box out as four numbers along the last axis; the corner modes differ in what the
last two mean, CXCYWH in all four.

    XYXY            (x1, y1, x2, y2), 0-based pixel indices, both corners inside the box: a box
                    covering exactly one pixel has x2 = x1 and width x2 - x1 + 1 = 1. The PASCAL
                    VOC devkit's convention and this project's own (see modeling/box_ops.py).
    XYXY_EXCLUSIVE  (x1, y1, x2, y2) with (x2, y2) just past the box: x2 = x1 + width.
                    torchvision's convention (its "xyxy").
    XYWH            (x, y, w, h): COCO's bbox. As this project reads and writes COCO files, w and
                    h are the pixel counts of the inclusive box: x = x1, w = x2 - x1 + 1, hence
                    x2 = x + w - 1. (torchvision's "xywh" is the same four numbers measured from
                    an exclusive box: w = x2 - x1.)
    CXCYWH          (cx, cy, w, h): the centre and size of the box, w and h as XYWH's and
                    cx = x + w / 2, cy = y + h / 2: the middle of the pixels' area (of XYXY
                    (0, 0, 9, 9) it is (5, 5), not 4.5). YOLO's label rows, once multiplied by the
                    image's width and height; torchvision's "cxcywh" is the same four numbers
                    measured from an exclusive box.

So XYXY (10, 20, 29, 59) is XYWH (10, 20, 20, 40) is XYXY_EXCLUSIVE (10, 20, 30, 60) is CXCYWH
(20, 40, 20, 40). (x1, y1) is the same in every corner mode; only (x2, y2) / (w, h) change, by
sums and differences with 1. CXCYWH's centres are often half pixels: arrays and tensors converted
to or from it must have a floating dtype.

Shapes: `...` is any number of leading dimensions; convert maps (..., 4) to (..., 4).

Invariant: a round trip (A -> B -> A) returns the input unchanged. It is exact whenever the
arithmetic is: integer coordinates, in an integer or float dtype, and any coordinate whose sums and
differences with 1 the dtype represents without rounding (such as 10.5 or 0.25 well below 2**24 in
float32); arbitrary fractions may come back within a rounding error of the input.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar, Union

import numpy as np
import torch

BoxesLike = TypeVar("BoxesLike", bound=Union[np.ndarray, torch.Tensor, list, tuple])


class BoxMode(IntEnum):
    """How four numbers describe a box; see the module docstring for each mode's convention."""

    XYXY = 0
    """(x1, y1, x2, y2), inclusive corners: width x2 - x1 + 1 (the project's own)."""
    XYXY_EXCLUSIVE = 1
    """(x1, y1, x2, y2), exclusive (x2, y2): width x2 - x1 (torchvision's)."""
    XYWH = 2
    """(x, y, w, h) with w = x2 - x1 + 1 of the inclusive box (COCO's bbox, as read and written here)."""
    CXCYWH = 3
    """(cx, cy, w, h): XYWH's w and h, centre cx = x + w / 2 (YOLO's rows, times the image size)."""

    @staticmethod
    def convert(boxes: BoxesLike, from_mode: BoxMode, to_mode: BoxMode) -> BoxesLike:
        """`boxes` in `from_mode` -> the same boxes in `to_mode`, as the same kind of object.

        boxes: a numpy array (..., 4), a torch tensor (..., 4), or a list or tuple of 4 numbers.
        Arrays and tensors come back new (the input is never modified) with the input's dtype,
        device and shape; a list comes back a list and a tuple a tuple. Tensors keep autograd.
        Raises ValueError when the last dimension is not 4, TypeError for other inputs and for
        integer arrays or tensors converted to or from CXCYWH.
        """
        from_mode, to_mode = BoxMode(from_mode), BoxMode(to_mode)
        if isinstance(boxes, (list, tuple)):
            if len(boxes) != 4:
                raise ValueError(f"a box is 4 numbers; got {len(boxes)}: {boxes!r}")
            a, b, c, d = _convert(*boxes, from_mode, to_mode)
            return [a, b, c, d] if isinstance(boxes, list) else (a, b, c, d)
        if isinstance(boxes, np.ndarray):
            out = boxes.copy()
        elif isinstance(boxes, torch.Tensor):
            out = boxes.clone()
        else:
            raise TypeError(
                f"boxes must be a numpy array, a torch tensor, a list or a tuple; got {type(boxes).__name__}"
            )
        if out.ndim == 0 or out.shape[-1] != 4:
            raise ValueError(f"boxes must have shape (..., 4); got {tuple(boxes.shape)}")
        if from_mode != to_mode:
            if BoxMode.CXCYWH in (from_mode, to_mode) and not _floating(out):
                raise TypeError(f"CXCYWH has half-pixel centres: convert floating-point boxes, not {out.dtype}")
            new = _convert(boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3], from_mode, to_mode)
            first = 0 if BoxMode.CXCYWH in (from_mode, to_mode) else 2  # the corner modes share (x1, y1)
            for i in range(first, 4):
                out[..., i] = new[i]
        return out


def _floating(boxes: np.ndarray | torch.Tensor) -> bool:
    return boxes.is_floating_point() if isinstance(boxes, torch.Tensor) else np.issubdtype(boxes.dtype, np.floating)


def _convert(a, b, c, d, from_mode: BoxMode, to_mode: BoxMode) -> tuple:
    """All four numbers of a box from one mode to another: CXCYWH goes through XYWH (x = cx - w / 2),
    the corner modes keep (x1, y1) and change the far pair (_convert_far)."""
    if from_mode == to_mode:
        return a, b, c, d
    if from_mode == BoxMode.CXCYWH:
        a, b, from_mode = a - c / 2, b - d / 2, BoxMode.XYWH
    if to_mode == BoxMode.CXCYWH:
        w, h = _convert_far(c, d, a, b, from_mode, BoxMode.XYWH)
        return a + w / 2, b + h / 2, w, h
    return (a, b, *_convert_far(c, d, a, b, from_mode, to_mode))


def _convert_far(c, d, x1, y1, from_mode: BoxMode, to_mode: BoxMode):
    """The last two numbers of a box (c, d) with first corner (x1, y1), from one mode to another.

    Each pair of modes has its own formula rather than going through XYXY, so that no conversion
    adds and then removes a 1 (XYXY_EXCLUSIVE <-> XYWH is a plain difference, as in torchvision).
    The order of operations is that of (x + w) - 1 and (x2 - x1) + 1, the order this project has
    always used, so results stay bit for bit what they were.
    """
    X, E, W = BoxMode.XYXY, BoxMode.XYXY_EXCLUSIVE, BoxMode.XYWH
    if from_mode == to_mode:
        return c, d
    if (from_mode, to_mode) == (X, E):
        return c + 1, d + 1
    if (from_mode, to_mode) == (E, X):
        return c - 1, d - 1
    if (from_mode, to_mode) == (X, W):
        return (c - x1) + 1, (d - y1) + 1
    if (from_mode, to_mode) == (W, X):
        return (x1 + c) - 1, (y1 + d) - 1
    if (from_mode, to_mode) == (E, W):
        return c - x1, d - y1
    if (from_mode, to_mode) == (W, E):
        return x1 + c, y1 + d
    raise NotImplementedError(f"conversion from {from_mode.name} to {to_mode.name}")  # pragma: no cover
