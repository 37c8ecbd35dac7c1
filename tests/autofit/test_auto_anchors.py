"""`ANCHOR_SCALES: auto`: anchors chosen from the training boxes, on box sets with known answers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import CFGS, SMALL_NET

from frcnn.autofit import anchors as auto_anchors
from frcnn.autofit.anchors import choose_anchors, resolve_auto_anchors
from frcnn.autofit.coverage import coverage_of
from frcnn.autofit.profile import BoxProfile
from frcnn.config import AUTO, build_config, default_config, merge_pairs, to_plain
from frcnn.data.datasets.base import ImageRecord
from frcnn.data.datasets.factory import dataset_spec
from frcnn.inference.torch_detector import load_detector
from frcnn.modeling import build_model
from frcnn.modeling.anchors import generate_base_anchors
from frcnn.runs.checkpoint import checkpoint_path, save_checkpoint
from frcnn.training.build import TrainOptions, build_training_model
from frcnn.training.finetune import adopt_architecture
from frcnn.training.resume import resume_checkpoint

SIZE = 320  # square images: the training scale SIZE leaves every box as it is
STRIDE = 16


def image(boxes, difficult=None, height: int = SIZE, width: int = SIZE, flipped: bool = False) -> ImageRecord:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    record = ImageRecord("x", "x.jpg", width, height, boxes=boxes, labels=np.ones(len(boxes), np.int64))
    record.difficult = np.zeros(len(boxes), bool) if difficult is None else np.array(difficult, bool)
    record.crowd = np.zeros(len(boxes), bool)
    record.flipped = flipped
    return record


def cells(side: int, jitter: int) -> np.ndarray:
    """Grid cells whose anchor of this side, moved by up to `jitter` and a cell, is in the image."""
    half = (side - 1) / 2 + jitter + STRIDE
    first = max(0, int(np.ceil((half - 7.5) / STRIDE)))
    return np.arange(first, int((SIZE - 1 - 7.5 - half) // STRIDE) + 1)


def on_grid(w: int, h: int, count: int, jitter: int, seed: int = 0) -> list[ImageRecord]:
    """`count` images with one w x h box each, centred on an anchor centre of the stride grid
    (16 k + 7.5) give or take `jitter` pixels, so that an anchor of the box's size can match it."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        cx = STRIDE * rng.choice(cells(w, jitter)) + 7.5 + rng.integers(-jitter, jitter + 1)
        cy = STRIDE * rng.choice(cells(h, jitter)) + 7.5 + rng.integers(-jitter, jitter + 1)
        records.append(image([[cx - (w - 1) / 2, cy - (h - 1) / 2, cx + (w - 1) / 2, cy + (h - 1) / 2]]))
    return records


def choose(records, iou: float = 0.7):
    return choose_anchors(BoxProfile.of(records), SIZE, 1000, STRIDE, iou)


def sides(choice) -> list[float]:
    """The anchors' sides (sqrt of area, which the ratios keep) in pixels."""
    return [STRIDE * s for s in choice.scales]


def test_boxes_of_one_size_get_an_anchor_of_that_size():
    records = on_grid(48, 48, 40, jitter=4)
    choice = choose(records)
    assert choice.boxes == 40 and choice.coverage == 1.0 and choice.fallback is None
    assert min(abs(side - 48) for side in sides(choice)) < 0.1 * 48
    assert len(choice.scales) * len(choice.ratios) == 1  # one anchor does it: ties go to fewer
    assert choice.default_coverage == 0.0  # the original's 128 to 512 px anchors fit no 48 px box


def test_two_clusters_of_sizes_are_both_covered():
    small, large = on_grid(24, 24, 30, jitter=2, seed=1), on_grid(96, 96, 30, jitter=4, seed=2)
    choice = choose(small + large)
    for cluster, size in ((small, 24), (large, 96)):
        boxes = BoxProfile.of(cluster).at_scale(SIZE, 1000).on_grid(STRIDE, 1.0)
        assert auto_anchors.coverage(boxes, STRIDE, choice.scales, choice.ratios, 0.7) == 1.0
        assert min(abs(side - size) for side in sides(choice)) < 0.1 * size
    assert choice.coverage == 1.0 and len(choice.scales) * len(choice.ratios) <= 3


