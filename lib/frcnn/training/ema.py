"""TRAIN.EMA_DECAY > 0: an exponential moving average of the weights is the model a run saves
and evaluates.

After each optimiser step every floating-point tensor of the model's state (parameters and
BatchNorm statistics) moves toward the trained one:

    average <- d_n * average + (1 - d_n) * weights,    d_n = decay * (1 - exp(-n / warmup))

n counting the updates so far, so that the first steps, whose weights are no average worth
keeping, are followed closely (YOLOv5's ramp). Integer tensors are copied. A checkpoint then holds
the average as "model" (what test_net.py, demo.py, export.py and fine-tuning read) and the trained
weights as "trained_model" with the update count (what --r continues from).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from .loop import Hook, Trainer, unwrap


class WeightAverage(Hook):
    """Args:
    decay: the average's decay per step once warmed up (0.998: about the last 500 steps).
    warmup: the ramp's time constant in steps.
    """

    def __init__(self, decay: float, warmup: float) -> None:
        if not 0.0 < decay < 1.0 or warmup <= 0:
            raise ValueError(f"TRAIN.EMA_DECAY must lie in (0, 1) and EMA_WARMUP be > 0; got {decay}, {warmup}")
        self.decay, self.warmup = decay, warmup
        self.average: dict[str, torch.Tensor] = {}
        self.updates = 0

    def before_train(self, t: Trainer) -> None:
        weights = unwrap(t.model).state_dict()  # views of the live tensors, which training updates in place
        if t.resumed_average is not None:
            average, self.updates = t.resumed_average
            self.average = {k: v.to(t.device) for k, v in average.items()}
        else:
            self.average = {k: v.detach().clone() for k, v in weights.items()}
        floats = [k for k, v in self.average.items() if v.is_floating_point()]
        # paired once, so that a step is one fused update rather than a Python pass over the model
        self.floats = ([self.average[k] for k in floats], [weights[k] for k in floats])
        self.others = [(self.average[k], weights[k]) for k in self.average.keys() - set(floats)]
        t.weight_average = self

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.warmup))

    @torch.no_grad()
    def after_step(self, t: Trainer) -> None:
        self.updates += 1
        # average + (1 - d) (weights - average) = d average + (1 - d) weights, as torch's own
        # EMA (swa_utils.get_ema_multi_avg_fn) updates, with the ramped d
        torch._foreach_lerp_(*self.floats, 1.0 - self.current_decay())
        for kept, value in self.others:
            kept.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.average.items()}

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """`model` with the average's weights inside the block, its own again after it."""
        trained = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.average)
        try:
            yield model
        finally:
            model.load_state_dict(trained)
