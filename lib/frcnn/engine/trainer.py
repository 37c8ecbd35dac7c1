"""The training loop: roidb -> grouped batches -> model -> losses -> optimiser, with checkpoints.

One process, or several (distributed.py): each process takes its share of every global batch,
DistributedDataParallel averages the gradients, and only rank 0 logs and writes checkpoints.
Losses are read back from the device only every `disp_interval` steps (and before every
checkpoint); a non-finite loss found then stops every process with the step, the loss terms and
the images of the first bad batch, before any checkpoint of the damaged weights is written.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from easydict import EasyDict
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import to_plain
from ..data.datasets.factory import dataset_spec
from ..data.loader import RoidbDataset, make_loader
from ..data.roidb import build_roidb, joined_records
from ..data.sampler import GroupedBatchSampler
from ..data.validate import check_dataset
from ..modeling import FasterRCNN, build_model
from ..structures.batch import Batch
from . import distributed
from .amp import Precision
from .checkpoint import (
    CheckpointError,
    checkpoint_dir,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    model_differences,
    save_checkpoint,
)
from .optim import StepSchedule, build_optimizer, step_in_backward_if_usable

log = logging.getLogger("frcnn.train")


@dataclass
class TrainOptions:
    """trainval_net.py's flags (see its --help)."""

    dataset: str = "shapes"
    net: str = "tiny"
    batch_size: int = 1
    num_workers: int = 0
    lr: float | None = None
    lr_decay_step: int = 5
    lr_decay_gamma: float = 0.1
    epochs: int = 20
    start_epoch: int = 1
    optimizer: str = "sgd"
    session: int = 1
    resume: bool = False
    checksession: int = 1
    checkepoch: int = 1
    checkpoint: int = 0
    save_dir: str = "models"
    data_dir: str = "data"
    disp_interval: int = 100
    checkpoint_interval: int = 0
    pretrained: str | None = None
    device: str = "cpu"
    seed: int | None = None
    amp: bool = False
    compile: bool = False
    strict: bool = False


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class LossMonitor:
    """Keeps each step's loss terms on the device and reads them back in one go."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.steps: list[tuple[int, list[str]]] = []
        self.values: list[torch.Tensor] = []

    def add(self, step: int, losses: dict[str, torch.Tensor], images: list[str]) -> None:
        self.names = list(losses)
        self.values.append(torch.stack([v.detach().float() for v in losses.values()]))
        self.steps.append((step, images))

    def flush(self) -> dict[str, float]:
        """Mean of each term since the last flush. Raises NonFiniteLossError, in every process,
        if any process saw a non-finite loss."""
        error = None
        means: dict[str, float] = {}
        if self.values:
            values = torch.stack(self.values).cpu().numpy()
            bad = ~np.isfinite(values).all(axis=1)
            if bad.any():
                i = int(np.argmax(bad))
                step, images = self.steps[i]
                terms = ", ".join(f"{n}={v:.4g}" for n, v in zip(self.names, values[i]))
                error = (
                    f"non-finite loss at step {step}: {terms}; images of the batch: {', '.join(images)}. "
                    "No checkpoint was written after the last good one; try a lower --lr, or check these images."
                )
            else:
                means = dict(zip(self.names, values.mean(axis=0).tolist()))
                means["loss"] = float(values.sum(axis=1).mean())
        self.values, self.steps = [], []
        error = distributed.first_message(error)
        if error:
            raise NonFiniteLossError(error)
        return means


def unwrap(model: torch.nn.Module) -> FasterRCNN:
    return model.module if isinstance(model, DistributedDataParallel) else model


def compile_convolutions(model: FasterRCNN, device: torch.device) -> None:
    """torch.compile the backbone and the per-RoI head in place (parameter names unchanged, so
    checkpoints stay interchangeable). Only these: the proposal and sampling steps have
    data-dependent shapes that recompile at every new box count, and compiling the whole model
    fails in torch 2.14 on channels-last RPN outputs."""
    if device.type == "cpu":
        log.warning("--compile on CPU measured slower than eager for the tiny net (README, speed section)")
    model.backbone.compile(dynamic=True)
    model.roi_heads.box_head.compile(dynamic=True)


@dataclass
class _Run:
    """What the steps and checkpoints of one training run share."""

    opts: TrainOptions
    cfg: EasyDict
    world: distributed.World
    device: torch.device
    model: torch.nn.Module  # wrapped in DistributedDataParallel with several processes
    optimizer: torch.optim.Optimizer
    schedule: StepSchedule
    precision: Precision
    roidb: list
    classes: tuple[str, ...]
    iteration: int = 0

    def save(self, epoch: int, step: int) -> Path | None:
        """Write a checkpoint (rank 0 only; None elsewhere)."""
        if not self.world.is_main:
            return None
        o = self.opts
        return save_checkpoint(
            checkpoint_path(o.save_dir, o.net, o.dataset, o.session, epoch, step),
            {
                "model": unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "epoch": epoch,
                "step": step,
                "iteration": self.iteration,
                "rng": torch.get_rng_state(),
                "config": to_plain(self.cfg),
                "classes": list(self.classes),
                "net": o.net,
                "dataset": o.dataset,
                "session": o.session,
            },
        )

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimiser step on `batch` (already on the device); returns the loss terms."""
        with self.precision.autocast():
            losses = self.model(batch.images, batch.image_sizes, batch.image_scales, batch.targets)
        # The model averages over this process's images; the scale makes the average over
        # processes the mean over the global batch, whatever each process's share.
        loss = sum(losses.values()) * batch.loss_scale
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss)
        if self.cfg.TRAIN.CLIP_GRAD_NORM > 0:
            self.precision.unscale(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.TRAIN.CLIP_GRAD_NORM)
        self.precision.step(self.optimizer)
        self.iteration += 1
        return losses


