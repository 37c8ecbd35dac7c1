"""RoI features from a feature pyramid: each RoI pooled from the level that matches its size.

The level rule is the FPN paper's (eq. 1) as torchvision's MultiScaleRoIAlign applies it:
    k = floor(4 + log2(sqrt(area) / 224) + 1e-6), clamped to [log2(first stride), log2(last stride)],
with area = width x height in the model's box convention. Each level is pooled by its own RoIPooler
(pool, align, crop or deform, roi_pool.py), so every pooling mode works on the pyramid.

Shapes: L pooled levels, R RoIs as (R, 5) rows (image index, x1, y1, x2, y2), C channels, P pooled size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..box_ops import box_area
from .roi_pool import RoIPooler

CANONICAL_SIZE = 224  # an RoI of this side goes to level CANONICAL_LEVEL (ImageNet's input size)
CANONICAL_LEVEL = 4


class PyramidRoIPooler(nn.Module):
    """Args:
    poolers: one RoIPooler per pooled level, each with its level's spatial scale.
    strides: the pooled levels' strides (powers of two, ascending).
    offset: the box convention's width offset (box_ops).
    """

    def __init__(self, poolers: Sequence[RoIPooler], strides: Sequence[int], offset: float = 1.0) -> None:
        super().__init__()
        if len(poolers) != len(strides):
            raise ValueError(f"one pooler per level: {len(poolers)} poolers for {len(strides)} strides")
        self.levels = nn.ModuleList(poolers)
        self.k_min = int(math.log2(strides[0]))
        self.k_max = int(math.log2(strides[-1]))
        self.offset = offset
        self.output_size = poolers[0].output_size

    def assign_levels(self, rois: Tensor) -> Tensor:
        """(R, 5) -> (R,) index of the pooled level each RoI is read from."""
        size = torch.sqrt(box_area(rois[:, 1:], self.offset))
        k = torch.floor(CANONICAL_LEVEL + torch.log2(size / CANONICAL_SIZE) + torch.tensor(1e-6, dtype=size.dtype))
        return (k.clamp(self.k_min, self.k_max) - self.k_min).long()

    def forward(self, features: Sequence[Tensor], rois: Tensor) -> Tensor:
        levels = self.assign_levels(rois)
        p = self.output_size
        out = features[0].new_zeros((rois.shape[0], features[0].shape[1], p, p))
        for level, (pooler, feature) in enumerate(zip(self.levels, features)):
            index = torch.where(levels == level)[0]
            out[index] = pooler(feature, rois[index]).to(out.dtype)
        return out
