"""Checkpoints: `<save_dir>/<net>/<dataset>/faster_rcnn_<session>_<epoch>_<step>.pth`.

A checkpoint holds the model, optimiser, LR schedule, epoch, step, RNG state, the full config and
the class names, as tensors and plain Python values only, so it loads with
torch.load(weights_only=True): a checkpoint that would need to run code to unpickle is refused.
Writes go to a temporary file that is renamed into place, so a kill at any moment leaves the
previous checkpoint intact and never a half-written one under a checkpoint's name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..utils.errors import InputError
from ..utils.files import atomic_write, is_file
from ..utils.safe_load import UnreadableFileError, UnsafeFileError, safe_torch_load

FORMAT_VERSION = 1
_NAME = re.compile(r"^faster_rcnn_(\d+)_(\d+)_(\d+)\.pth$")


class CheckpointError(InputError):
    """A checkpoint that is missing, unreadable, unsafe, or does not fit the model."""


def checkpoint_dir(save_dir: str | Path, net: str, dataset: str) -> Path:
    # A dataset given as a YAML path is named by its file stem.
    return Path(save_dir) / net / Path(dataset).stem


def checkpoint_path(save_dir: str | Path, net: str, dataset: str, session: int, epoch: int, step: int) -> Path:
    return checkpoint_dir(save_dir, net, dataset) / f"faster_rcnn_{session}_{epoch}_{step}.pth"


def session_checkpoints(save_dir: str | Path, net: str, dataset: str, session: int) -> list[Path]:
    """The session's faster_rcnn_<session>_<epoch>_<step>.pth files, oldest (epoch, step) first;
    named ones (`best`) are not among them."""
    found = []
    for path in checkpoint_dir(save_dir, net, dataset).glob(f"faster_rcnn_{session}_*_*.pth"):
        m = _NAME.match(path.name)
        if m and int(m.group(1)) == session:
            found.append((int(m.group(2)), int(m.group(3)), path))
    return [path for _, _, path in sorted(found)]


def latest_checkpoint(save_dir: str | Path, net: str, dataset: str, session: int) -> Path | None:
    """The session's checkpoint with the highest (epoch, step), or None."""
    found = session_checkpoints(save_dir, net, dataset, session)
    return found[-1] if found else None


def prune_checkpoints(save_dir: str | Path, net: str, dataset: str, session: int, keep: int) -> list[Path]:
    """Delete all but the session's newest `keep` (>= 1) epoch / step checkpoints; returns what went."""
    if keep < 1:
        raise ValueError(f"keep at least one checkpoint; got {keep}")
    old = session_checkpoints(save_dir, net, dataset, session)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def find_checkpoint(save_dir: str | Path, net: str, dataset: str, session: int, epoch: int, step: int | None) -> Path:
    """The checkpoint named by --checksession/--checkepoch/--checkpoint; with step None, the one
    with the highest step of that epoch."""
    if step is not None:
        path = checkpoint_path(save_dir, net, dataset, session, epoch, step)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        return path
    folder = checkpoint_dir(save_dir, net, dataset)
    steps = sorted(
        (int(m.group(3)), p)
        for p in folder.glob(f"faster_rcnn_{session}_{epoch}_*.pth")
        if (m := _NAME.match(p.name)) and int(m.group(1)) == session and int(m.group(2)) == epoch
    )
    if not steps:
        raise CheckpointError(f"no checkpoint of session {session}, epoch {epoch} in {folder}")
    return steps[-1][1]


# Config keys that shape the model's parameters or what its layers compute.
MODEL_KEYS = (
    "POOLING_MODE",
    "POOLING_SIZE",
    "CLASS_AGNOSTIC",
    "ANCHOR_SCALES",
    "ANCHOR_SIZES",
    "CONVENTION",
    "BACKBONE_FROM_SCRATCH",
    "RPN_CONV_DEPTH",
    "ANCHOR_RATIOS",
    "FEAT_STRIDE",
    "RPN_CHANNELS",
    "ROI_ALIGN_SAMPLING_RATIO",
    "ROI_ALIGN_ALIGNED",
    "TINY.CHANNELS",
    "TINY.HEAD_DIM",
    "TINY.NORM",
)


def config_value(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg.get(part, {}) if isinstance(cfg, dict) else {}
    return cfg if cfg != {} else None


def model_differences(state: dict[str, Any], net: str, classes: tuple[str, ...], cfg: dict) -> list[str]:
    """What differs between the model a checkpoint holds and the one described by net, classes
    and cfg: 'net: res101 (checkpoint) vs vgg16', one line each."""
    differences = []
    if state.get("net") != net:
        differences.append(f"net: {state.get('net')} (checkpoint) vs {net}")
    stored_classes = tuple(state.get("classes", ()))
    if stored_classes != tuple(classes):
        if len(stored_classes) != len(classes):
            differences.append(f"classes: {len(stored_classes) - 1} (checkpoint) vs {len(classes) - 1}")
        else:
            changed = [f"{a} -> {b}" for a, b in zip(stored_classes, classes) if a != b]
            differences.append(f"class names: {', '.join(changed[:5])}")
    stored_cfg = state.get("config", {})
    for key in MODEL_KEYS:
        before, after = config_value(stored_cfg, key), config_value(cfg, key)
        if before is not None and before != after:
            differences.append(f"{key}: {before} (checkpoint) vs {after}")
    return differences


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` atomically to `path` (utils.files.atomic_write: temporary file in the same
    folder, fsynced, then renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **state}, f)
    return path


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", require_model: bool = True
) -> dict[str, Any]:
    """Read a checkpoint with weights_only=True; raise CheckpointError with the reason otherwise.
    require_model=False accepts any dict (files of other projects, see frcnn.convert)."""
    path = Path(path)
    if not is_file(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = safe_torch_load(path, map_location)
    except (UnsafeFileError, UnreadableFileError) as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(state, dict) or (require_model and "model" not in state):
        raise CheckpointError(f"{path}: not a checkpoint of this project (no 'model' entry)")
    return state
