"""Training on tiles of large images (`tiles:` in a dataset YAML) and detecting whole images in the
same tiles."""

import numpy as np
import torch
from conftest import CFGS, SMALL_NET

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.loader import read_image
from frcnn.inference.records import detect_records
from frcnn.inference.slicing import detect_sliced
from frcnn.inference.torch_detector import load_detector
from frcnn.runs.checkpoint import load_checkpoint
from frcnn.training.build import TrainOptions, build_trainer, train


def tiled_yaml(tmp_path, root, tiles: str):
    path = tmp_path / "tiled.yaml"
    path.write_text(f"format: voc\nroot: {root}\ntrain: trainval\ntest: test\ntiles: {tiles}\n")
    return str(path)


def options(dataset: str, tmp_path, **kw) -> TrainOptions:
    base = dict(dataset=dataset, net="tiny", batch_size=4, epochs=1, save_dir=str(tmp_path / "models"), lr=0.01)
    return TrainOptions(**{**base, **kw})


def test_a_dataset_with_tiles_trains_on_tiles_cut_at_load(small_shapes_root, tmp_path):
    dataset = tiled_yaml(tmp_path, small_shapes_root, "{size: 128, overlap: 0.25, empty_share: 1.0, shift: 0.25}")
    cfg = build_config("tiny", CFGS, dataset_spec(dataset).profile, set_cfgs=SMALL_NET)
    assert (cfg.TILES.SIZE, cfg.TILES.OVERLAP, cfg.TILES.EMPTY_SHARE, cfg.TILES.SHIFT) == (128, 0.25, 1.0, 0.25)
    trainer = build_trainer(options(dataset, tmp_path), cfg)
    assert (trainer.dataset.recut.shift, len(trainer.dataset.recut.scenes)) == (0.25, 24)  # drawn afresh
    images = [r for r in trainer.roidb if not r.flipped]
    sources = {r.path for r in images}
    assert len(images) > len(sources) == 24  # every image larger than 128 px became tiles
    assert all(r.width <= 128 and r.height <= 128 for r in images)
    tile = next(r for r in images if r.window is not None and len(r.boxes))
    sample = trainer.dataset[trainer.roidb.index(tile)]
    x0, y0, x1, y1 = tile.window
    expected = read_image(tile.path)[y0:y1, x0:x1]
    assert sample.image.shape[1:] == (round(expected.shape[0] * sample.scale), round(expected.shape[1] * sample.scale))


def test_tiles_are_drawn_afresh_by_default_and_whole_images_are_left_alone(small_shapes_root, tmp_path):
    for tiles, shift in (("128", 0.4), ("0", None)):  # the default TILES.SHIFT; no tiles, nothing to move
        dataset = tiled_yaml(tmp_path, small_shapes_root, tiles)
        cfg = build_config("tiny", CFGS, dataset_spec(dataset).profile, set_cfgs=SMALL_NET)
        recut = build_trainer(options(dataset, tmp_path), cfg).dataset.recut
        assert (recut and recut.shift) == shift


def test_difficult_objects_reach_the_loader_in_the_role_the_config_gives(small_shapes_root, tmp_path):
    dataset = tiled_yaml(tmp_path, small_shapes_root, "128")
    settings = ([], "drop"), (["TRAIN.IGNORE_DIFFICULT", "True"], "ignore"), (["TRAIN.USE_DIFFICULT", "True"], "train")
    for overrides, role in settings:
        cfg = build_config("tiny", CFGS, dataset_spec(dataset).profile, set_cfgs=SMALL_NET + overrides)
        trainer = build_trainer(options(dataset, tmp_path), cfg)
        assert (trainer.dataset.recut.difficult, trainer.dataset.ignore_difficult) == (role, role == "ignore")
        assert any(r.difficult.any() for r in trainer.roidb) == (role != "drop")


def test_the_model_detects_whole_images_in_the_tiles_it_was_trained_on(small_shapes_root, tmp_path):
    dataset = tiled_yaml(tmp_path, small_shapes_root, "128")
    cfg = build_config("tiny", CFGS, dataset_spec(dataset).profile, set_cfgs=SMALL_NET)
    checkpoint = train(options(dataset, tmp_path, seed=0), cfg)
    assert load_checkpoint(checkpoint)["config"]["TILES"]["SIZE"] == 128  # the setting travels
    detector = load_detector(checkpoint)
    with torch.no_grad():  # one epoch finds little: spread the class scores so that boxes come out
        torch.manual_seed(0)
        detector.model.roi_heads.predictor.cls_score.weight.normal_(std=4.0)
    records = dataset_spec(dataset).test().records[:2]
    found = detect_records(detector, records, batch_size=4, progress=False)  # the model's own tiles
    assert all(len(out["boxes"]) for out in found)
    for record, out in zip(records, found):
        expected = detect_sliced(detector, read_image(record.path), 128, 0.2, batch_size=4)
        np.testing.assert_array_equal(out["boxes"], expected["boxes"])
    whole = detect_records(detector, records[:1], progress=False, tile=0)[0]  # tile 0: the whole image
    detector.cfg.TILES.SIZE = 0  # a model trained without tiles
    untiled = detect_records(detector, records[:1], progress=False)[0]
    np.testing.assert_array_equal(whole["boxes"], untiled["boxes"])
    assert not np.array_equal(whole["boxes"], found[0]["boxes"])