def train(opts: TrainOptions, cfg: EasyDict) -> Path | None:
    """Train as `opts` says; returns the last checkpoint written (by rank 0; None elsewhere)."""
    use_cuda = opts.device.startswith("cuda")
    world = distributed.init(use_cuda)
    device = torch.device(f"cuda:{world.local_rank}" if use_cuda else "cpu")
    if not world.is_main:
        logging.getLogger("frcnn").setLevel(logging.WARNING)
    seed = cfg.RNG_SEED if opts.seed is None else opts.seed
    torch.manual_seed(seed)
    roidb, classes = training_roidb(opts, cfg, world)
    model, source = build_model(cfg, opts.net, len(classes), opts.pretrained, opts.data_dir)
    log.info("backbone %s", source)
    model.to(device)
    lr = default_lr(opts, cfg)
    optimizer = build_optimizer(model, cfg, opts.optimizer, lr)
    schedule = StepSchedule(
        lr, opts.lr_decay_step, opts.lr_decay_gamma, cfg.TRAIN.WARMUP_ITERS, cfg.TRAIN.WARMUP_FACTOR
    )
    precision = Precision.for_device(device, opts.amp)
    if opts.amp:
        log.info("mixed precision: %s", precision.describe())
    ratios = [r.aspect_ratio for r in roidb]
    sampler = GroupedBatchSampler(
        ratios,
        opts.batch_size,
        len(cfg.TRAIN.SCALES),
        cfg.TRAIN.ASPECT_JITTER,
        True,
        seed,
        world.rank,
        world.world_size,
    )
    run = _Run(opts, cfg, world, device, model, optimizer, schedule, precision, roidb, classes)
    start_epoch, start_step = opts.start_epoch, 0
    if opts.resume:
        start_epoch, start_step = resume(run, len(sampler))
    run.model = distribute(model, world, device, opts.compile)
    # kept until train() returns: the hooks hold it weakly
    in_backward = step_in_backward_if_usable(optimizer, cfg, precision.scaler is not None, world.distributed)
    if in_backward is not None:
        log.info("%d large parameters are updated during backward (TRAIN.STEP_IN_BACKWARD)", len(in_backward))
    dataset = RoidbDataset(roidb, cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE)
    last_saved = None
    try:
        for epoch in range(start_epoch, opts.epochs + 1):
            sampler.set_epoch(epoch, start_step)
            loader = make_loader(dataset, sampler, opts.num_workers, pin_memory=use_cuda)
            last_saved = train_epoch(run, epoch, start_step, loader) or last_saved
            start_step = 0
    finally:
        distributed.shutdown()
    return last_saved


def training_roidb(opts: TrainOptions, cfg: EasyDict, world: distributed.World) -> tuple[list, tuple[str, ...]]:
    """The checked, flipped roidb of the run's training datasets, and their classes."""
    datasets = dataset_spec(opts.dataset, opts.data_dir, cfg.VG_VERSION).train()
    classes = datasets[0].classes
    details = checkpoint_dir(opts.save_dir, opts.net, opts.dataset) / "data_check.txt"
    report = check_dataset(
        "+".join(d.name for d in datasets),
        joined_records(datasets),
        [i for d in datasets for i in d.issues],
        len(classes),
        opts.data_dir,
        details,
        opts.strict,
        world.is_main,
    )
    roidb = build_roidb(report.kept, cfg.TRAIN.USE_FLIPPED, cfg.TRAIN.USE_DIFFICULT)
    log.info(
        "dataset %s: %d training images (%s), %d classes: %s",
        opts.dataset,
        len(roidb),
        "with flipped copies" if cfg.TRAIN.USE_FLIPPED else "no flipping",
        len(classes) - 1,
        ", ".join(classes[1:11]) + (", ..." if len(classes) > 11 else ""),
    )
    if world.distributed:
        log.info("%d processes, global batch %d", world.world_size, opts.batch_size)
    return roidb, classes


