"""Detector files from elsewhere, read as this project's checkpoints.

This project's checkpoint is a dict holding `model` (the FasterRCNN state_dict), `config` (plain
values), `classes` (background first), `net` and optionally `dataset`. `as_checkpoint` returns
that layout for each kind of file `--load_name` accepts:
- this project's own checkpoints, unchanged;
- the original jwyang/faster-rcnn.pytorch's checkpoints (original.py);
- torchvision's Faster R-CNN state_dicts (torchvision_detectors.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DEFAULT_CFGS_DIR


class UnknownCheckpointError(ValueError):
    """A file that none of the known checkpoint layouts fits."""


@dataclass
class LoadContext:
    """What the command line says about a file that may not say it itself.

    net: --net (the original's checkpoints do not name their backbone).
    dataset: --dataset (the original's checkpoints do not hold their class names).
    data_dir: where datasets live (class names of a dataset read from its files).
    cfgs_dir: the project's cfgs/ folder (each net's settings).
    overrides: --set pairs (e.g. TEST.SCALES [320] picks torchvision's 320 px MobileNet).
    """

    net: str | None = None
    dataset: str | None = None
    data_dir: str | Path = "data"
    cfgs_dir: str | Path = DEFAULT_CFGS_DIR
    overrides: Sequence[str] = field(default_factory=tuple)


def is_project_checkpoint(state: Any) -> bool:
    return isinstance(state, Mapping) and all(k in state for k in ("model", "config", "classes", "net"))


def as_checkpoint(state: Any, path: str | Path, context: LoadContext) -> dict[str, Any]:
    """`state` (what torch.load returned for `path`) in this project's checkpoint layout."""
    if is_project_checkpoint(state):
        return dict(state)
    from . import original, torchvision_detectors

    for kind in (original, torchvision_detectors):
        if kind.recognises(state):
            return kind.convert(state, Path(path), context)
    what = f"keys {sorted(state)[:6]}" if isinstance(state, Mapping) else type(state).__name__
    raise UnknownCheckpointError(
        f"{path}: not a detector file this project reads ({what}); it reads its own checkpoints "
        "(trainval_net.py), the original faster-rcnn.pytorch's (a dict with 'model' holding RCNN_base.* keys) "
        "and torchvision's Faster R-CNN state_dicts (backbone.body.*, rpn.head.*, roi_heads.*)"
    )
