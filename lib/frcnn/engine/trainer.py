"""The training loop: roidb -> grouped batches -> model -> losses -> optimiser; its jobs are hooks.

`Trainer.train` is the whole loop: for each epoch, for each batch, the hooks' before_step, one
optimiser step, the hooks' after_step. Everything else is a hook (hooks.py): the learning-rate
schedule, reading losses back and stopping at a non-finite one, the progress bar and log lines,
the metrics file and plots (metrics.py), checkpoints, and evaluation during training.

One process, or several (distributed.py): each process takes its share of every global batch,
DistributedDataParallel averages the gradients, and only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from easydict import EasyDict
from torch.nn.parallel import DistributedDataParallel

from ..config import AUTO, to_plain
from ..convert import LoadContext
from ..data import box_stats
from ..data.augment import Augment
from ..data.datasets.base import ImageRecord
from ..data.datasets.factory import dataset_spec
from ..data.loader import RoidbDataset, make_loader
from ..data.roidb import build_roidb, joined_records
from ..data.sampler import GroupedBatchSampler
from ..data.validate import check_dataset
from ..modeling import FasterRCNN, build_model
from ..modeling.anchors import AnchorGenerator
from ..modeling.backbones import has_default_weights
from ..structures.batch import Batch
from . import auto_anchors, auto_scale, distributed, finetune
from .amp import Precision
from .anchor_coverage import anchor_coverage
from .budget import WallClockBudget
from .checkpoint import (
    CheckpointError,
    checkpoint_dir,
    checkpoint_path,
    config_value,
    latest_checkpoint,
    load_checkpoint,
    model_differences,
    save_checkpoint,
)
from .hooks import Checkpointer, Hook, LossWatch, LRSchedule, NonFiniteLossError, PeriodicEvaluation, ProgressLog
from .metrics import MetricsLog
from .optim import StepSchedule, build_optimizer, step_in_backward_if_usable

log = logging.getLogger("frcnn.train")

__all__ = ["NonFiniteLossError", "TrainOptions", "Trainer", "train"]


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
    optimizer: str | None = None  # sgd, or with a budget TRAIN.BUDGET_OPTIMIZER
    session: int = 1
    resume: bool = False
    checksession: int | None = None  # None: the session being trained
    checkepoch: int = 1
    checkpoint: int = 0
    save_dir: str = "models"
    data_dir: str = "data"
    disp_interval: int = 100
    checkpoint_interval: int = 0
    eval_interval: int = 0
    accum: int = 1
    use_tfb: bool = False
    pretrained: str | None = None
    device: str = "cpu"
    seed: int | None = None
    amp: bool = False
    compile: bool = False
    strict: bool = False
    budget: float | None = None  # seconds (--budget 25m): planned from measured steps, budget.py


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
        state = {
            "model": unwrap(self.model).state_dict(),
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


def train(opts: TrainOptions, cfg: EasyDict) -> Path | None:
    """Train as `opts` says; returns the last checkpoint written (by rank 0; None elsewhere)."""
    try:
        return build_trainer(opts, cfg).train()
    finally:
        distributed.shutdown()


def build_training_model(
    opts: TrainOptions, cfg: EasyDict, classes: Sequence[str], records: Sequence[ImageRecord] | None = None
) -> FasterRCNN:
    """The model to train: from a whole detector when --pretrained holds one (finetune.py; it
    keeps the detector's anchors), else from its backbone's pretrained weights (--pretrained or
    the defaults), with `ANCHOR_SCALES: auto` first resolved from the training `records`
    (auto_anchors.py) into the numbers cfg, and so the checkpoint, then holds."""
    context = LoadContext(opts.net, None, opts.data_dir)
    detector = finetune.read_detector_file(opts.pretrained, context) if opts.pretrained else None
    if detector is not None:
        for change in finetune.adopt_architecture(cfg, detector, opts.net, opts.pretrained):
            log.info("the detector's architecture: %s", change)
        model, _ = build_model(cfg, opts.net, len(classes), use_default_weights=False)
        kept = finetune.init_from_detector(model, detector, classes)
        log.info("%s", finetune.describe(opts.pretrained, detector, kept, classes))
        return model
    if records is not None:
        auto_anchors.resolve_auto_anchors(cfg, records)
    cfg.BACKBONE_FROM_SCRATCH = opts.pretrained is None and not has_default_weights(opts.net, opts.data_dir)
    model, source = build_model(cfg, opts.net, len(classes), opts.pretrained, opts.data_dir)
    log.info("backbone %s", source)
    # The checkpoint's config names the weights' pixel format, so that the model is rebuilt as trained.
    cfg.PRETRAINED_FORMAT = "caffe" if model.channel_order == "BGR" else "torchvision"
    return model


def build_trainer(opts: TrainOptions, cfg: EasyDict) -> Trainer:
    """Data, model, optimiser, schedule, resume and hooks of the run `opts` and `cfg` describe."""
    use_cuda = opts.device.startswith("cuda")
    world = distributed.init(use_cuda)
    t = Trainer(opts, cfg, world, torch.device(f"cuda:{world.local_rank}" if use_cuda else "cpu"))
    if not world.is_main:
        logging.getLogger("frcnn").setLevel(logging.WARNING)
    seed = cfg.RNG_SEED if opts.seed is None else opts.seed
    torch.manual_seed(seed)
    resumed = resume_checkpoint(opts, cfg) if opts.resume else None  # before any `auto` is resolved
    t.roidb, t.classes = training_roidb(opts, cfg, world)
    model = t.model = build_training_model(opts, cfg, t.classes, t.roidb).to(t.device)
    if world.is_main:
        report_anchor_coverage(model, t.roidb, cfg)
    kind, lr, warmup = optimiser_recipe(opts, cfg, saved_optimizer_kind(resumed[1]) if resumed else None)
    t.optimizer = build_optimizer(model, cfg, kind, lr)
    t.precision = Precision.for_device(t.device, opts.amp)
    if opts.amp:
        log.info("mixed precision: %s", t.precision.describe())
    t.sampler = GroupedBatchSampler(
        [r.aspect_ratio for r in t.roidb],
        opts.batch_size,
        len(cfg.TRAIN.SCALES),
        cfg.TRAIN.ASPECT_JITTER,
        True,
        seed,
        world.rank,
        world.world_size,
    )
    augment = Augment(cfg.TRAIN.AUGMENT)
    if augment:
        log.info("augmentation: %s (torchvision.transforms.v2)", ", ".join(augment.names))
    t.dataset = RoidbDataset(t.roidb, cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE, augment)
    total = (opts.epochs - opts.start_epoch + 1) * len(t.sampler)
    t.schedule = StepSchedule(
        lr,
        opts.lr_decay_step,
        opts.lr_decay_gamma,
        warmup,
        cfg.TRAIN.WARMUP_FACTOR,
        cfg.TRAIN.LR_SCHEDULE,
        total,
    )
    if resumed is not None:
        resume(t, len(t.sampler), *resumed)
    t.model = distribute(model, world, t.device, opts.compile)
    # kept as long as the trainer: the hooks hold it weakly
    scaling, accumulating = t.precision.scaler is not None, opts.accum > 1
    t.in_backward = step_in_backward_if_usable(t.optimizer, cfg, scaling, world.distributed, accumulating)
    if t.in_backward is not None:
        log.info("%d large parameters are updated during backward (TRAIN.STEP_IN_BACKWARD)", len(t.in_backward))
    run_dir = checkpoint_dir(opts.save_dir, opts.net, opts.dataset)
    t.metrics = MetricsLog(
        run_dir, opts.session, world.is_main, opts.use_tfb, resumed_at=t.iteration if opts.resume else 0
    )
    t.hooks = build_hooks(opts, t.metrics)
    return t


def build_hooks(opts: TrainOptions, metrics: MetricsLog) -> list[Hook]:
    """The run's jobs, in the order they are called at each moment."""
    hooks: list[Hook] = [LRSchedule(), LossWatch(), ProgressLog()]
    if opts.budget:
        hooks.append(WallClockBudget(opts.budget))  # before Checkpointer: its stop ends the epoch
    hooks.append(Checkpointer())
    if opts.eval_interval > 0:
        hooks.append(PeriodicEvaluation(opts.eval_interval))
    return [*hooks, metrics]


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
    auto_scale.resolve_auto_scale(cfg, roidb)
    if world.is_main:
        summarise_boxes(roidb, cfg, checkpoint_dir(opts.save_dir, opts.net, opts.dataset))
    return roidb, classes


def report_anchor_coverage(model: FasterRCNN, roidb: list, cfg: EasyDict) -> None:
    scale, max_size, iou = cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE, cfg.TRAIN.RPN_POSITIVE_OVERLAP
    if isinstance(model.rpn.anchor_generator, AnchorGenerator):  # one level: the exact per-axis count
        offset = model.convention.box_offset
        boxes = auto_anchors.grid_boxes(roidb, scale, max_size, cfg.FEAT_STRIDE, offset)
        share = auto_anchors.coverage(boxes, cfg.FEAT_STRIDE, cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS, iou, offset)
        boxes = len(boxes)
    else:  # a pyramid: anchor by anchor
        share, boxes = anchor_coverage(model, roidb, scale, max_size, iou)
    log.info(
        "anchors: %.1f%% of the %d training boxes have an anchor inside the image at IoU >= %.2f "
        "(RPN_POSITIVE_OVERLAP)",
        100 * share,
        boxes,
        cfg.TRAIN.RPN_POSITIVE_OVERLAP,
    )


def summarise_boxes(roidb: list, cfg: EasyDict, run_dir: Path) -> None:
    """Log the training boxes' sizes at the training scale; box_stats.json and .png in the run folder."""
    stats = box_stats.box_stats(roidb, cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE)
    for line in box_stats.describe(stats):
        log.info("%s", line)
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = {k: getattr(stats, k) for k in ("images", "boxes", "quantiles", "objects_per_image", "image_sizes")}
    (run_dir / "box_stats.json").write_text(json.dumps({"quantiles_at": box_stats.QUANTILES, **summary}, indent=1))
    box_stats.plot_box_stats(stats, run_dir / "box_stats.png")


SCALE_KEYS = ("TRAIN.SCALES", "TRAIN.MAX_SIZE", "TEST.SCALES", "TEST.MAX_SIZE")


def resume_checkpoint(o: TrainOptions, cfg: EasyDict) -> tuple[Path, dict]:
    """The checkpoint --r names (without --checksession, the session being trained) and its
    contents. With `ANCHOR_SCALES: auto` (`TRAIN.SCALES: auto`), cfg takes the checkpoint's
    anchors (input scales): a resumed run keeps what it was trained with rather than choosing
    again from data that may have changed since."""
    session = o.session if o.checksession is None else o.checksession
    if o.checkpoint:
        path = checkpoint_path(o.save_dir, o.net, o.dataset, session, o.checkepoch, o.checkpoint)
    else:
        path = latest_checkpoint(o.save_dir, o.net, o.dataset, session)
    if path is None:
        raise FileNotFoundError(
            f"--r: no checkpoint of session {session} under {checkpoint_dir(o.save_dir, o.net, o.dataset)}"
        )
    state = load_checkpoint(path)
    scales, ratios = (config_value(state.get("config", {}), key) for key in ("ANCHOR_SCALES", "ANCHOR_RATIOS"))
    if cfg.ANCHOR_SCALES == AUTO and scales is not None and scales != AUTO:
        cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS = list(scales), list(ratios or cfg.ANCHOR_RATIOS)
        log.info("anchors: auto -> the resumed checkpoint's scales %s ratios %s", scales, cfg.ANCHOR_RATIOS)
    stored = {key: config_value(state.get("config", {}), key) for key in SCALE_KEYS}
    if cfg.TRAIN.SCALES == AUTO and None not in stored.values() and stored["TRAIN.SCALES"] != AUTO:
        for key, value in stored.items():
            section, name = key.split(".")
            cfg[section][name] = value
        log.info("input scale: auto -> the resumed checkpoint's %s", stored)
    return path, state


def resume(t: Trainer, steps_per_epoch: int, path: Path, state: dict) -> None:
    """Load the checkpoint `state` (read from `path` by resume_checkpoint) into the trainer
    (model, optimiser, schedule, RNG, where the loop stands)."""
    o = t.opts
    differences = model_differences(state, o.net, t.classes, to_plain(t.cfg))
    if differences:
        listed = "\n  ".join(differences)
        raise CheckpointError(f"--r: {path} holds another model than this run describes:\n  {listed}")
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.schedule = StepSchedule(**state["schedule"])
    torch.set_rng_state(state["rng"])
    t.epoch, t.start_step, t.iteration = state["epoch"], state["step"], state["iteration"]
    if t.start_step >= steps_per_epoch:
        t.epoch, t.start_step = t.epoch + 1, 0
    log.info("resumed from %s at epoch %d, step %d", path, t.epoch, t.start_step)


def distribute(model: FasterRCNN, world: distributed.World, device: torch.device, compile: bool) -> torch.nn.Module:
    """The model as the steps call it: in DistributedDataParallel with several processes, compiled with --compile."""
    if world.distributed:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[world.local_rank] if device.type == "cuda" else None)
    if compile:
        compile_convolutions(unwrap(model), device)
    return model


