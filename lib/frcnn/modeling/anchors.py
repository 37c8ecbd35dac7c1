"""Anchor generation: the A base anchors of one feature-map cell, and their copies over the grid.

Two generators, one per convention (conventions.py): AnchorGenerator, the original's anchors on one
stride-16 map; PyramidAnchorGenerator, torchvision's, one set of sizes per pyramid level. Both map
(grid sizes of the L levels, padded batch size) to L tensors of anchors.

Shapes: A anchors per cell, H x W feature map, M = H * W * A anchors of a level, ordered (y, x, a),
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


def grid_anchors(base_anchors: Tensor, grid_h: int, grid_w: int, stride_h: float, stride_w: float) -> Tensor:
    """(A, 4) cell anchors copied to every cell of an H x W grid: (H * W * A, 4), order (y, x, a)."""
    device = base_anchors.device
    shift_y = torch.arange(grid_h, device=device, dtype=torch.float32) * stride_h
    shift_x = torch.arange(grid_w, device=device, dtype=torch.float32) * stride_w
    yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
    shifts = torch.stack((xx, yy, xx, yy), dim=-1).reshape(-1, 1, 4)
    return (shifts + base_anchors[None]).reshape(-1, 4)


class AnchorGenerator(nn.Module):
    """The original's anchors over one feature map of stride `stride`, shared by a batch's images.

    Args:
        stride: feature stride in input pixels (FEAT_STRIDE); also the base anchor size.
        scales: anchor sizes in units of `stride` (ANCHOR_SCALES).
        ratios: anchor aspect ratios h / w (ANCHOR_RATIOS).
    """

    def __init__(self, stride: int, scales: Sequence[float], ratios: Sequence[float]) -> None:
        super().__init__()
        if isinstance(scales, str) or isinstance(ratios, str):
            # `ANCHOR_SCALES: auto` is resolved from the training data by the trainer
            # (autofit/anchors.py); a model built from the config alone cannot know them.
            raise ValueError(
                f"ANCHOR_SCALES {scales!r} / ANCHOR_RATIOS {ratios!r}: anchors must be numbers here; `auto` is "
                "chosen from the training data by the trainer (autofit.anchors.resolve_auto_anchors) "
                "and checkpoints store the chosen numbers"
            )
        self.stride = stride
        self.register_buffer("base_anchors", generate_base_anchors(stride, ratios, scales), persistent=False)
        self._cache: dict[tuple, Tensor] = {}

    @property
    def num_anchors(self) -> int:
        return self.base_anchors.shape[0]

    def forward(self, grid_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int]) -> list[Tensor]:
        """One (M, 4) tensor for the one H x W feature map, M = H * W * A, order (y, x, a)."""
        if len(grid_sizes) != 1:
            raise ValueError(f"the original's anchors are for one feature map; got {len(grid_sizes)} levels")
        (feat_h, feat_w), stride = grid_sizes[0], self.stride
        key = (feat_h, feat_w, self.base_anchors.device, self.base_anchors.dtype)
        anchors = None if torch.compiler.is_exporting() else self._cache.get(key)  # symbolic sizes: no key
        if anchors is None:
            anchors = grid_anchors(self.base_anchors, feat_h, feat_w, stride, stride)
            if len(self._cache) > 64:
                self._cache.clear()
            if not torch.compiler.is_exporting():
                self._cache[key] = anchors
        return [anchors]


def centred_base_anchors(sizes: Sequence[float], ratios: Sequence[float]) -> Tensor:
    """torchvision's cell anchors, (A, 4) with A = len(ratios) * len(sizes), ratio-major: a box of
    side `size` reshaped to each ratio h / w keeping its area, centred on the cell's top-left
    corner, corners rounded to whole pixels (half to even). E.g. size 32, ratio 0.5 -> (-23, -11, 23, 11)."""
    sizes_t = torch.tensor(sizes, dtype=torch.float32)
    h_ratios = torch.sqrt(torch.tensor(ratios, dtype=torch.float32))
    widths = ((1 / h_ratios)[:, None] * sizes_t[None, :]).reshape(-1)
    heights = (h_ratios[:, None] * sizes_t[None, :]).reshape(-1)
    return (torch.stack((-widths, -heights, widths, heights), dim=1) / 2).round()


class PyramidAnchorGenerator(nn.Module):
    """torchvision's anchors: per level, its own sizes, on a grid whose step is the padded batch
    size divided (integer division) by the level's grid size, as torchvision computes it.

    Args:
        sizes: per level, anchor sides in input pixels (ANCHOR_SIZES, e.g. [[32], [64], ...]).
        ratios: aspect ratios h / w, the same at every level (ANCHOR_RATIOS).
    """

    def __init__(self, sizes: Sequence[Sequence[float]], ratios: Sequence[float]) -> None:
        super().__init__()
        counts = {len(level) for level in sizes}
        if len(counts) != 1:
            raise ValueError(f"ANCHOR_SIZES: every level needs the same number of sizes; got {list(sizes)}")
        self.sizes = [list(level) for level in sizes]
        for i, level in enumerate(self.sizes):
            self.register_buffer(f"base_{i}", centred_base_anchors(level, ratios), persistent=False)

    @property
    def num_anchors(self) -> int:
        return self.base_0.shape[0]

    def forward(self, grid_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int]) -> list[Tensor]:
        if len(grid_sizes) != len(self.sizes):
            raise ValueError(f"ANCHOR_SIZES has {len(self.sizes)} levels; the backbone gives {len(grid_sizes)}")
        return [
            grid_anchors(getattr(self, f"base_{i}"), h, w, image_size[0] // h, image_size[1] // w)
            for i, (h, w) in enumerate(grid_sizes)
        ]
