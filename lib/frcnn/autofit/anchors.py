"""`ANCHOR_SCALES: auto`: anchors chosen from the training boxes before the model is built.

The RPN can only learn a box that some anchor matches at TRAIN.RPN_POSITIVE_OVERLAP, with the
anchors at their real places on the stride grid (coverage.py). So the choice maximises that
share of the training boxes (at the training scale, as the loader resizes them):

1. every candidate anchor shape (a scale on a 1/8-octave grid x a ratio on a 1/4-octave grid,
   spanning the boxes' sizes and aspect ratios) gets, for every box, the best IoU any of its
   copies on the grid reaches (`best_ious`: exact, per axis, no anchor enumeration);
2. for each number of scales x ratios (A = len(scales) x len(ratios) <= MAX_ANCHORS), k-means
   with 1 - IoU distance on the boxes' (w, h) (YOLO's autoanchor) gives starting sizes and
   ratios, improved one value at a time on those grids (coordinate ascent) for the share covered,
   ties broken by the mean best IoU;
3. the best set with A <= PLAIN_ANCHORS (the original's 9) is kept, unless a larger one covers
   CLEAR_GAIN more of the boxes; among sets within TIE of the best, the one with fewest anchors.

Deterministic (fixed seed; at most MAX_BOXES boxes, drawn with it, take part in the search; the
reported figures are over all boxes). Single-level nets only: pyramid nets keep ANCHOR_SIZES.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from easydict import EasyDict

from ..config import AUTO, default_config
from ..modeling.anchors import generate_base_anchors
from ..modeling.conventions import get_convention
from .profile import BoxProfile, GridBoxes

log = logging.getLogger("frcnn.train")

MAX_ANCHORS = 15  # never more anchors per cell than this
PLAIN_ANCHORS = 9  # the original's count, exceeded only for CLEAR_GAIN more coverage
CLEAR_GAIN = 0.02  # share of the boxes a set above PLAIN_ANCHORS must add
TIE = 0.001  # sets covering within this share of the best are ties: the fewest anchors win
MAX_RATIOS = 4
MAX_BOXES = 8000  # boxes taking part in the search (drawn with SEED); coverage is reported over all
SCALE_STEPS_PER_OCTAVE = 8
RATIO_STEPS_PER_OCTAVE = 4
SEED = 0
_CHUNK = 256  # boxes per block of best_ious (bounds the memory of the (boxes, shapes) arrays)


@dataclass
class AnchorChoice:
    """The chosen ANCHOR_SCALES and ANCHOR_RATIOS, the share of the training boxes they cover
    and the share the original's default anchors cover, over `boxes` boxes; `fallback` says why
    the defaults were kept, when they were."""

    scales: list[float]
    ratios: list[float]
    coverage: float
    default_coverage: float
    boxes: int
    fallback: str | None = None


def _best_overlap(b1, b2, length, grid, a1, a2, stride: int, offset: float) -> np.ndarray:
    """(B, C): along one axis, the longest overlap of box b (b1..b2) with a copy of anchor c
    (a1..a2 shifted by k x stride, k on the grid) that lies inside 0..length. The overlap is
    concave in k and largest where the centres meet, so the two grid steps around that place
    (clipped to the allowed range) hold the best."""
    b1, b2, length, grid = b1[:, None], b2[:, None], length[:, None], grid[:, None]
    k_min = np.maximum(0.0, np.ceil(-a1 / stride))
    limit = (length - a2) / stride
    k_max = np.minimum(np.ceil(limit) - 1 if offset else np.floor(limit), grid - 1)
    centre = np.floor(((b1 + b2) - (a1 + a2)) / (2 * stride))
    best = np.zeros(np.broadcast_shapes(b1.shape, a1.shape))
    for k in (np.clip(centre, k_min, k_max), np.clip(centre + 1, k_min, k_max)):
        shift = k * stride
        overlap = np.minimum(a2 + shift, b2) - np.maximum(a1 + shift, b1) + offset
        best = np.maximum(best, overlap)
    return np.where(k_max >= k_min, best, 0.0)


def best_ious(boxes: GridBoxes, base_anchors: np.ndarray, stride: int, offset: float = 1.0) -> np.ndarray:
    """(B, C) float32: for each box, the best IoU of any copy of cell anchor c (base_anchors
    (C, 4), as generate_base_anchors gives them) on the stride grid, inside the image. Equal to
    what anchor_coverage computes anchor by anchor: the intersection is the product of the two
    axes' overlaps, and the positions along x and y are chosen independently."""
    a = base_anchors.astype(np.float64)
    area_a = (a[:, 2] - a[:, 0] + offset) * (a[:, 3] - a[:, 1] + offset)
    out = np.zeros((len(boxes), len(a)), np.float32)
    for start in range(0, len(boxes), _CHUNK):
        part = boxes.take(slice(start, start + _CHUNK))
        b, (h, w), (rows, cols) = part.boxes, part.sizes.T, part.grids.T
        across = _best_overlap(b[:, 0], b[:, 2], w, cols, a[:, 0], a[:, 2], stride, offset)
        down = _best_overlap(b[:, 1], b[:, 3], h, rows, a[:, 1], a[:, 3], stride, offset)
        inter = across * down
        area_b = (b[:, 2] - b[:, 0] + offset) * (b[:, 3] - b[:, 1] + offset)
        union = area_a[None, :] + area_b[:, None] - inter
        out[start : start + len(b)] = inter / np.maximum(union, 1e-6)
    return out