def test_wide_boxes_get_a_wide_ratio():
    choice = choose(on_grid(200, 20, 30, jitter=2, seed=3))
    assert choice.coverage >= 0.95
    assert 0.07 <= min(choice.ratios) <= 0.15  # h / w = 0.1
    wide = generate_base_anchors(STRIDE, [min(choice.ratios)], choice.scales)
    widths, heights = wide[:, 2] - wide[:, 0] + 1, wide[:, 3] - wide[:, 1] + 1
    assert any(abs(w - 200) < 30 and abs(h - 20) < 4 for w, h in zip(widths.tolist(), heights.tolist()))


def test_empty_difficult_and_flipped_images_are_left_out():
    records = on_grid(48, 48, 10, jitter=4)
    extra = [image([]), image([[10, 10, 200, 200]], difficult=[True]), image([[10, 10, 200, 200]], flipped=True)]
    choice = choose(records + extra)
    assert choice.boxes == 10 and choice == choose(records)


def test_no_boxes_at_all_falls_back_to_the_defaults_and_says_so(caplog):
    choice = choose([image([]), image([[10, 10, 50, 50]], difficult=[True])])
    assert (choice.scales, choice.ratios, choice.boxes) == ([8, 16, 32], [0.5, 1, 2], 0)
    assert "no training boxes" in choice.fallback
    cfg = default_config()
    cfg.ANCHOR_SCALES = AUTO
    with caplog.at_level(logging.WARNING, logger="frcnn"):
        resolve_auto_anchors(cfg, BoxProfile.of([image([])]))
    assert cfg.ANCHOR_SCALES == [8, 16, 32] and cfg.ANCHOR_RATIOS == [0.5, 1, 2]
    assert any("no training boxes" in r.getMessage() for r in caplog.records)


