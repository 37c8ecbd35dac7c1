"""A Trainer assembled from a run's options (detectron2's defaults.py beside its train_loop.py):
the checked roidb, the fit to the data (input scale, anchors, box summary: autofit/), the model
(from a detector file, pretrained weights or nothing), optimiser and schedule, resume, the
process world and the hooks. `train(opts, cfg)` builds and runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from easydict import EasyDict
from torch.nn.parallel import DistributedDataParallel

from .. import autofit
from ..autofit import anchors, coverage
from ..autofit.profile import BoxProfile
from ..convert import LoadContext
from ..data.augment import Augment
from ..data.datasets.base import ImageRecord
from ..data.datasets.factory import dataset_spec
from ..data.loader import RoidbDataset
from ..data.roidb import build_roidb, difficult_role, joined_records
from ..data.sampler import GroupedBatchSampler
from ..data.tiling import TileShift, tile_records
from ..data.validate import check_dataset
from ..modeling import FasterRCNN, build_model
from ..modeling.backbones import has_default_weights
from ..runs import distributed
from ..runs.checkpoint import checkpoint_dir
from . import finetune
from .amp import Precision
from .budget import WallClockBudget
from .ema import WeightAverage
from .hooks import Checkpointer, LossWatch, LRSchedule, PeriodicEvaluation, ProgressLog
from .loop import Hook, Trainer, unwrap
from .metrics import MetricsLog
from .optim import StepSchedule, build_optimizer, optimiser_recipe, step_in_backward_if_usable
from .options import TrainOptions
from .resume import resume, resume_checkpoint, saved_optimizer_kind

log = logging.getLogger("frcnn.train")

__all__ = ["TrainOptions", "Trainer", "build_trainer", "train"]


def train(opts: TrainOptions, cfg: EasyDict) -> Path | None:
    """Train as `opts` says; returns the last checkpoint written (by rank 0; None elsewhere)."""
    try:
        return build_trainer(opts, cfg).train()
    finally:
        distributed.shutdown()


def build_training_model(
    opts: TrainOptions, cfg: EasyDict, classes: Sequence[str], profile: BoxProfile | None = None
) -> FasterRCNN:
    """The model to train: from a whole detector when --pretrained holds one (finetune.py; it
    keeps the detector's anchors), else from its backbone's pretrained weights (--pretrained or
    the defaults), with `ANCHOR_SCALES: auto` first resolved from the training boxes' `profile`
    (autofit/anchors.py) into the numbers cfg, and so the checkpoint, then holds."""
    context = LoadContext(opts.net, None, opts.data_dir)
    detector = finetune.read_detector_file(opts.pretrained, context) if opts.pretrained else None
    if detector is not None:
        for change in finetune.adopt_architecture(cfg, detector, opts.net, opts.pretrained):
            log.info("the detector's architecture: %s", change)
        model, _ = build_model(cfg, opts.net, len(classes), use_default_weights=False)
        kept = finetune.init_from_detector(model, detector, classes)
        log.info("%s", finetune.describe(opts.pretrained, detector, kept, classes))
        return model
    if profile is not None:
        anchors.resolve_auto_anchors(cfg, profile)
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
    t.roidb, t.classes, profile, scenes = training_roidb(opts, cfg, world)
    model = t.model = build_training_model(opts, cfg, t.classes, profile).to(t.device)
    if world.is_main:
        coverage.report_coverage(model, profile, cfg)
    attach_data(t, seed, scenes)
    attach_optimiser(t, saved_optimizer_kind(resumed[1]) if resumed else None)
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
    t.hooks = build_hooks(opts, cfg, t.metrics)
    return t


def attach_data(t: Trainer, seed: int, scenes: list[ImageRecord]) -> None:
    """The trainer's sampler of grouped batches (this process's share) and its dataset (`scenes`:
    the images its tiles were cut from, for TILES.SHIFT)."""
    cfg = t.cfg
    t.sampler = GroupedBatchSampler(
        [r.aspect_ratio for r in t.roidb],
        t.opts.batch_size,
        len(cfg.TRAIN.SCALES),
        cfg.TRAIN.ASPECT_JITTER,
        True,
        seed,
        t.world.rank,
        t.world.world_size,
    )
    augment = Augment(cfg.TRAIN.AUGMENT)
    if augment:
        log.info("augmentation: %s (torchvision.transforms.v2)", ", ".join(augment.names))
    recut = None
    role = difficult_role(cfg.TRAIN.USE_DIFFICULT, cfg.TRAIN.IGNORE_DIFFICULT)
    if cfg.TILES.SIZE and cfg.TILES.SHIFT:
        recut = TileShift(scenes, cfg.TILES.SHIFT, role)
        log.info(
            "tiles drawn afresh at each load, moved by up to %g of their side (TILES.SHIFT; 0 keeps the fixed grid)",
            cfg.TILES.SHIFT,
        )
    t.dataset = RoidbDataset(
        t.roidb, cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE, augment, recut=recut, ignore_difficult=role == "ignore"
    )


def attach_optimiser(t: Trainer, resumed_kind: str | None) -> None:
    """The trainer's optimiser, precision and learning-rate schedule (after attach_data)."""
    opts, cfg = t.opts, t.cfg
    kind, lr, warmup = optimiser_recipe(opts, cfg, resumed_kind)
    t.optimizer = build_optimizer(t.model, cfg, kind, lr)
    t.precision = Precision.for_device(t.device, opts.amp)
    if opts.amp:
        log.info("mixed precision: %s", t.precision.describe())
    total = (opts.epochs - opts.start_epoch + 1) * len(t.sampler)
    t.schedule = StepSchedule(
        lr, opts.lr_decay_step, opts.lr_decay_gamma, warmup, cfg.TRAIN.WARMUP_FACTOR, cfg.TRAIN.LR_SCHEDULE, total
    )


