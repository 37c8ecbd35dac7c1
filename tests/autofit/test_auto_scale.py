"""TRAIN.SCALES: auto: the input scale from the training boxes, on hand-built box sets."""

import logging

import numpy as np
import pytest
from conftest import CFGS, SMALL_NET

from frcnn.autofit import scale as auto_scale
from frcnn.autofit.anchors import choose_anchors
from frcnn.autofit.profile import BoxProfile
from frcnn.config import build_config, default_config, merge_pairs, to_plain
from frcnn.data.datasets.base import ImageRecord
from frcnn.data.datasets.factory import dataset_spec
from frcnn.modeling.conventions import get_convention
from frcnn.runs.checkpoint import checkpoint_path, save_checkpoint
from frcnn.training.build import TrainOptions, build_trainer
from frcnn.training.resume import resume_checkpoint


def squares(sides, image=400, difficult_every=0) -> list[ImageRecord]:
    """One image of `image` x `image` px per side, holding one square box of that side."""
    records = []
    for i, side in enumerate(sides):
        box = np.array([[10, 10, 10 + side - 1, 10 + side - 1]], np.float32)
        hard = np.array([bool(difficult_every) and i % difficult_every == 0])
        records.append(ImageRecord(i, f"{i}.jpg", image, image, box, np.ones(1, np.int64), hard, np.zeros(1, bool)))
    return records


def test_boxes_all_one_small_size_raise_the_scale_until_they_reach_two_strides():
    # 20 px boxes at 400 px: all below 32 px; 400 x 32 / 20 = 640, a multiple of 32
    choice = auto_scale.choose_scale(BoxProfile.of(squares([20] * 10)), 400, 1000, 32.0)
    assert (choice.scale, choice.max_size) == (640, 1600)
    assert (choice.small_before, choice.small_after, choice.capped) == (1.0, 0.0, False)


def test_tiny_boxes_are_capped_at_twice_the_configured_scale():
    choice = auto_scale.choose_scale(BoxProfile.of(squares([5] * 10)), 400, 1000, 32.0)
    assert (choice.scale, choice.max_size, choice.capped) == (800, 2000, True)
    assert choice.small_after == 1.0  # 10 px: still small, and said so
    assert "400 -> 800 px (MAX_SIZE 2000, capped at 2x)" in auto_scale.describe(choice, 400)


def test_the_cap_is_the_largest_multiple_of_32_within_twice_the_scale():
    choice = auto_scale.choose_scale(BoxProfile.of(squares([5] * 4, image=600)), 600, 1000, 32.0)
    assert (choice.scale, choice.max_size, choice.capped) == (1184, 1973, True)


def test_a_few_small_boxes_among_large_ones_keep_the_scale():
    # 2 of 10 below the bound: 20% is not "many" (SMALL_SHARE 25%)
    choice = auto_scale.choose_scale(BoxProfile.of(squares([10, 10] + [100] * 8)), 600, 1000, 32.0)
    assert (choice.scale, choice.max_size, choice.small_before) == (600, 1000, 0.2)
    assert "600 px kept" in auto_scale.describe(choice, 600)


def test_the_quarter_quantile_sets_the_scale_when_many_are_small():
    # sides 8, 16, 24, ..., 80 (10 boxes): 3 below 32 at 400 px; the 25% quantile, taken as a
    # side that is there (the lower one), is 24 px: 400 x 32 / 24 = 533.3 -> 544, where 24 px
    # becomes 32.6 and only 8 and 16 (x 1.36) stay below
    choice = auto_scale.choose_scale(BoxProfile.of(squares(range(8, 81, 8))), 400, 1000, 32.0)
    assert choice.small_before == 0.3 and choice.scale == 544
    assert choice.small_after == pytest.approx(0.2)


def test_difficult_boxes_and_empty_data_do_not_count():
    # the 5 px boxes are all difficult: only the 100 px ones count
    records = squares([5, 100] * 5, difficult_every=2)
    assert auto_scale.choose_scale(BoxProfile.of(records), 600, 1000, 32.0).small_before == 0.0
    empty = [ImageRecord(0, "0.jpg", 400, 400)]
    assert auto_scale.choose_scale(BoxProfile.of(empty), 600, 1000, 32.0).scale == 600