def resume(run: _Run, steps_per_epoch: int) -> tuple[int, int]:
    """Load the checkpoint --r names into the run (model, optimiser, schedule, RNG, iteration);
    returns the epoch and step to continue from."""
    o = run.opts
    if o.checkpoint:
        path = checkpoint_path(o.save_dir, o.net, o.dataset, o.checksession, o.checkepoch, o.checkpoint)
    else:
        path = latest_checkpoint(o.save_dir, o.net, o.dataset, o.checksession)
    if path is None:
        raise FileNotFoundError(f"--r: no checkpoint of session {o.checksession} under {o.save_dir}")
    state = load_checkpoint(path)
    differences = model_differences(state, o.net, run.classes, to_plain(run.cfg))
    if differences:
        listed = "\n  ".join(differences)
        raise CheckpointError(f"--r: {path} holds another model than this run describes:\n  {listed}")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule = StepSchedule(**state["schedule"])
    torch.set_rng_state(state["rng"])
    epoch, step, run.iteration = state["epoch"], state["step"], state["iteration"]
    if step >= steps_per_epoch:
        epoch, step = epoch + 1, 0
    log.info("resumed from %s at epoch %d, step %d", path, epoch, step)
    return epoch, step


def distribute(model: FasterRCNN, world: distributed.World, device: torch.device, compile: bool) -> torch.nn.Module:
    """The model as the steps call it: in DistributedDataParallel with several processes, compiled with --compile."""
    if world.distributed:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[world.local_rank] if device.type == "cuda" else None)
    if compile:
        compile_convolutions(unwrap(model), device)
    return model


def train_epoch(run: _Run, epoch: int, start_step: int, loader: DataLoader) -> Path | None:
    """One epoch from `start_step`, with its checkpoints; returns the last one written."""
    opts, roidb, world = run.opts, run.roidb, run.world
    steps_per_epoch = start_step + len(loader)
    run.model.train()
    monitor = LossMonitor()
    padded, images_seen, shown, last_saved = 0.0, 0, {}, None
    started = time.perf_counter()
    with tqdm(
        total=steps_per_epoch,
        initial=start_step,
        desc=f"epoch {epoch}/{opts.epochs}",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        disable=not world.is_main,
    ) as bar:  # closed on an error too
        step = start_step
        for step, batch in enumerate(loader, start=start_step + 1):
            lr_now = run.schedule.apply(run.optimizer, epoch, run.iteration)
            losses = run.step(batch.to(run.device))
            names = [f"{roidb[i].id}" + (" (flipped)" if roidb[i].flipped else "") for i in batch.indices]
            monitor.add(step, losses, names)
            padded += batch.padded_fraction * len(batch.indices)
            images_seen += len(batch.indices)
            if step % opts.disp_interval == 0 or step == steps_per_epoch:
                shown = monitor.flush()
                rate = images_seen * world.world_size / max(time.perf_counter() - started, 1e-9)
                terms = " ".join(f"{k}={v:.3f}" for k, v in shown.items())
                bar.set_postfix_str(f"{terms} lr={lr_now:.2g} {rate:.1f} img/s")
            if opts.checkpoint_interval and step % opts.checkpoint_interval == 0 and step < steps_per_epoch:
                shown = monitor.flush() or shown  # never save weights after an unchecked loss
                last_saved = run.save(epoch, step) or last_saved
            bar.update(1)
    shown = monitor.flush() or shown
    rate = images_seen * world.world_size / max(time.perf_counter() - started, 1e-9)
    log.info(
        "epoch %d: %s, lr %.3g, %.1f img/s, padding %.1f%% of batch pixels",
        epoch,
        " ".join(f"{k} {v:.4f}" for k, v in shown.items()),
        run.schedule.lr(epoch, run.iteration),
        rate,
        100.0 * padded / max(images_seen, 1),
    )
    saved = run.save(epoch, step)
    if saved is not None:
        log.info("saved %s", saved)
    return saved or last_saved


def default_lr(opts: TrainOptions, cfg: EasyDict) -> float:
    return opts.lr if opts.lr is not None else cfg.TRAIN.LEARNING_RATE
