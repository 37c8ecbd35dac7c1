"""What travels from the dataset through the loader to the model: one Sample per image, one Batch per step.

Shapes: N images in a batch, H x W the padded batch size, h x w one resized image, G objects in it.
Boxes are BoxMode.XYXY (inclusive corners) in the resized image's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Sample:
    """One prepared image, as the loader's dataset gives it and `collate` takes it.

    image: (3, h, w) uint8 RGB, resized to the scale.
    boxes: (G, 4) float32 in the resized image's pixels.
    labels: (G,) int64 in 1..K-1.
    scale: the factor the image was resized by.
    index: its roidb index (its position, for images from elsewhere).
    weight: its loss weight relative to a single-process batch (0 for a placeholder image).
    seed: the seed of its random anchor and RoI sampling (data/sampler.py image_seed).
    ignore: (I, 4) float32 ignore regions (TRAIN.IGNORE_DIFFICULT) in the resized image's pixels.
    """

    image: Tensor
    boxes: Tensor
    labels: Tensor
    scale: float
    index: int
    weight: float = 1.0
    seed: int = 0
    ignore: Tensor = field(default_factory=lambda: torch.zeros(0, 4))

    @classmethod
    def unlabelled(cls, image: Tensor, scale: float, index: int) -> Sample:
        """An image to run detection on: no objects."""
        return cls(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), scale, index)


@dataclass
class Batch:
    """A padded batch, what the model's forward takes (plus bookkeeping for the trainer).

    images: (N, 3, H, W) uint8 RGB, each image at the top-left, zeros elsewhere.
    image_sizes: (N, 2) int64 (h, w) of each image.
    image_scales: (N,) float32 resize factors.
    targets: per image {"boxes" (G, 4), "labels" (G,), "ignore" (I, 4), "seed" (int)}: the model's
        training input.
    indices: roidb indices.
    loss_scale: factor on the model's (per-image mean) losses so that averaging over processes
        gives the mean over the global batch (1 in a single process).
    padded_fraction: share of the batch's pixels that are padding.
    """

    images: Tensor
    image_sizes: Tensor
    image_scales: Tensor
    targets: list[dict[str, Tensor]]
    indices: list[int]
    loss_scale: float
    padded_fraction: float

    def to(self, device: torch.device) -> Batch:
        non_blocking = device.type == "cuda"

        def move(value):
            return value.to(device, non_blocking=non_blocking) if torch.is_tensor(value) else value

        return Batch(
            move(self.images),
            move(self.image_sizes),
            move(self.image_scales),
            [{k: move(v) for k, v in t.items()} for t in self.targets],
            self.indices,
            self.loss_scale,
            self.padded_fraction,
        )

    def split(self, parts: int) -> list[Batch]:
        """The batch as `parts` consecutive batches of its images (fewer when it has fewer
        images), each keeping the padded size; loss_scale and padded_fraction stay the whole
        batch's."""
        n = len(self.indices)
        count = max(1, min(parts, n))
        bounds = [round(k * n / count) for k in range(count + 1)]
        return [
            Batch(
                self.images[a:b],
                self.image_sizes[a:b],
                self.image_scales[a:b],
                self.targets[a:b],
                self.indices[a:b],
                self.loss_scale,
                self.padded_fraction,
            )
            for a, b in zip(bounds, bounds[1:])
        ]

    def pin_memory(self) -> Batch:
        self.images = self.images.pin_memory()
        return self