def build_hooks(opts: TrainOptions, cfg: EasyDict, metrics: MetricsLog) -> list[Hook]:
    """The run's jobs, in the order they are called at each moment."""
    hooks: list[Hook] = [LRSchedule(), LossWatch(), ProgressLog()]
    if cfg.TRAIN.EMA_DECAY > 0:  # before Checkpointer and PeriodicEvaluation: they use the average
        average = WeightAverage(cfg.TRAIN.EMA_DECAY, cfg.TRAIN.EMA_WARMUP)
        hooks.append(average)
        log.info(
            "weights averaged: decay %g per step, ramp of %g steps (TRAIN.EMA_DECAY)", average.decay, average.warmup
        )
    if opts.budget:
        hooks.append(WallClockBudget(opts.budget))  # before Checkpointer: its stop ends the epoch
    hooks.append(Checkpointer())
    if opts.eval_interval > 0:
        hooks.append(PeriodicEvaluation(opts.eval_interval))
    return [*hooks, metrics]


def training_roidb(
    opts: TrainOptions, cfg: EasyDict, world: distributed.World
) -> tuple[list, tuple[str, ...], BoxProfile, list[ImageRecord]]:
    """The checked, flipped roidb of the run's training datasets, their classes, the profile of
    their boxes (with TRAIN.SCALES: auto, the scale is chosen from it: autofit.fit_scale), and the
    checked images before tiling (the roidb's tiles are cut from them)."""
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
    kept = report.kept
    autofit.resolve_auto_tiles(cfg, kept)
    if cfg.TILES.SIZE:
        kept = tile_records(kept, cfg.TILES.SIZE, cfg.TILES.OVERLAP, cfg.TILES.EMPTY_SHARE, cfg.RNG_SEED)
        log.info("tiles of %d px: %d training images cut into %d tiles", cfg.TILES.SIZE, len(report.kept), len(kept))
    roidb = build_roidb(
        kept, cfg.TRAIN.USE_FLIPPED, difficult_role(cfg.TRAIN.USE_DIFFICULT, cfg.TRAIN.IGNORE_DIFFICULT)
    )
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
    profile = autofit.fit_scale(cfg, roidb, details.parent if world.is_main else None)
    return roidb, classes, profile, report.kept


def distribute(model: FasterRCNN, world: distributed.World, device: torch.device, compile: bool) -> torch.nn.Module:
    """The model as the steps call it: in DistributedDataParallel with several processes, compiled with --compile."""
    if world.distributed:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[world.local_rank] if device.type == "cuda" else None)
    if compile:
        compile_convolutions(unwrap(model), device)
    return model


def compile_convolutions(model: FasterRCNN, device: torch.device) -> None:
    """torch.compile the backbone and the per-RoI head in place (parameter names unchanged, so
    checkpoints stay interchangeable). Only these: the proposal and sampling steps have
    data-dependent shapes that recompile at every new box count, and compiling the whole model
    fails in torch 2.14 on channels-last RPN outputs."""
    if device.type == "cpu":
        log.warning("--compile on CPU measured slower than eager for the tiny net (docs/training.md, Speed and memory)")
    model.backbone.compile(dynamic=True)
    model.roi_heads.box_head.compile(dynamic=True)
