"""--r: a run continued from its checkpoint, with the anchors, input scale and optimiser it was
trained with."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from easydict import EasyDict

from ..config import AUTO, to_plain
from ..runs.checkpoint import (
    CheckpointError,
    checkpoint_dir,
    checkpoint_path,
    config_value,
    latest_checkpoint,
    load_checkpoint,
    model_differences,
)
from .loop import Trainer
from .optim import StepSchedule
from .options import TrainOptions

log = logging.getLogger("frcnn.train")


SCALE_KEYS = ("TRAIN.SCALES", "TRAIN.MAX_SIZE", "TEST.SCALES", "TEST.MAX_SIZE")


def resume_checkpoint(o: TrainOptions, cfg: EasyDict) -> tuple[Path, dict]:
    """The checkpoint --r names (without --checksession, the session being trained) and its
    contents. With `ANCHOR_SCALES: auto` (`TRAIN.SCALES: auto`, `TILES.SIZE: auto`), cfg takes the
    checkpoint's anchors (input scales, tile size): a resumed run keeps what it was trained with rather than choosing
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
    tiles = config_value(state.get("config", {}), "TILES.SIZE")
    if cfg.TILES.SIZE == AUTO and isinstance(tiles, int):
        cfg.TILES.SIZE = tiles
        log.info("tiles: auto -> the resumed checkpoint's %d px", tiles)
    return path, state


def resume(t: Trainer, steps_per_epoch: int, path: Path, state: dict) -> None:
    """Load the checkpoint `state` (read from `path` by resume_checkpoint) into the trainer
    (model, optimiser, schedule, RNG, where the loop stands)."""
    o = t.opts
    differences = model_differences(state, o.net, t.classes, to_plain(t.cfg))
    if differences:
        listed = "\n  ".join(differences)
        raise CheckpointError(f"--r: {path} holds another model than this run describes:\n  {listed}")
    if "trained_model" in state:  # saved with TRAIN.EMA_DECAY: "model" is the average (ema.py)
        t.model.load_state_dict(state["trained_model"])
        t.resumed_average = (state["model"], int(state["average_updates"]))
    else:
        t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.schedule = StepSchedule(**state["schedule"])
    torch.set_rng_state(state["rng"])
    t.epoch, t.start_step, t.iteration = state["epoch"], state["step"], state["iteration"]
    if t.start_step >= steps_per_epoch:
        t.epoch, t.start_step = t.epoch + 1, 0
    log.info("resumed from %s at epoch %d, step %d", path, t.epoch, t.start_step)


def saved_optimizer_kind(state: dict) -> str:
    """The optimiser a checkpoint was trained with: saved since budget runs default to Adam, else
    told from its state (Adam keeps moment estimates, SGD a momentum buffer)."""
    if state.get("optimizer_kind"):
        return state["optimizer_kind"]
    per_param = state.get("optimizer", {}).get("state", {})
    return "adam" if any("exp_avg" in v for v in per_param.values()) else "sgd"