def anchor_shapes(stride: int, scales: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
    """(len(scales), len(ratios), 4) cell anchors: [i, j] is scale i at ratio j."""
    base = generate_base_anchors(stride, ratios, scales).numpy()  # ratio-major
    return base.reshape(len(ratios), len(scales), 4).transpose(1, 0, 2)


def coverage(boxes: GridBoxes, stride: int, scales, ratios, positive_iou: float, offset: float = 1.0) -> float:
    """The share of `boxes` some anchor of scales x ratios matches at positive_iou (nan: no boxes)."""
    if not len(boxes):
        return float("nan")
    ious = best_ious(boxes, anchor_shapes(stride, scales, ratios).reshape(-1, 4), stride, offset)
    return float((ious.max(axis=1) >= positive_iou).mean())


def _log_grid(values: np.ndarray, steps_per_octave: int, low: float, high: float) -> list[float]:
    """Powers of 2 ** (1 / steps_per_octave) from below values' 0.5% quantile / low to above
    their 99.5% quantile x high, rounded to 3 significant digits (short numbers in the config)."""
    lo, hi = np.quantile(values, [0.005, 0.995])
    first = math.floor(steps_per_octave * math.log2(lo / low))
    last = math.ceil(steps_per_octave * math.log2(hi * high))
    return sorted({float(f"{2 ** (k / steps_per_octave):.3g}") for k in range(first, last + 1)})


def candidate_grids(wh: np.ndarray, stride: int) -> tuple[list[float], list[float]]:
    """The scales (anchor side / stride) and ratios (h / w) the search picks from."""
    sides = np.sqrt(wh[:, 0] * wh[:, 1]) / stride
    scales = _log_grid(sides, SCALE_STEPS_PER_OCTAVE, 1.5, 1.5)
    aspects = np.clip(wh[:, 1] / wh[:, 0], 1 / 16, 16)
    ratios = _log_grid(aspects, RATIO_STEPS_PER_OCTAVE, 1.2, 1.2)
    return scales, ratios


def _wh_iou(wh: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N, K) IoU of boxes and centres of these (w, h), aligned on one centre."""
    inter = np.minimum(wh[:, None, 0], centres[None, :, 0]) * np.minimum(wh[:, None, 1], centres[None, :, 1])
    return inter / (wh[:, None].prod(-1) + centres[None].prod(-1) - inter)


def kmeans_wh(wh: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 30) -> np.ndarray:
    """k (w, h) centres of the boxes' sizes by k-means with 1 - IoU as the distance (YOLOv2's
    anchor clustering), from k-means++ starts; sorted by area."""
    centres = wh[[rng.integers(len(wh))]]
    while len(centres) < k:
        distance = 1 - _wh_iou(wh, centres).max(axis=1)
        if distance.sum() <= 0:
            break
        centres = np.vstack((centres, wh[rng.choice(len(wh), p=distance / distance.sum())]))
    assigned = None
    for _ in range(iterations):
        nearest = _wh_iou(wh, centres).argmax(axis=1)
        if assigned is not None and np.array_equal(nearest, assigned):
            break
        assigned = nearest
        counts = np.bincount(nearest, minlength=len(centres))[:, None]
        sums = np.stack([np.bincount(nearest, weights=wh[:, i], minlength=len(centres)) for i in (0, 1)], axis=1)
        centres = np.where(counts > 0, sums / np.maximum(counts, 1), centres)  # an empty cluster stays
    return centres[np.argsort(centres.prod(axis=1))]


def _nearest(grid: Sequence[float], values: np.ndarray) -> list[int]:
    """Indices of the grid values nearest (in log) to each of `values`."""
    logs = np.log(np.asarray(grid))
    return [int(np.abs(logs - math.log(v)).argmin()) for v in values]


def starting_sets(centres: np.ndarray, stride: int, n_scales: int, n_ratios: int, grids) -> tuple[list, list]:
    """Grid indices of n_scales sizes and n_ratios ratios summarising the k-means centres: the
    centres sorted by size (by ratio) in equal groups, each group's geometric mean."""
    scales_grid, ratios_grid = grids
    sides = np.sort(np.sqrt(centres.prod(axis=1)) / stride)
    aspects = np.sort(centres[:, 1] / centres[:, 0])
    groups = lambda values, n: [np.exp(np.log(g).mean()) for g in np.array_split(values, n) if len(g)]  # noqa: E731
    return _nearest(scales_grid, groups(sides, n_scales)), _nearest(ratios_grid, groups(aspects, n_ratios))


