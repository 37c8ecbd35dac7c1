"""The training loop and the Hook base: roidb batches -> model -> losses -> optimiser step.

`Trainer.train` is the whole loop: for each epoch, for each batch, the hooks' before_step, one
optimiser step, the hooks' after_step. Everything else is a hook (hooks.py: the learning-rate
schedule, reading losses back and stopping at a non-finite one, progress, checkpoints, evaluation
during training; metrics.py: the metrics file and plots; budget.py: a wall-clock budget). What
builds a Trainer from a run's options (data, model, optimiser, resume, hooks) is build.py.

One process, or several (runs/distributed.py): each process takes its share of every global
batch, DistributedDataParallel averages the gradients, and only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from easydict import EasyDict
from torch.nn.parallel import DistributedDataParallel

from ..config import to_plain
from ..data.loader import make_loader
from ..modeling import FasterRCNN
from ..runs import distributed
from ..runs.checkpoint import checkpoint_dir, save_checkpoint
from ..structures.batch import Batch
from .options import TrainOptions

__all__ = ["Hook", "Trainer", "unwrap"]


def unwrap(model: torch.nn.Module) -> FasterRCNN:
    return model.module if isinstance(model, DistributedDataParallel) else model


class Hook:
    """One job around the loop (detectron2's HookBase style). A hook sees the Trainer at six
    moments, in the order the trainer lists its hooks: before_train, before_epoch, before_step,
    after_step, after_epoch, after_train (the last also when the run stops on an error). What
    each job needs lives in its hook; what they share is on the trainer. This base does nothing
    at every moment; subclasses override the moments of their job."""

    def before_train(self, t: Trainer) -> None: ...
    def before_epoch(self, t: Trainer) -> None: ...
    def before_step(self, t: Trainer) -> None: ...
    def after_step(self, t: Trainer) -> None: ...
    def after_epoch(self, t: Trainer) -> None: ...
    def after_train(self, t: Trainer) -> None: ...


class Trainer:
    """One training run: the model, its optimiser and data, where the loop stands, and the hooks.

    Hooks read and change what they need of it: epoch, step (1-based within the epoch), iteration
    (optimiser steps since the run began, over resumes), steps_per_epoch, lr, batch and losses
    (this step's loss terms, still on the device), read_losses() (hooks.LossWatch), save(name),
    metrics (metrics.MetricsLog) and stopping (set it to end the run after this step's epoch end).
    """

    def __init__(self, opts: TrainOptions, cfg: EasyDict, world: distributed.World, device: torch.device) -> None:
        self.opts, self.cfg, self.world, self.device = opts, cfg, world, device
        self.epoch, self.step, self.iteration, self.start_step, self.lr = opts.start_epoch, 0, 0, 0, 0.0
        self.hooks: list[Hook] = []
        self.losses: dict[str, torch.Tensor] = {}
        self.last_saved: Path | None = None
        self.stopping = False  # set by a hook: the epoch ends after this step (budget.py)
        self.weight_average = None  # ema.WeightAverage when TRAIN.EMA_DECAY > 0: what is saved
        self.resumed_average = None  # (average, updates) of a resumed checkpoint saved with it (resume.py)

    def train(self) -> Path | None:
        """The loop. Returns the last checkpoint written (by rank 0; None elsewhere)."""
        self.call("before_train")
        try:
            # opts.epochs is read at every epoch: a hook may change it (budget.py plans the length)
            while self.epoch <= self.opts.epochs and not self.stopping:
                self.sampler.set_epoch(self.epoch, self.start_step)
                loader = make_loader(self.dataset, self.sampler, self.opts.num_workers, self.device.type == "cuda")
                self.steps_per_epoch = self.start_step + len(loader)
                self.step = self.start_step
                self.call("before_epoch")
                for step, batch in enumerate(loader, start=self.start_step + 1):
                    self.step, self.batch = step, batch
                    self.call("before_step")
                    self.losses = self.run_step(batch.to(self.device))
                    self.call("after_step")
                    if self.stopping:
                        break
                self.call("after_epoch")
                self.start_step = 0
                if self.stopping or self.epoch >= self.opts.epochs:
                    break
                self.epoch += 1
        finally:
            self.call("after_train")
        return self.last_saved

    def run_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimiser step on `batch` (on the device), its gradient summed over --accum parts
        of the batch taken one after another; returns the loss terms (means over the batch)."""
        self.optimizer.zero_grad(set_to_none=True)
        parts = batch.split(self.opts.accum)
        shares: list[tuple[dict[str, torch.Tensor], float]] = []
        for i, part in enumerate(parts):
            # gradients are averaged across processes once, in the last part's backward
            syncing = i == len(parts) - 1 or not isinstance(self.model, DistributedDataParallel)
            with contextlib.nullcontext() if syncing else self.model.no_sync():
                with self.precision.autocast():
                    part_losses = self.model(part.images, part.image_sizes, part.image_scales, part.targets)
                share = len(part.indices) / len(batch.indices)
                # The model averages over this part's images; `share` makes the parts add up to the
                # batch mean, and loss_scale the average over processes the global batch's mean.
                self.precision.backward(sum(part_losses.values()) * share * batch.loss_scale)
            shares.append((part_losses, share))
        if self.cfg.TRAIN.CLIP_GRAD_NORM > 0:
            self.precision.unscale(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.TRAIN.CLIP_GRAD_NORM)
        self.precision.step(self.optimizer)
        self.iteration += 1
        if len(shares) == 1:
            return shares[0][0]
        return {name: sum(p[name].detach() * share for p, share in shares) for name in shares[0][0]}

    def call(self, moment: str) -> None:
        for hook in self.hooks:
            getattr(hook, moment)(self)

    def save(self, name: str, **extra: object) -> Path | None:
        """Write checkpoint faster_rcnn_<session>_<name>.pth (rank 0 only; None elsewhere)."""
        if not self.world.is_main:
            return None
        o = self.opts
        weights = {"model": unwrap(self.model).state_dict()}
        if self.weight_average is not None:
            average = self.weight_average
            weights = {
                "model": average.state_dict(),
                "trained_model": weights["model"],
                "average_updates": average.updates,
            }
        state = {
            **weights,
            "optimizer": self.optimizer.state_dict(),
            "optimizer_kind": "adam" if isinstance(self.optimizer, torch.optim.Adam) else "sgd",  # for --r
            "schedule": self.schedule.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "iteration": self.iteration,
            "rng": torch.get_rng_state(),
            "config": to_plain(self.cfg),
            "classes": list(self.classes),
            "net": o.net,
            "dataset": o.dataset,
            "session": o.session,
            **extra,
        }
        return save_checkpoint(
            checkpoint_dir(o.save_dir, o.net, o.dataset) / f"faster_rcnn_{o.session}_{name}.pth", state
        )
