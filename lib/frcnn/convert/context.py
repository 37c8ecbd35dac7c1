"""What the command line says about a detector file that may not say it itself, and the error of a
file no layout fits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import DEFAULT_CFGS_DIR
from ..utils.errors import InputError


class UnknownCheckpointError(InputError):
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
