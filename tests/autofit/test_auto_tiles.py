"""`tiles: auto`: the tile size from the whole training images and boxes, on hand-built sets."""

import logging

import numpy as np
import pytest
from conftest import CFGS, SMALL_NET

from frcnn.autofit.profile import BoxProfile
from frcnn.autofit.tiles import choose_tiles, describe, resolve_auto_tiles
from frcnn.config import build_config, default_config, merge_pairs, to_plain
from frcnn.data.datasets.base import ImageRecord
from frcnn.data.datasets.custom import DatasetFileError
from frcnn.data.datasets.factory import dataset_spec
from frcnn.runs.checkpoint import checkpoint_path, save_checkpoint
from frcnn.training.build import TrainOptions, build_trainer
from frcnn.training.resume import resume_checkpoint


def scene(height: int, width: int, sides: list[int]) -> ImageRecord:
    """One image holding square boxes of the given sides (inclusive pixels), side by side."""
    x = np.cumsum([0, *sides[:-1]]).astype(np.float32)
    side = np.array(sides, np.float32)
    boxes = np.stack([x, np.zeros_like(x), x + side - 1, side - 1], axis=1)
    n = len(sides)
    return ImageRecord(0, "scene.png", width, height, boxes, np.ones(n, np.int64), np.zeros(n, bool), np.zeros(n, bool))


def choice_for(records, scale=600, max_size=1000, overlap=0.2):
    return choose_tiles(BoxProfile.of(records), scale, max_size, 32.0, overlap)


def test_an_aerial_scene_of_small_crowns_is_cut_into_tiles_that_the_loader_enlarges():
    # 2472 x 2299 at 600 / 1000: factor 1000 / 2472 = 0.40, 40 px crowns become 16 px, all below 32.
    # At 1:1 their quarter quantile, 40 px, is under 1.5 x 32 = 48: tiles of 600 / 1.2 = 500 px
    choice = choice_for([scene(2299, 2472, [40] * 30)])
    assert (choice.size, choice.large_images, choice.small_share, choice.zoom) == (500, 1, 1.0, 1.2)


@pytest.mark.parametrize(
    ("sides", "size", "zoom"),
    [
        ([30] * 30, 400, 1.5),  # 48 / 30 = 1.6, capped at MAX_ZOOM
        ([10] * 7 + [44] * 23, 550, 600 / 550),  # the quarter quantile ("lower") is the 8th of 30 sides: 44
        ([48] * 30, 600, 1.0),  # large enough at 1:1: tiles of the scale, not resized
        ([20] * 7 + [60] * 23, 600, 1.0),  # 7 of 30 small (under a quarter): the quantile is 60 px
    ],
)
def test_the_zoom_brings_the_quarter_quantile_of_the_sides_to_one_and_a_half_bounds(sides, size, zoom):
    choice = choice_for([scene(2299, 2472, sides)])
    assert (choice.size, choice.zoom) == (size, pytest.approx(zoom))
    assert (choice.size * choice.zoom) == pytest.approx(600)


def test_large_objects_in_a_large_image_keep_it_whole():
    # 400 px objects become 162 px: nothing for tiles to save
    choice = choice_for([scene(2299, 2472, [400] * 5)])
    assert (choice.size, choice.small_share) == (0, 0.0)


def test_small_images_are_never_cut_however_small_their_objects_but_a_larger_one_would_be():
    # 500 x 375 is enlarged (factor 1.6): not large. Its 10 px objects become 16 px, below 32: the
    # size is a guard of 512 px (500 rounded up to 32 px) that cuts no training image, only a larger
    # image at test time, which resized whole would shrink its objects more than training did
    choice = choice_for([scene(375, 500, [10] * 20)] * 3)
    assert (choice.size, choice.guard, choice.large_images) == (512, True, 0)
    assert "tiles: auto -> 512 px, which cuts no training image" in describe(choice)
    assert "100% of all the training boxes are below 32 px at this scale already" in describe(choice)
    # the same images with 40 px objects (64 px at the scale): no guard, no tiles
    assert choice_for([scene(375, 500, [40] * 20)] * 3).size == 0


def test_larger_objects_ask_for_tiles_that_hold_them_whole_inside_the_overlap():
    # 6000 px square: factor 1/6, 150 px objects become 25 px; 150 / 0.2 = 750 -> 768 (32 px steps)
    assert choice_for([scene(6000, 6000, [150] * 10)]).size == 768
    assert choice_for([scene(6000, 6000, [150] * 10)], overlap=0.5).size == 600  # 300 < the scale


def test_a_tile_that_would_cut_nothing_is_no_tile():
    # 1000 x 1600 (factor 0.6); 20 boxes of 10 px and 2 of 400: the 95th percentile side is 380.5 px,
    # so the tile would be 1920 px, larger than the image
    choice = choice_for([scene(1000, 1600, [10] * 20 + [400] * 2)])
    assert (choice.wanted, choice.size, choice.guard) == (1920, 1600, True)  # a guard: the image stays whole
    assert "would be 1920 px, as large as the images" in describe(choice)
    # with large objects alone nothing is small: no guard either
    large = choice_for([scene(1000, 1600, [400] * 3)])
    assert (large.size, large.wanted) == (0, 0) and "none, the images stay whole" in describe(large)


