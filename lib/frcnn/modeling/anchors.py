"""Anchor generation: the A base anchors of one feature-map cell, and their copies over the grid.

Shapes: A anchors per cell, H x W feature map, M = H * W * A anchors in all, ordered (y, x, a),
matching the RPN head's outputs reshaped from (N, A, H, W) through (N, H, W, A).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def generate_base_anchors(
    base_size: int = 16, ratios: Sequence[float] = (0.5, 1, 2), scales: Sequence[float] = (8, 16, 32)
) -> Tensor:
    """The original's anchors for one cell, (A, 4) with A = len(ratios) * len(scales), ratio-major.

    A base_size x base_size box at the cell's top-left is reshaped to each ratio (h/w) keeping its
    area, widths rounded half to even as py-faster-rcnn did, then scaled. For base 16 this gives the
    9 canonical anchors, e.g. (-84, -40, 99, 55) for ratio 0.5, scale 8.
    """
    centre = (base_size - 1) / 2.0
    area = float(base_size * base_size)
    ratios_t = torch.tensor(ratios, dtype=torch.float64)
    scales_t = torch.tensor(scales, dtype=torch.float64)
    widths = torch.round(torch.sqrt(area / ratios_t))
    heights = torch.round(widths * ratios_t)
    widths = (widths[:, None] * scales_t[None, :]).reshape(-1)
    heights = (heights[:, None] * scales_t[None, :]).reshape(-1)
    anchors = torch.stack(
        (
            centre - 0.5 * (widths - 1),
            centre - 0.5 * (heights - 1),
            centre + 0.5 * (widths - 1),
            centre + 0.5 * (heights - 1),
        ),
        dim=1,
    )
    return anchors.float()


class AnchorGenerator(nn.Module):
    """Anchors over a feature map of stride `stride`, shared by all images of a batch.

    Args:
        stride: feature stride in input pixels (FEAT_STRIDE); also the base anchor size.
        scales: anchor sizes in units of `stride` (ANCHOR_SCALES).
        ratios: anchor aspect ratios h / w (ANCHOR_RATIOS).
    """

    def __init__(self, stride: int, scales: Sequence[float], ratios: Sequence[float]) -> None:
        super().__init__()
        self.stride = stride
        self.register_buffer("base_anchors", generate_base_anchors(stride, ratios, scales), persistent=False)
        self._cache: dict[tuple, Tensor] = {}

    @property
    def num_anchors(self) -> int:
        return self.base_anchors.shape[0]

    def forward(self, feat_h: int, feat_w: int) -> Tensor:
        """(M, 4) anchors for an H x W feature map, M = H * W * A, order (y, x, a)."""
        key = (feat_h, feat_w, self.base_anchors.device, self.base_anchors.dtype)
        anchors = self._cache.get(key)
        if anchors is None:
            device = self.base_anchors.device
            shift_y = torch.arange(feat_h, device=device, dtype=torch.float32) * self.stride
            shift_x = torch.arange(feat_w, device=device, dtype=torch.float32) * self.stride
            yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
            shifts = torch.stack((xx, yy, xx, yy), dim=-1).reshape(-1, 1, 4)
            anchors = (shifts + self.base_anchors[None]).reshape(-1, 4)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = anchors
        return anchors