@dataclass
class _Candidate:
    """Grid indices of a set's scales and ratios, the boxes it covers, and its search score."""

    scales: list[int]
    ratios: list[int]
    covered: int
    score: float

    @property
    def count(self) -> int:
        return len(self.scales) * len(self.ratios)


def _score(best: np.ndarray, positive_iou: float) -> np.ndarray:
    """Per column of best IoUs (B, N): boxes covered + 0.999 x mean best IoU (coverage first,
    then how well the boxes are matched, which breaks ties and guides the search)."""
    return (best >= positive_iou).sum(axis=0) + 0.999 * best.mean(axis=0, dtype=np.float64)


def _improve(ious: np.ndarray, picked: list[int], other: list[int], positive_iou: float) -> bool:
    """One pass of coordinate ascent on the middle axis of ious (B, N, M), the other axis fixed
    to `other`: each picked value is replaced by the one that scores best with the rest (never a
    value the rest holds, so duplicates move away). True when something changed."""
    along = ious[:, :, other].max(axis=2)  # (B, N): best over the fixed axis, per value of this one
    changed = False
    for i in range(len(picked)):
        rest = picked[:i] + picked[i + 1 :]
        held = along[:, rest].max(axis=1) if rest else np.zeros(len(along), along.dtype)
        scores = _score(np.maximum(held[:, None], along), positive_iou)
        scores[rest] = -np.inf
        j = int(scores.argmax())
        if scores[j] > scores[picked[i]] + 1e-9:
            picked[i], changed = j, True
    return changed