def test_the_bound_is_two_strides_or_a_pyramids_smallest_anchor():
    cfg = default_config()
    assert auto_scale.small_side_bound(cfg) == 32.0
    cfg.ANCHOR_SIZES = [[32, 40], [64], [16, 128]]
    assert auto_scale.small_side_bound(cfg) == 16.0


def test_auto_writes_the_chosen_scale_for_training_and_testing(caplog):
    cfg = build_config("tiny", CFGS)
    merge_pairs(cfg, ["TRAIN.SCALES", "auto", "TEST.SCALES", "[400]", "TEST.MAX_SIZE", "1000"])
    assert cfg.TRAIN.SCALES == "auto"
    with caplog.at_level(logging.INFO, logger="frcnn.train"):
        auto_scale.resolve_auto_scale(cfg, BoxProfile.of(squares([20] * 10)))
    assert (cfg.TRAIN.SCALES, cfg.TEST.SCALES, cfg.TRAIN.MAX_SIZE, cfg.TEST.MAX_SIZE) == ([640], [640], 1600, 1600)
    assert "input scale: auto -> 400 -> 640 px" in caplog.text
    merge_pairs(cfg, ["TRAIN.SCALES", "[500]"])  # a list again after auto
    assert cfg.TRAIN.SCALES == [500]


def test_without_auto_many_small_boxes_are_reported_and_nothing_changes(caplog):
    cfg = build_config("tiny", CFGS)
    with caplog.at_level(logging.WARNING, logger="frcnn.train"):
        assert auto_scale.resolve_auto_scale(cfg, BoxProfile.of(squares([10] * 4, image=600))) is None
    assert "100% of the training boxes are smaller than 32 px (sqrt of area) at scale 600" in caplog.text
    assert cfg.TRAIN.SCALES == [600]


def test_a_resumed_run_keeps_the_scale_it_was_trained_at(tmp_path):
    stored = to_plain(default_config())
    stored["TRAIN"]["SCALES"], stored["TEST"]["SCALES"] = [704], [704]
    stored["TRAIN"]["MAX_SIZE"] = stored["TEST"]["MAX_SIZE"] = 1173
    save_checkpoint(checkpoint_path(tmp_path, "tiny", "shapes", 1, 1, 5), {"model": {}, "config": stored})
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=["TRAIN.SCALES", "auto"])
    resume_checkpoint(TrainOptions(save_dir=str(tmp_path), resume=True), cfg)
    assert (cfg.TRAIN.SCALES, cfg.TEST.SCALES, cfg.TRAIN.MAX_SIZE, cfg.TEST.MAX_SIZE) == ([704], [704], 1173, 1173)
    assert auto_scale.resolve_auto_scale(cfg, BoxProfile.of(squares([5] * 4))) is None  # nothing left to choose


def test_a_training_run_resolves_auto_before_the_data_and_the_anchors_use_the_scale(small_shapes_root, tmp_path):
    # TEST.SCALES 512 where shapes trains at 256: auto's scale (512 or more) is the one the data
    # loader and the anchor choice then use
    pairs = [*SMALL_NET, "TRAIN.SCALES", "auto", "TEST.SCALES", "[512]"]
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=pairs)
    opts = TrainOptions(batch_size=4, epochs=1, save_dir=str(tmp_path), data_dir=str(small_shapes_root.parent))
    t = build_trainer(opts, cfg)
    scale, max_size = cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE
    assert (
        scale >= 512 and cfg.TEST.SCALES == [scale] and t.dataset.scales == [scale] and t.dataset.max_size == max_size
    )
    offset = get_convention(cfg.CONVENTION).box_offset
    chosen = choose_anchors(
        BoxProfile.of(t.roidb), scale, max_size, cfg.FEAT_STRIDE, cfg.TRAIN.RPN_POSITIVE_OVERLAP, offset
    )
    assert (cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS) == (list(chosen.scales), list(chosen.ratios))