def random_records(count: int, seed: int) -> list[ImageRecord]:
    """Images of random sizes with random boxes at fractional places, some at the borders."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        h, w = (int(v) for v in rng.integers(150, 400, 2))
        n = int(rng.integers(1, 6))
        x1, y1 = rng.uniform(0, w - 12, n), rng.uniform(0, h - 12, n)
        x2 = np.minimum(x1 + rng.uniform(10, 200, n), w - 1)
        y2 = np.minimum(y1 + rng.uniform(10, 200, n), h - 1)
        records.append(image(np.stack((x1, y1, x2, y2), 1), height=h, width=w))
    return records


def test_the_search_is_deterministic_and_its_coverage_is_anchor_coverage():
    records = random_records(40, seed=4)
    first, second = (choose_anchors(BoxProfile.of(records), 256, 400, STRIDE, 0.5) for _ in range(2))
    assert first == second
    # every aspect ratio from 1/20 to 20: more than 9 anchors, as they clearly cover more
    assert 1 <= len(first.scales) * len(first.ratios) <= auto_anchors.MAX_ANCHORS
    assert first.coverage > first.default_coverage
    # the per-axis computation gives what anchor_coverage finds anchor by anchor on the grid
    # (slowly: a few images suffice)
    some = records[:20]
    for offset in (1.0, 0.0):
        boxes = BoxProfile.of(some).at_scale(256, 400).on_grid(STRIDE, offset)
        for scales, ratios in ((first.scales, first.ratios), ([1, 2.5, 5], [0.5, 1, 2])):
            fast = auto_anchors.coverage(boxes, STRIDE, scales, ratios, 0.5, offset)
            exact, total = coverage_of(STRIDE, scales, ratios, BoxProfile.of(some), 256, 400, 0.5, offset)
            assert total == len(boxes) and fast == exact, (scales, ratios, offset)


def test_auto_is_a_config_value_only_before_the_model_is_built(tmp_path):
    cfg = default_config()
    merge_pairs(cfg, ["ANCHOR_SCALES", "auto"])
    assert cfg.ANCHOR_SCALES == AUTO
    merge_pairs(cfg, ["ANCHOR_SCALES", "[2, 4]"])  # numbers again after auto
    assert cfg.ANCHOR_SCALES == [2, 4]
    with pytest.raises(ValueError, match="a list of numbers or auto"):
        merge_pairs(cfg, ["ANCHOR_SCALES", "automatic"])
    cfg.ANCHOR_SCALES = AUTO
    with pytest.raises(ValueError, match="auto"):
        build_model(cfg, "tiny", 3, use_default_weights=False)
    # the built-in data and dataset files choose; the original's datasets keep theirs; a file's own scales win
    assert dataset_spec("shapes").profile["ANCHOR_SCALES"] == AUTO
    assert build_config("tiny", CFGS, dataset_spec("pascal_voc").profile).ANCHOR_SCALES == [8, 16, 32]
    assert build_config("tiny", CFGS, dataset_spec("coco").profile).ANCHOR_SCALES == [4, 8, 16, 32]
    (tmp_path / "plain.yaml").write_text("format: voc\ntrain: trainval\ntest: test\n")
    (tmp_path / "own.yaml").write_text("format: voc\ntrain: trainval\ntest: test\nconfig: {ANCHOR_SCALES: [2, 4]}\n")
    assert build_config("tiny", CFGS, dataset_spec(str(tmp_path / "plain.yaml")).profile).ANCHOR_SCALES == AUTO
    assert build_config("tiny", CFGS, dataset_spec(str(tmp_path / "own.yaml")).profile).ANCHOR_SCALES == [2, 4]


def test_pyramid_nets_keep_their_anchors(caplog):
    cfg = build_config("res50_fpn", CFGS, dataset_spec("shapes").profile)
    sizes = list(cfg.ANCHOR_SIZES)
    with caplog.at_level(logging.INFO, logger="frcnn"):
        assert resolve_auto_anchors(cfg, BoxProfile.of(on_grid(48, 48, 5, jitter=0))) is None
    assert cfg.ANCHOR_SIZES == sizes and cfg.ANCHOR_SCALES == [8, 16, 32]  # numbers, unused by the pyramid
    assert any("pyramid net keeps its anchors" in r.getMessage() for r in caplog.records)


def test_the_checkpoint_stores_the_chosen_anchors_and_the_detector_rebuilds_them(tmp_path, caplog):
    settings = [*SMALL_NET, "TRAIN.SCALES", f"[{SIZE}]"]  # the boxes as on_grid placed them
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=settings)
    classes = ("__background__", "circle")
    records = on_grid(48, 48, 20, jitter=4) + on_grid(200, 20, 20, jitter=2, seed=5)
    opts = TrainOptions(net="tiny", data_dir=str(tmp_path), save_dir=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="frcnn"):
        model = build_training_model(opts, cfg, classes, BoxProfile.of(records))
    chosen = (cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS)
    assert isinstance(chosen[0], list) and min(chosen[1]) < 0.2  # the wide boxes' ratio
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("anchors: auto -> scales"))
    assert "coverage at IoU 0.5: " in line and "% of 40 training boxes" in line
    path = save_checkpoint(
        tmp_path / "auto.pth",
        {"model": model.state_dict(), "config": to_plain(cfg), "classes": list(classes), "net": "tiny"},
    )
    detector = load_detector(path)
    assert (detector.cfg.ANCHOR_SCALES, detector.cfg.ANCHOR_RATIOS) == chosen
    expected = generate_base_anchors(cfg.FEAT_STRIDE, chosen[1], chosen[0])
    assert torch.equal(detector.model.rpn.anchor_generator.base_anchors, expected)


def test_resumed_and_fine_tuned_runs_keep_the_anchors_they_were_trained_with(tmp_path):
    stored = to_plain(default_config())
    stored["ANCHOR_SCALES"], stored["ANCHOR_RATIOS"] = [1.5, 3.0], [0.25, 1.0]
    save_checkpoint(checkpoint_path(tmp_path, "tiny", "shapes", 1, 1, 5), {"model": {}, "config": stored})
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile)
    resume_checkpoint(TrainOptions(save_dir=str(tmp_path), resume=True), cfg)
    assert (cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS) == ([1.5, 3.0], [0.25, 1.0])

    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile)
    changes = adopt_architecture(cfg, {"net": "tiny", "config": stored}, "tiny", "detector.pth")
    assert (cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS) == ([1.5, 3.0], [0.25, 1.0])
    assert "ANCHOR_SCALES: auto -> [1.5, 3.0]" in changes
    assert resolve_auto_anchors(cfg, BoxProfile.of(on_grid(48, 48, 5, jitter=0))) is None  # nothing left to choose
