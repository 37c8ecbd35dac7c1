"""Resizing inside the model, for models of torchvision's convention (conventions.py).

Under the original's convention the data loader resizes each uint8 image (OpenCV) and the model
only normalises it. Under torchvision's, at inference the model gets original images and, like
torchvision's GeneralizedRCNNTransform, resizes the normalised float image (bilinear, no corner
alignment, factor min(min_size / short side, max_size / long side)) and pads the batch to a
multiple of 32; detections are mapped back per axis.

Shapes: N images, (H, W) the padded batch, image_sizes (N, 2) as (h, w) of each image's own area.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ModelInput(NamedTuple):
    """images: the normalised batch; image_sizes (N, 2); image_scales (N,) the resize factor of
    each image; box_divisors (N, 4): a box in the batch divided by these is in original pixels."""

    images: Tensor
    image_sizes: Tensor
    image_scales: Tensor
    box_divisors: Tensor


def resize_factor(height: int, width: int, min_size: int, max_size: int) -> float:
    """torchvision's: the shorter side to min_size, unless the longer would pass max_size (the
    resized sides are then floor(side x factor))."""
    return min(min_size / min(height, width), max_size / max(height, width))


class InputResize(nn.Module):
    """The resize (and padding) of a model that resizes its own input (torchvision's convention),
    applied to the normalised batch at inference; in training the loader has resized already.

    Args:
        min_size, max_size: the test scale (TEST.SCALES[0], TEST.MAX_SIZE).
        size_divisible: the padded batch's sides are multiples of this.
    """

    def __init__(self, min_size: int, max_size: int, size_divisible: int = 32) -> None:
        super().__init__()
        self.min_size = min_size
        self.max_size = max_size
        self.size_divisible = size_divisible

    def forward(self, x: Tensor, image_sizes: Tensor, image_scales: Tensor) -> ModelInput:
        if self.training:
            return ModelInput(x, image_sizes, image_scales, image_scales[:, None].expand(-1, 4))
        return self._resize(x, image_sizes, image_scales)

    def _resize(self, x: Tensor, image_sizes: Tensor, image_scales: Tensor) -> ModelInput:
        resized, divisors = [], []
        for image, (h, w), given in zip(x, image_sizes.tolist(), image_scales.tolist()):
            factor = resize_factor(h, w, self.min_size, self.max_size)
            image = F.interpolate(
                image[None, :, :h, :w], scale_factor=factor, mode="bilinear", recompute_scale_factor=True
            )[0]
            new_h, new_w = image.shape[-2:]
            resized.append(image)
            divisors.append([given * new_w / w, given * new_h / h] * 2)
        step = self.size_divisible
        height = -(-max(r.shape[-2] for r in resized) // step) * step
        width = -(-max(r.shape[-1] for r in resized) // step) * step
        batch = x.new_zeros((len(resized), x.shape[1], height, width))
        for out, image in zip(batch, resized):
            out[:, : image.shape[-2], : image.shape[-1]] = image
        sizes = torch.tensor([r.shape[-2:] for r in resized], device=x.device)
        divisor = torch.tensor(divisors, device=x.device, dtype=torch.float32)
        return ModelInput(batch, sizes, divisor[:, 0], divisor)
