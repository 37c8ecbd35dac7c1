"""What fitting to the data chooses on two real box sets, pinned: the built-in shapes data (its
1200 training images as generated) and the tree-crown tiles cut from the DeepForest wheel
(tools/tree_tiles.py: 38 training tiles). data/*.npz hold their training boxes and image sizes
(no pixels), so the test needs neither the generator's minutes nor the wheel.

The pinned numbers are those the trainer chose before the fitting code moved into autofit/ (its
three separate walks over the boxes at e28b886); a change of the profile, the scale choice or the
anchor search that moves any of them fails here.
"""

from pathlib import Path

import numpy as np
import pytest
from conftest import CFGS

from frcnn.autofit import anchors, scale, summary
from frcnn.autofit.profile import BoxProfile
from frcnn.config import build_config
from frcnn.data.datasets.base import ImageRecord
from frcnn.data.datasets.factory import AUTO_ANCHORS, SHAPES_PROFILE
from frcnn.modeling.conventions import get_convention

DATA = Path(__file__).parent / "data"


def records(name: str) -> list[ImageRecord]:
    with np.load(DATA / f"{name}_boxes.npz", allow_pickle=False) as f:
        ends = np.cumsum(f["counts"])
        starts = ends - f["counts"]
        return [
            ImageRecord(
                i,
                f"{i}.jpg",
                width=int(f["widths"][i]),
                height=int(f["heights"][i]),
                boxes=f["boxes"][a:b],
                labels=np.ones(b - a, np.int64),
                difficult=f["difficult"][a:b],
                crowd=f["crowd"][a:b],
            )
            for i, (a, b) in enumerate(zip(starts, ends))
        ]


SHAPES_ANCHORS = [1.0, 1.41, 1.68, 2.0, 2.38, 2.83, 4.36, 6.73]
TREE_ANCHORS = [1.68, 2.38, 3.08, 3.67, 4.36, 5.66, 8.0]
# (net, box set, --set pairs) -> (TRAIN.SCALES, MAX_SIZE, ANCHOR_SCALES, ANCHOR_RATIOS, 25% side)
PINNED = {
    ("tiny", "shapes", ()): ([256], 512, SHAPES_ANCHORS, [1.0], 47.032),
    ("tiny", "shapes", ("TRAIN.SCALES", "auto")): ([256], 512, SHAPES_ANCHORS, [1.0], 47.032),
    ("tiny", "shapes", ("TRAIN.SCALES", "auto", "TEST.SCALES", "[128]")): (
        [192],
        768,
        [0.917, 1.09, 1.54, 1.83, 2.18, 2.83, 4.36, 5.66],
        [1.0],
        35.524,
    ),
    ("mobilenet_v2", "tree_crowns", ()): ([600], 1000, TREE_ANCHORS, [0.841, 1.19], 49.49),
    ("mobilenet_v2", "tree_crowns", ("TRAIN.SCALES", "auto")): ([600], 1000, TREE_ANCHORS, [0.841, 1.19], 49.49),
    ("mobilenet_v2", "tree_crowns", ("TRAIN.SCALES", "auto", "TEST.SCALES", "[300]", "TEST.MAX_SIZE", "500")): (
        [384],
        640,
        [1.19, 1.83, 2.18, 2.59, 3.08, 4.0, 5.19],
        [0.841, 1.19],
        32.034,
    ),
}


@pytest.mark.parametrize("key", list(PINNED), ids=lambda key: f"{key[0]}-{key[1]}-{'-'.join(key[2]) or 'defaults'}")
def test_the_fitted_scale_and_anchors_are_those_pinned(key):
    net, name, settings = key
    cfg = build_config(net, CFGS, SHAPES_PROFILE if name == "shapes" else AUTO_ANCHORS, set_cfgs=list(settings))
    profile = BoxProfile.of(records(name))
    scale.resolve_auto_scale(cfg, profile)
    anchors.resolve_auto_anchors(cfg, profile)
    train_scales, max_size, scales, ratios, quarter_side = PINNED[key]
    assert (cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE, cfg.TEST.SCALES, cfg.TEST.MAX_SIZE) == (
        train_scales,
        max_size,
        train_scales,
        max_size,
    )
    assert (cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS) == (scales, ratios)
    stats = summary.box_stats(profile.at_scale(cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE))
    assert stats.quantiles["side"][1] == quarter_side


def test_the_coverage_figures_of_the_logs_are_pinned():
    # "coverage at IoU 0.5: 33.4% -> 94.6% of 3540 training boxes" (shapes),
    # "at IoU 0.7: 5.9% -> 69.9% of 782 training boxes" (tree crowns, mobilenet_v2)
    for name, net, settings, pinned in (
        ("shapes", "tiny", SHAPES_PROFILE, (0.334, 0.946, 3540)),
        ("tree_crowns", "mobilenet_v2", AUTO_ANCHORS, (0.059, 0.699, 782)),
    ):
        cfg = build_config(net, CFGS, settings)
        offset = get_convention(cfg.CONVENTION).box_offset
        choice = anchors.choose_anchors(
            BoxProfile.of(records(name)),
            cfg.TRAIN.SCALES[0],
            cfg.TRAIN.MAX_SIZE,
            cfg.FEAT_STRIDE,
            cfg.TRAIN.RPN_POSITIVE_OVERLAP,
            offset,
        )
        assert (round(choice.default_coverage, 3), round(choice.coverage, 3), choice.boxes) == pinned
