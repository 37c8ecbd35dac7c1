"""`TRAIN.SCALES: auto`: the input scale chosen from the training boxes.

A box whose side is less than about two feature strides (32 px on a stride-16 map) covers a cell
or two of the map the RPN scores and the RoI pooling samples: it is found late or never. The
smallest anchor of a pyramid net (32 px for torchvision's FPNs) sets the same bound there. So:
at the configured scale (TEST.SCALES[0], which TRAIN.SCALES: auto replaces), count the training
boxes (difficult and crowd ones left out) whose side, sqrt(w x h), falls below the bound. If more
than SMALL_SHARE of them do, raise the scale until the SMALL_SHARE quantile of the sides reaches
the bound, in steps of 32 px, at most MAX_UPSCALE times the configured one (time and memory
grow with its square; the largest multiple of 32 px within it). MAX_SIZE grows by the same
factor. Training and testing both use the chosen scale; the numbers are written into the config,
so the checkpoint holds them and test_net.py, demo.py and export rebuild the same input size.

Without `auto`, the trainer still says when many boxes are below the bound (warn_small_boxes).
The bound is read from the config before a detector given to --pretrained replaces its
architecture: fine-tuning a detector with another stride or anchors, set the scale by hand.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from easydict import EasyDict

from ..config import AUTO
from .profile import BoxProfile

log = logging.getLogger("frcnn.train")

SMALL_SHARE = 0.25  # "many" small boxes: more than this share below the bound
MAX_UPSCALE = 2.0  # the chosen scale is at most this many times the configured one
SCALE_STEP = 32


@dataclass
class ScaleChoice:
    scale: int
    max_size: int
    bound: float  # the side in pixels below which a box is small
    small_before: float  # share of boxes below the bound at the configured scale
    small_after: float  # ... at the chosen one
    capped: bool  # the chosen scale is MAX_UPSCALE's limit


def small_side_bound(cfg: EasyDict) -> float:
    """Two feature strides, or a pyramid net's smallest anchor."""
    if cfg.ANCHOR_SIZES:
        return float(min(min(level) for level in cfg.ANCHOR_SIZES))
    return 2.0 * cfg.FEAT_STRIDE


def small_share(profile: BoxProfile, scale: int, max_size: int, bound: float) -> float:
    return share_below(profile.at_scale(scale, max_size).object_sides, bound)


def share_below(sides: np.ndarray, bound: float) -> float:
    return float((sides < bound).mean()) if len(sides) else 0.0


def choose_scale(profile: BoxProfile, scale: int, max_size: int, bound: float) -> ScaleChoice:
    """The configured `scale` / `max_size` unless more than SMALL_SHARE of the boxes are below
    `bound` there; then the smallest multiple of SCALE_STEP above it at which the SMALL_SHARE
    quantile of the sides reaches `bound` (sides grow with the scale: images are resized whole),
    capped at MAX_UPSCALE x `scale`."""
    sides = profile.at_scale(scale, max_size).object_sides
    before, chosen = share_below(sides, bound), scale
    if before > SMALL_SHARE:
        # "lower": a side that is there, so that at most SMALL_SHARE stay below the bound
        quantile = float(np.quantile(sides, SMALL_SHARE, method="lower"))
        wanted = int(math.ceil(scale * bound / max(quantile, 1e-6) / SCALE_STEP) * SCALE_STEP)
        limit = max(int(MAX_UPSCALE * scale) // SCALE_STEP * SCALE_STEP, scale)
        chosen, capped = min(wanted, limit), wanted > limit
    else:
        capped = False
    grown = int(round(max_size * chosen / scale))
    after = small_share(profile, chosen, grown, bound) if chosen != scale else before
    return ScaleChoice(chosen, grown, bound, before, after, capped)


def describe(choice: ScaleChoice, configured: int) -> str:
    change = (
        f"{configured} -> {choice.scale} px (MAX_SIZE {choice.max_size}{', capped at 2x' if choice.capped else ''})"
        if choice.scale != configured
        else f"{configured} px kept"
    )
    return (
        f"input scale: auto -> {change}; boxes below {choice.bound:g} px (sqrt of area): "
        f"{100 * choice.small_before:.1f}% at {configured} px, {100 * choice.small_after:.1f}% at {choice.scale} px"
    )


def resolve_auto_scale(cfg: EasyDict, profile: BoxProfile) -> ScaleChoice | None:
    """If TRAIN.SCALES is `auto`, choose the scale from the training boxes' `profile` and write it into TRAIN.SCALES,
    TEST.SCALES and both MAX_SIZEs; else warn when many boxes are small at the configured scale."""
    bound = small_side_bound(cfg)
    if cfg.TRAIN.SCALES != AUTO:
        warn_small_boxes(profile, cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE, bound)
        return None
    configured = cfg.TEST.SCALES[0]
    choice = choose_scale(profile, configured, cfg.TEST.MAX_SIZE, bound)
    cfg.TRAIN.SCALES, cfg.TEST.SCALES = [choice.scale], [choice.scale]
    cfg.TRAIN.MAX_SIZE = cfg.TEST.MAX_SIZE = choice.max_size
    log.info("%s", describe(choice, configured))
    return choice


def warn_small_boxes(profile: BoxProfile, scale: int, max_size: int, bound: float) -> None:
    share = small_share(profile, scale, max_size, bound)
    if share > SMALL_SHARE:
        log.warning(
            "%.0f%% of the training boxes are smaller than %g px (sqrt of area) at scale %d, where the "
            "feature map or the smallest anchor hardly sees them: --set TRAIN.SCALES auto chooses a larger "
            "scale from the data (docs/your_data.md, Input scale chosen from the data)",
            100 * share,
            bound,
            scale,
        )