def _ascend(ious: np.ndarray, scales: list[int], ratios: list[int], positive_iou: float) -> _Candidate:
    """Coordinate ascent from these grid indices (ious: (B, scales grid, ratios grid))."""
    by_ratio = ious.transpose(0, 2, 1)
    for _ in range(20):
        changed = _improve(ious, scales, ratios, positive_iou)
        if not (_improve(by_ratio, ratios, scales, positive_iou) or changed):
            break
    scales, ratios = sorted(set(scales)), sorted(set(ratios))
    best = ious[:, scales][:, :, ratios].reshape(len(ious), -1).max(axis=1)
    return _Candidate(scales, ratios, int((best >= positive_iou).sum()), float(_score(best[:, None], positive_iou)[0]))


def _starts(found: dict, centres: np.ndarray, stride: int, n_scales: int, n_ratios: int, grids) -> list:
    """Where the ascent for n_scales x n_ratios starts: the k-means summary, and the best sets
    found with one scale or one ratio fewer, plus a copy of one of their values (which the
    ascent moves to where it helps most), so that more anchors never cover less."""
    scales, ratios = starting_sets(centres, stride, n_scales, n_ratios, grids)
    scales += scales[-1:] * (n_scales - len(scales))  # too few distinct boxes: moved apart
    ratios += ratios[-1:] * (n_ratios - len(ratios))
    starts = [(scales, ratios)]
    if (n_scales - 1, n_ratios) in found:
        fewer = found[n_scales - 1, n_ratios]
        starts.append((fewer.scales + fewer.scales[-1:], list(fewer.ratios)))
    if (n_scales, n_ratios - 1) in found:
        fewer = found[n_scales, n_ratios - 1]
        starts.append((list(fewer.scales), fewer.ratios + fewer.ratios[-1:]))
    return starts