def optimiser_recipe(opts: TrainOptions, cfg: EasyDict, resumed_kind: str | None = None) -> tuple[str, float, int]:
    """(optimiser, learning rate, warm-up iterations): --o and --lr where given; else a resumed
    run's optimiser (`resumed_kind`; its learning rate comes back with the schedule), a --budget
    run's short-schedule recipe (TRAIN.BUDGET_*), or SGD at TRAIN.LEARNING_RATE. Budget runs warm
    up over at least BUDGET_WARMUP_ITERS (the budget caps it at a tenth of the planned steps)."""
    t = cfg.TRAIN
    if resumed_kind and opts.optimizer and opts.optimizer != resumed_kind:
        raise CheckpointError(f"--r: the checkpoint was trained with {resumed_kind}, not --o {opts.optimizer}")
    if opts.budget is None:
        kind = opts.optimizer or resumed_kind or "sgd"
        return kind, t.LEARNING_RATE if opts.lr is None else opts.lr, t.WARMUP_ITERS
    kind = opts.optimizer or resumed_kind or t.BUDGET_OPTIMIZER
    recipe_lr = t.BUDGET_LEARNING_RATE if kind == t.BUDGET_OPTIMIZER else t.LEARNING_RATE
    lr = recipe_lr if opts.lr is None else opts.lr
    log.info("budget run: %s at learning rate %g (--o and --lr choose others)", kind, lr)
    return kind, lr, max(t.WARMUP_ITERS, t.BUDGET_WARMUP_ITERS)


def saved_optimizer_kind(state: dict) -> str:
    """The optimiser a checkpoint was trained with: saved since budget runs default to Adam, else
    told from its state (Adam keeps moment estimates, SGD a momentum buffer)."""
    if state.get("optimizer_kind"):
        return state["optimizer_kind"]
    per_param = state.get("optimizer", {}).get("state", {})
    return "adam" if any("exp_avg" in v for v in per_param.values()) else "sgd"
