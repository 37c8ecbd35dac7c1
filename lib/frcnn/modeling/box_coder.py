"""Box coding: boxes as offsets (dx, dy, dw, dh) from reference boxes (anchors or RoIs).

For a reference box with width w = x2 - x1 + offset, height h and centre (cx, cy) = (x1 + w/2, y1 + h/2)
(offset 1: inclusive corners, 0: continuous ones; see box_ops):
    dx = (gx - cx) / w,  dy = (gy - cy) / h,  dw = log(gw / w),  dh = log(gh / h)
and the stored targets are normalised: (d - means) / stds (the head uses stds (0.1, 0.1, 0.2, 0.2)).

Invariant: decode(encode(b, r), r) == b, up to float32 rounding, for boxes of positive size whose
width and height are within a factor 1000/16 of the reference's (the clamp below).
Both directions compute in float32 whatever the input dtype (autocast leaves box maths in float32),
and decode clamps dw, dh at log(1000 / 16) so that exp() cannot overflow on a wild prediction.

Shapes: `...` is any number of leading dimensions, broadcast between deltas/boxes and references.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encodes and decodes boxes relative to reference boxes.

    Args:
        means: subtracted from raw deltas when encoding (added back when decoding).
        stds: raw deltas are divided by these when encoding (multiplied back when decoding).
        scale_clamp: upper bound on dw, dh before exp() in decode.
        offset: the box convention's width offset (box_ops): 1 inclusive, 0 continuous.
    """

    def __init__(
        self,
        means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        scale_clamp: float = DEFAULT_SCALE_CLAMP,
        offset: float = 1.0,
    ) -> None:
        self.means = tuple(float(m) for m in means)
        self.stds = tuple(float(s) for s in stds)
        self.scale_clamp = scale_clamp
        self.offset = float(offset)

    def _centre_size(self, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        widths = boxes[..., 2] - boxes[..., 0] + self.offset
        heights = boxes[..., 3] - boxes[..., 1] + self.offset
        return boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights, widths, heights

    def encode(self, boxes: Tensor, references: Tensor) -> Tensor:
        """(..., 4) target boxes and (..., 4) references -> (..., 4) normalised deltas (float32)."""
        boxes, references = boxes.float(), references.float()
        gx, gy, gw, gh = self._centre_size(boxes)
        rx, ry, rw, rh = self._centre_size(references)
        deltas = torch.stack(((gx - rx) / rw, (gy - ry) / rh, torch.log(gw / rw), torch.log(gh / rh)), dim=-1)
        means = deltas.new_tensor(self.means)
        stds = deltas.new_tensor(self.stds)
        return (deltas - means) / stds

    def decode(self, deltas: Tensor, references: Tensor) -> Tensor:
        """(..., 4) normalised deltas and (..., 4) references -> (..., 4) boxes (float32)."""
        deltas, references = deltas.float(), references.float()
        deltas = deltas * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        rx, ry, rw, rh = self._centre_size(references)
        cx = deltas[..., 0] * rw + rx
        cy = deltas[..., 1] * rh + ry
        w = torch.exp(deltas[..., 2].clamp(max=self.scale_clamp)) * rw
        h = torch.exp(deltas[..., 3].clamp(max=self.scale_clamp)) * rh
        half_w, half_h = 0.5 * w, 0.5 * h
        far = (cx + half_w - self.offset, cy + half_h - self.offset)
        return torch.stack((cx - half_w, cy - half_h, *far), dim=-1)