def _search(ious: np.ndarray, wh: np.ndarray, stride: int, grids, positive_iou: float) -> list[_Candidate]:
    """The best set found for each number of scales x ratios up to MAX_ANCHORS anchors; more
    scales are not tried once every box is covered."""
    found: dict[tuple[int, int], _Candidate] = {}
    centres: dict[int, np.ndarray] = {}
    for n_ratios in range(1, min(MAX_RATIOS, len(grids[1])) + 1):
        for n_scales in range(1, min(MAX_ANCHORS // n_ratios, len(grids[0])) + 1):
            k = n_scales * n_ratios
            if k not in centres:  # one seeded k-means per k, whatever the order
                centres[k] = kmeans_wh(wh, k, np.random.default_rng(SEED + k))
            starts = _starts(found, centres[k], stride, n_scales, n_ratios, grids)
            tried = [_ascend(ious, scales, ratios, positive_iou) for scales, ratios in starts]
            found[n_scales, n_ratios] = best = max(tried, key=lambda c: c.score)
            if best.covered == len(ious):
                break
    return list(found.values())


def _select(results: list[_Candidate], boxes: int) -> _Candidate:
    """The best set with at most PLAIN_ANCHORS anchors, or of all when one covers CLEAR_GAIN
    more; of the sets within TIE of the best, the fewest anchors (then the best score)."""
    plain = [c for c in results if c.count <= PLAIN_ANCHORS]
    best_plain = max(c.covered for c in plain)
    allowed = results if any(c.covered >= best_plain + CLEAR_GAIN * boxes for c in results) else plain
    top = max(c.covered for c in allowed)
    tied = [c for c in allowed if c.covered >= top - TIE * boxes]
    return min(tied, key=lambda c: (c.count, -c.score))


def choose_anchors(
    profile: BoxProfile,
    scale: int,
    max_size: int,
    stride: int,
    positive_iou: float,
    offset: float = 1.0,
) -> AnchorChoice:
    """ANCHOR_SCALES and ANCHOR_RATIOS for a single-level net of FEAT_STRIDE `stride` trained at
    `scale` / `max_size` (TRAIN.SCALES[0], TRAIN.MAX_SIZE) with RPN_POSITIVE_OVERLAP
    `positive_iou`: those that let the RPN learn the most training boxes (module docstring).
    Without boxes to learn, the original's defaults, with `fallback` saying so."""
    defaults = default_config()
    default_scales, default_ratios = list(defaults.ANCHOR_SCALES), list(defaults.ANCHOR_RATIOS)
    boxes = profile.at_scale(scale, max_size).on_grid(stride, offset)
    if not len(boxes):
        reason = "no training boxes to choose anchors from (every image is empty, difficult or crowd)"
        return AnchorChoice(default_scales, default_ratios, float("nan"), float("nan"), 0, reason)
    sample = boxes
    if len(boxes) > MAX_BOXES:
        sample = boxes.take(np.sort(np.random.default_rng(SEED).choice(len(boxes), MAX_BOXES, replace=False)))
    b = sample.boxes
    wh = np.maximum(np.stack((b[:, 2] - b[:, 0] + offset, b[:, 3] - b[:, 1] + offset), axis=1), 0.5)
    grids = candidate_grids(wh, stride)
    shapes = anchor_shapes(stride, *grids).reshape(-1, 4)
    ious = best_ious(sample, shapes, stride, offset).reshape(len(sample), len(grids[0]), len(grids[1]))
    chosen = _select(_search(ious, wh, stride, grids, positive_iou), len(sample))
    scales, ratios = [grids[0][i] for i in chosen.scales], [grids[1][j] for j in chosen.ratios]
    return AnchorChoice(
        scales,
        ratios,
        coverage(boxes, stride, scales, ratios, positive_iou, offset),
        coverage(boxes, stride, default_scales, default_ratios, positive_iou, offset),
        len(boxes),
    )


def describe(choice: AnchorChoice, positive_iou: float) -> str:
    """The log line of a choice: the anchors and the coverage before (the original's default
    anchors) and after."""
    if choice.fallback:
        return (
            f"anchors: auto -> {choice.fallback}; kept the original's defaults: scales {choice.scales} "
            f"ratios {choice.ratios}"
        )
    return (
        f"anchors: auto -> scales {choice.scales} ratios {choice.ratios} "
        f"({len(choice.scales) * len(choice.ratios)} per cell); coverage at IoU {positive_iou:g}: "
        f"{100 * choice.default_coverage:.1f}% -> {100 * choice.coverage:.1f}% of {choice.boxes} training boxes "
        "(before: the original's default anchors)"
    )


def resolve_auto_anchors(cfg: EasyDict, profile: BoxProfile) -> AnchorChoice | None:
    """If cfg.ANCHOR_SCALES is `auto`, choose the anchors from the training boxes' `profile` and write
    the numbers into cfg (ANCHOR_SCALES and ANCHOR_RATIOS), before the model is built: the
    checkpoint's config then holds them, and testing, the demo and load_detector rebuild the same
    anchors. Pyramid nets (ANCHOR_SIZES set) keep their anchors; ANCHOR_SCALES, unused there,
    becomes the default's numbers. Returns the choice, or None when nothing was chosen."""
    if cfg.ANCHOR_SCALES != AUTO:
        return None
    if cfg.ANCHOR_SIZES:
        cfg.ANCHOR_SCALES = list(default_config().ANCHOR_SCALES)
        log.info(
            "anchors: auto is for single-level nets; this pyramid net keeps its anchors as configured "
            "(ANCHOR_SIZES %s, ANCHOR_RATIOS %s)",
            cfg.ANCHOR_SIZES,
            cfg.ANCHOR_RATIOS,
        )
        return None
    offset = get_convention(cfg.CONVENTION).box_offset
    positive_iou = cfg.TRAIN.RPN_POSITIVE_OVERLAP
    choice = choose_anchors(profile, cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE, cfg.FEAT_STRIDE, positive_iou, offset)
    cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS = list(choice.scales), list(choice.ratios)
    (log.warning if choice.fallback else log.info)("%s", describe(choice, positive_iou))
    return choice
