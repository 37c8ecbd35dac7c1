"""Aspect-ratio grouped batches, with multi-scale choice, sharded across processes.

Each epoch, images are sorted by log(w / h) plus a little uniform noise (so neighbours change from
epoch to epoch), cut into global batches of `batch_size`, and the batches are shuffled. Images of
one batch have nearly the same shape, so padding stays small and nothing is cropped away.

With several processes, every process computes the same global batches (same seed and epoch) and
takes its own contiguous share of each, so an epoch uses every image exactly once whatever the
number of processes. A process whose share of the last, short batch is empty gets one image with
weight 0, so that every process still steps together.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
from torch.utils.data import Sampler


class SampleKey(NamedTuple):
    """What the loader is asked for: roidb index, which TRAIN.SCALES entry, the loss weight of the
    image relative to a single-process batch (world_size / global batch size; 0 for a placeholder
    image), and the seed of the image's random anchor and RoI sampling this epoch, which depends
    only on (seed, epoch, index): the same whatever the number of processes, and on resume."""

    index: int
    scale: int
    weight: float
    seed: int = 0


def image_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_033 + index) % (2**31 - 1)


class GroupedBatchSampler(Sampler[list[SampleKey]]):
    """Args:
    aspect_ratios: w / h of every roidb entry.
    batch_size: the global batch size (all processes together).
    num_scales: how many training scales to choose from (one per batch).
    jitter: half-width of the uniform noise added to log(w / h) before sorting.
    shuffle: False keeps dataset order with no grouping (evaluation).
    seed: base seed; the epoch's order depends only on seed and epoch.
    rank, world_size: this process and the number of processes.
    """

    def __init__(
        self,
        aspect_ratios: Sequence[float],
        batch_size: int,
        num_scales: int = 1,
        jitter: float = 0.1,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1; got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.log_ratios = np.log(np.asarray(aspect_ratios, dtype=np.float64))
        self.batch_size = batch_size
        self.num_scales = num_scales
        self.jitter = jitter
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; skip its first `start_batch` global batches (resume)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def global_batches(self) -> list[tuple[np.ndarray, int]]:
        """The epoch's global batches: (roidb indices, scale index) each."""
        n = len(self.log_ratios)
        if not self.shuffle:
            return [(np.arange(i, min(i + self.batch_size, n)), 0) for i in range(0, n, self.batch_size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        keys = self.log_ratios + rng.uniform(-self.jitter, self.jitter, n)
        order = np.argsort(keys, kind="stable")
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        scales = rng.integers(0, self.num_scales, len(batches))
        permutation = rng.permutation(len(batches))
        return [(batches[i], int(scales[i])) for i in permutation]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for indices, scale in self.global_batches()[self.start_batch :]:
            share = np.array_split(indices, self.world_size)[self.rank]
            weight = self.world_size / len(indices)
            if len(share) == 0:
                yield [self._key(int(indices[0]), scale, 0.0)]
            else:
                yield [self._key(int(i), scale, weight) for i in share]

    def _key(self, index: int, scale: int, weight: float) -> SampleKey:
        return SampleKey(index, scale, weight, image_seed(self.seed, self.epoch, index))

    def __len__(self) -> int:
        return max(math.ceil(len(self.log_ratios) / self.batch_size) - self.start_batch, 0)
