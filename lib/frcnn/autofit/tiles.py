"""`tiles: auto` (TILES.SIZE auto, the default of dataset YAML data): the tile size chosen from the
training images and boxes, or no tiles.

Tiles are for images much larger than the training scale whose objects the whole-image resize
makes small. At the configured scale (TRAIN.SCALES[0], or TEST.SCALES[0] while TRAIN.SCALES is
`auto`) the loader resizes an image by a factor; the image is *large* when that factor is below
LARGE_FACTOR (shrunk 1.5 times or more). Tiles are cut when the large images hold boxes and more
than SMALL_SHARE of those boxes' sides, so shrunk, fall below the small-object bound of
autofit/scale.py (two feature strides, or a pyramid's smallest anchor), and never below COCO's
small objects (32 px): a net whose anchors start at 16 px (mobilenet_v2_fpn) still gets tiles
where a resize makes most objects small, rather than training on objects shrunk to its limit.
Else TILES.SIZE is 0:
photographs of large objects stay whole however many pixels they have. Once there are tiles,
every image larger than a tile is cut, in training and at test time, large or not (tiling.py):
one model sees one scale of objects.

The tile is smaller than the scale where the objects are small even in their own pixels, so
that the loader enlarges each tile, and its objects with it, by a *zoom*: the factor that brings
the SMALL_SHARE quantile of the large images' object sides, at 1:1, up to ZOOM_TARGET times the
small-object bound (48 px on a stride-16 net), at most MAX_ZOOM. Aerial crowns of 30-40 px, cut
into tiles of the scale and so seen at 1:1, sat at the stride-16 net's limit: enlarged 1.5x,
they were found far better on the next scene (docs/your_data.md, Large images: train on
tiles); a larger zoom costs the square of it in tiles and is not measured, hence
the cap. Where objects are large enough, the tile is the scale itself (zoom 1: a tile keeps its
objects' pixels), and where they are large it grows, in steps of 32 px, to the 95th percentile of
the objects' sides divided by the tiles' overlap: an object no wider than the overlap strip lies
whole inside some tile. A tile no smaller than every large image cuts nothing: then no tiles
either.

Where no tiles are needed for training but many training boxes are small at the scale anyway,
an image larger than every training image (the whole scene after training on crops of it) would,
resized whole, shrink its objects further than training ever did. So TILES.SIZE is then the
largest training image's longer side (a *guard*, rounded up to 32 px): no training image is cut,
and a larger image at test time is cut into pieces that the model sees as it saw the training
images. Photographs of large objects get no guard.

The choice is written into the config (so the checkpoint holds a number) and logged with why.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from easydict import EasyDict

from ..config import AUTO
from ..data.datasets.base import ImageRecord
from .profile import BoxProfile
from .scale import SCALE_STEP, SMALL_SHARE, share_below, small_side_bound

log = logging.getLogger("frcnn.train")

LARGE_FACTOR = 2 / 3  # an image resized by less than this is large
SIDE_QUANTILE = 0.95  # the large objects a tile should hold whole
MIN_OVERLAP = 0.05  # the overlap the size rule assumes at least (0 would ask for endless tiles)
COCO_SMALL = 32.0  # px, sqrt of area: COCO's small objects
ZOOM_TARGET = 1.5  # x the small-object bound: where the tiles' SMALL_SHARE quantile of sides is brought
MAX_ZOOM = 1.5  # the tiles are enlarged by at most this (the zoom measured; tiles grow with its square)


@dataclass(frozen=True)
class TileChoice:
    size: int  # 0: no tiles
    wanted: int  # the size the rule asked for before the images' own size was compared (0: none)
    scale: int  # the configured scale the images were measured at
    large_images: int  # images resized by less than LARGE_FACTOR
    images: int
    small_share: float  # share of the large images' boxes below `bound` when resized whole
    bound: float
    guard: bool = False  # `size` cuts no training image, only larger images at test time
    small_overall: float = 0.0  # share of all the training boxes below `bound` when resized whole
    zoom: float = 1.0  # scale / size: how much the loader enlarges a tile


def configured_scale(cfg: EasyDict) -> tuple[int, int]:
    """The (scale, max size) the loader would use before `TRAIN.SCALES: auto` chooses its own."""
    if cfg.TRAIN.SCALES == AUTO:
        return cfg.TEST.SCALES[0], cfg.TEST.MAX_SIZE
    return cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE


def choose_tiles(profile: BoxProfile, scale: int, max_size: int, bound: float, overlap: float) -> TileChoice:
    """The tile size for the whole training images of `profile` (module docstring)."""
    whole = profile.at_scale(scale, max_size)
    factors = whole.image_sizes[:, 0] / np.maximum(profile.heights, 1)
    large = factors < LARGE_FACTOR
    in_large = large[profile.image_of_box]
    small = share_below(whole.object_sides[in_large], bound)
    wanted = size = 0
    if in_large.any() and small > SMALL_SHARE:
        sides = profile.object_sides()[in_large]
        whole_object = float(np.quantile(sides, SIDE_QUANTILE)) / max(overlap, MIN_OVERLAP)
        wanted = max(scale, int(math.ceil(whole_object / SCALE_STEP) * SCALE_STEP))
        if wanted == scale:
            wanted = int(round(scale / tile_zoom(sides, bound)))
        size = wanted if wanted < np.maximum(profile.heights, profile.widths)[large].max() else 0
    overall = share_below(whole.object_sides, bound)
    guard = not size and profile.images > 0 and overall > SMALL_SHARE
    if guard:
        size = int(math.ceil(np.maximum(profile.heights, profile.widths).max() / SCALE_STEP) * SCALE_STEP)
    zoom = scale / size if size and not guard and size < scale else 1.0
    return TileChoice(size, wanted, scale, int(large.sum()), profile.images, small, bound, guard, overall, zoom)


def tile_zoom(sides: np.ndarray, bound: float) -> float:
    """The zoom (module docstring) for objects of `sides` px (sqrt of area, at 1:1): 1 to MAX_ZOOM."""
    quantile = float(np.quantile(sides, SMALL_SHARE, method="lower"))  # a side that is there
    return float(np.clip(ZOOM_TARGET * bound / max(quantile, 1e-6), 1.0, MAX_ZOOM))


def describe(choice: TileChoice) -> str:
    reason = (
        f"{choice.large_images} of {choice.images} training images shrink below {LARGE_FACTOR:.2f}x "
        f"at scale {choice.scale}, where {100 * choice.small_share:.0f}% of their boxes fall below "
        f"{choice.bound:g} px (sqrt of area)"
    )
    if choice.size and not choice.guard:
        zoom = (
            f", enlarged {choice.zoom:.2f}x to scale {choice.scale} (at least a quarter of their objects are under "
            f"{ZOOM_TARGET * choice.bound:g} px in their own pixels)"
            if choice.zoom > 1
            else ""
        )
        return f"tiles: auto -> {choice.size} px{zoom}; {reason}"
    if choice.wanted:
        reason += f"; but a tile holding their objects whole would be {choice.wanted} px, as large as the images"
    if choice.guard:
        return (
            f"tiles: auto -> {choice.size} px, which cuts no training image ({reason}), only a larger "
            f"image at test time: {100 * choice.small_overall:.0f}% of all the training boxes are below "
            f"{choice.bound:g} px at this scale already, and would shrink further"
        )
    return f"tiles: auto -> none, the images stay whole; {reason}"


def resolve_auto_tiles(cfg: EasyDict, records: Sequence[ImageRecord]) -> TileChoice | None:
    """If TILES.SIZE is `auto`, choose it from the whole training `records` and write it into cfg."""
    if cfg.TILES.SIZE != AUTO:
        return None
    scale, max_size = configured_scale(cfg)
    bound = max(COCO_SMALL, small_side_bound(cfg))
    choice = choose_tiles(BoxProfile.of(records), scale, max_size, bound, cfg.TILES.OVERLAP)
    cfg.TILES.SIZE = choice.size
    log.info("%s", describe(choice))
    return choice