def test_only_the_large_images_boxes_count():
    small_images = [scene(375, 500, [10] * 50)] * 4  # many small boxes, in images enlarged whole
    # no tiles for training: the large image's objects are large; a guard of its size (2472 -> 2496)
    guarded = choice_for([*small_images, scene(2299, 2472, [400] * 5)])
    assert (guarded.size, guarded.guard) == (2496, True)
    assert choice_for([*small_images, scene(2299, 2472, [40] * 5)]).size == 500  # the 40 px ones alone: zoom 1.2


def test_the_choice_is_written_into_the_config_and_logged(caplog):
    cfg = default_config()
    merge_pairs(cfg, ["TILES.SIZE", "auto"])
    with caplog.at_level(logging.INFO, logger="frcnn.train"):
        choice = resolve_auto_tiles(cfg, [scene(2299, 2472, [40] * 30)])
    assert cfg.TILES.SIZE == choice.size == 500
    assert (
        "tiles: auto -> 500 px, enlarged 1.20x to scale 600 (at least a quarter of their objects are under "
        "48 px in their own pixels); 1 of 1 training images shrink below 0.67x at scale 600" in caplog.text
    )
    cfg.TILES.SIZE = 256  # a number is kept
    assert resolve_auto_tiles(cfg, [scene(2299, 2472, [40] * 30)]) is None and cfg.TILES.SIZE == 256


def test_a_net_with_smaller_anchors_still_tiles_what_a_resize_makes_small():
    # crowns of 50 px in a 2472 px scene become 20 px: below COCO's 32 px small objects though above
    # mobilenet_v2_fpn's 16 px anchors; tiles are cut for it as for every other net
    crowns = [scene(2299, 2472, [50] * 30)]
    for net in ("mobilenet_v2", "mobilenet_v2_fpn"):
        cfg = build_config(net, CFGS, set_cfgs=["TILES.SIZE", "auto"])
        choice = resolve_auto_tiles(cfg, crowns)
        assert (choice.size, choice.bound, choice.small_share) == (600, 32.0, 1.0), net


def test_train_scales_auto_measures_the_images_at_the_test_scale():
    cfg = default_config()
    merge_pairs(cfg, ["TILES.SIZE", "auto", "TRAIN.SCALES", "auto", "TEST.SCALES", "[800]", "TEST.MAX_SIZE", "1333"])
    assert resolve_auto_tiles(cfg, [scene(2299, 2472, [60] * 30)]).scale == 800 == cfg.TILES.SIZE
    cfg.TILES.SIZE = "auto"  # 40 px crowns: zoom 1.2 from the test scale, 800 / 1.2
    assert resolve_auto_tiles(cfg, [scene(2299, 2472, [40] * 30)]).size == 667 == cfg.TILES.SIZE


@pytest.mark.parametrize(
    ("tiles", "size"), [(None, "auto"), ("auto", "auto"), ("{overlap: 0.3}", "auto"), ("0", 0), ("512", 512)]
)
def test_dataset_files_tile_automatically_unless_they_say_otherwise(tmp_path, tiles, size):
    path = tmp_path / "data.yaml"
    path.write_text("format: voc\ntrain: trainval\ntest: test\n" + (f"tiles: {tiles}\n" if tiles else ""))
    assert build_config("tiny", CFGS, dataset_spec(str(path)).profile).TILES.SIZE == size


def test_a_tile_size_that_is_not_a_number_says_what_is_wanted(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("format: voc\ntrain: trainval\ntest: test\ntiles: big\n")
    with pytest.raises(DatasetFileError, match="tiles is a size, auto, or a mapping"):
        dataset_spec(str(path))
    with pytest.raises(ValueError, match="TILES.SIZE wants a number or auto"):
        merge_pairs(default_config(), ["TILES.SIZE", "large"])


def test_training_resolves_auto_tiles_before_cutting(small_shapes_root, tmp_path, caplog):
    # the small shapes images (192-640 px) at scale 128: large, and their objects small there; with
    # half-tile overlaps the objects fit tiles smaller than the images
    path = tmp_path / "data.yaml"
    path.write_text(f"format: voc\nroot: {small_shapes_root}\ntrain: trainval\ntest: test\ntiles: {{overlap: 0.5}}\n")
    cfg = build_config("tiny", CFGS, dataset_spec(str(path)).profile, set_cfgs=SMALL_NET)
    opts = TrainOptions(dataset=str(path), net="tiny", batch_size=4, epochs=1, save_dir=str(tmp_path / "m"))
    with caplog.at_level(logging.INFO, logger="frcnn.train"):
        trainer = build_trainer(opts, cfg)
    size = cfg.TILES.SIZE
    assert isinstance(size, int) and f"tiles: auto -> {size} px" in caplog.text
    assert size >= 128 and all(r.width <= size and r.height <= size for r in trainer.roidb)
    assert any(r.window is not None for r in trainer.roidb)


def test_a_resumed_run_keeps_the_tiles_it_was_trained_on(tmp_path):
    stored = to_plain(default_config())
    stored["TILES"]["SIZE"] = 704
    save_checkpoint(checkpoint_path(tmp_path, "tiny", "shapes", 1, 1, 5), {"model": {}, "config": stored})
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=["TILES.SIZE", "auto"])
    resume_checkpoint(TrainOptions(save_dir=str(tmp_path), resume=True), cfg)
    assert cfg.TILES.SIZE == 704
