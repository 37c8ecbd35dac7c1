"""How the project fits itself to the data: one pass over the training boxes (profile.py), from
which the input scale (scale.py), the anchors (anchors.py), the anchor coverage (coverage.py) and
the box statistics a person reads (summary.py) are all computed; and, over the whole images before
that, whether to cut them into tiles and how large (tiles.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from easydict import EasyDict

from ..data.datasets.base import ImageRecord
from . import scale, summary
from .profile import BoxProfile
from .tiles import resolve_auto_tiles

log = logging.getLogger("frcnn.train")

__all__ = ["fit_scale", "resolve_auto_tiles"]


def fit_scale(cfg: EasyDict, records: Sequence[ImageRecord], summary_dir: Path | None) -> BoxProfile:
    """The training boxes' profile; the input scale chosen from it when TRAIN.SCALES is `auto`
    (written into cfg); and the boxes' summary at the scale training uses, logged and, with a
    `summary_dir`, written there (box_stats.json, box_stats.png)."""
    profile = BoxProfile.of(records)
    scale.resolve_auto_scale(cfg, profile)
    if summary_dir is not None:
        stats = summary.box_stats(profile.at_scale(cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE))
        for line in summary.describe(stats):
            log.info("%s", line)
        summary.write_summary(stats, summary_dir)
    return profile
