"""Detector files from elsewhere, read as this project's checkpoints.

This project's checkpoint is a dict holding `model` (the FasterRCNN state_dict), `config` (plain
values), `classes` (background first), `net` and optionally `dataset`. `as_checkpoint` returns
that layout for each kind of file `--load_name` accepts:
- this project's own checkpoints, unchanged;
- the original jwyang/faster-rcnn.pytorch's checkpoints (original.py);
- torchvision's Faster R-CNN state_dicts (torchvision_detectors.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..utils.errors import one_line
from . import original, torchvision_detectors
from .context import LoadContext, UnknownCheckpointError

__all__ = ["LoadContext", "UnknownCheckpointError", "as_checkpoint", "is_project_checkpoint"]


def is_project_checkpoint(state: Any) -> bool:
    return isinstance(state, Mapping) and all(k in state for k in ("model", "config", "classes", "net"))


def as_checkpoint(state: Any, path: str | Path, context: LoadContext) -> dict[str, Any]:
    """`state` (what torch.load returned for `path`) in this project's checkpoint layout."""
    if is_project_checkpoint(state):
        return dict(state)
    for kind in (original, torchvision_detectors):
        if kind.recognises(state):
            return kind.convert(state, Path(path), context)
    what = f"keys {_some_keys(state)}" if isinstance(state, Mapping) else type(state).__name__
    raise UnknownCheckpointError(
        f"{path}: not a detector file this project reads ({what}); it reads its own checkpoints "
        "(trainval_net.py), the original faster-rcnn.pytorch's (a dict with 'model' holding RCNN_base.* keys) "
        "and torchvision's Faster R-CNN state_dicts (backbone.body.*, rpn.head.*, roi_heads.*)"
    )


def _some_keys(state: Mapping) -> str:
    """A few of a mapping's keys for a message: sorted as text (a file's keys may be of any type)."""
    names = sorted({one_line(repr(k), 60) for k in state})
    return f"[{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}]"
