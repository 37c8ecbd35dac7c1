"""The small-object benchmark's data (tree-crown tiles cut from a wheel) and its torchvision side."""

import types
import zipfile

import cv2
import numpy as np
import pytest
import torch
import torchvision
from torchvision.ops import FrozenBatchNorm2d

from frcnn.data.datasets.factory import dataset_spec
from tools import small_objects, torchvision_budget, tree_tiles


def test_tiles_split_the_image_evenly_without_overlap_or_gaps():
    windows = tree_tiles.tile_windows(1035, 1249, 400)  # 3 columns of 345, 3 rows of 416 / 417
    assert len(windows) == 9
    assert {w[2] - w[0] for w in windows} == {345}
    assert sorted({w[3] - w[1] for w in windows}) == [416, 417]
    covered = np.zeros((1249, 1035), int)
    for x0, y0, x1, y1 in windows:
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all()
    assert tree_tiles.tile_windows(300, 100, 400) == [(0, 0, 300, 100)]  # smaller than a tile: one


def wheel_xml(name: str, boxes: list) -> str:
    """The wheel's annotation format: VOC tags, coordinates as written (0-based)."""
    objects = "".join(
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for x1, y1, x2, y2 in boxes
    )
    return f"<annotation><size><width>0</width><height>0</height></size>{objects}</annotation>"


def fake_wheel(path) -> dict:
    """A wheel-shaped zip: two annotated PNGs under deepforest/data/ (one labelled `Dead`), a PNG
    without annotations and an unrelated XML elsewhere. 30 px crowns every 90 px, none crossing a
    tile border. Returns the annotated images by name."""
    rng = np.random.default_rng(0)
    images = {}
    with zipfile.ZipFile(path, "w") as archive:
        for name, (h, w), label in (("big", (800, 1200), "Tree"), ("small", (400, 400), "Dead")):
            images[name] = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            archive.writestr(f"deepforest/data/{name}.png", cv2.imencode(".png", images[name])[1].tobytes())
            boxes = [(x, y, x + 29, y + 29) for x in range(5, w - 40, 90) for y in range(5, h - 40, 90)]
            archive.writestr(f"deepforest/data/{name}.xml", wheel_xml(label, boxes))
        archive.writestr("deepforest/data/lonely.png", cv2.imencode(".png", images["small"])[1].tobytes())
        archive.writestr("deepforest/other/readme.xml", "<annotation/>")
    return images


def test_a_wheel_becomes_a_voc_dataset_split_by_tile(tmp_path):
    wheel = tmp_path / "fake.whl"
    images = fake_wheel(wheel)
    summary = tree_tiles.build(wheel, tmp_path / "data" / "trees", tile=400, test_fraction=0.2, seed=0)
    # big: 3 x 2 tiles of 400, small: 1 -> 7 tiles; 6 for test would leave 1 for training: 5 and 2
    assert (summary["test"]["tiles"], summary["trainval"]["tiles"]) == (5, 2)
    spec = dataset_spec(str(tmp_path / "data" / "trees.yaml"))
    train, test = spec.train()[0], spec.test()
    assert train.classes[1:] == ("tree",) and not set(train.image_ids()) & set(test.image_ids())
    records = {r.id: r for r in train.records + test.records}
    # big: 13 x 9 crowns, small: 4 x 4, all whole inside one tile, all one class
    assert sum(len(r.boxes) for r in records.values()) == 117 + 16 == sum(s["boxes"] for s in summary.values())
    assert all((r.labels == 1).all() and not r.difficult.any() for r in records.values())
    tile = records["big_400_400"]  # the tile at x 400..799, y 400..799
    assert (tile.width, tile.height) == (400, 400)
    assert [5 + 90 * 5 - 400, 5 + 90 * 5 - 400, 5 + 90 * 5 - 400 + 29, 84] in tile.boxes.tolist()
    pixels = cv2.imread(
        str(test.image_path("big_400_400") if "big_400_400" in test.image_ids() else train.image_path("big_400_400"))
    )
    assert np.array_equal(pixels, images["big"][400:800, 400:800])


def test_torchvision_targets_are_pixel_edges_flipped_like_the_image():
    record = types.SimpleNamespace(
        boxes=np.array([[10, 20, 29, 39], [0, 0, 9, 9]], np.float32),
        labels=np.array([1, 1]),
        difficult=np.array([False, True]),
    )
    image = torch.rand(3, 2, 100)
    same, target = torchvision_budget.training_pair(record, image, flip=False)
    assert target["boxes"].tolist() == [[10, 20, 30, 40]] and target["labels"].tolist() == [1]  # difficult left out
    flipped, target = torchvision_budget.training_pair(record, image, flip=True)
    assert target["boxes"].tolist() == [[70, 20, 90, 40]]
    assert torch.equal(flipped[..., 70:90], same[..., 10:30].flip(-1))


def test_torchvision_schedule_warms_up_then_follows_a_cosine_over_the_planned_steps():
    schedule = torchvision_budget.CosineBudget(100.0)
    assert schedule.lr(0) == pytest.approx(0.1 * torchvision_budget.LR)  # before the plan
    for iteration in range(1, 13):  # steps 3..12 timed at 2 s: (97 - 24) / 2 -> 36 more, to 48
        schedule.record(iteration, 2.0 if iteration > 2 else 9.0, 2.0 * iteration)
    assert schedule.planned == 48
    assert schedule.lr(2) == pytest.approx(torchvision_budget.LR * (0.1 + 0.9 * 2 / 4))  # warm-up: 4 steps
    assert schedule.lr(24) == pytest.approx(torchvision_budget.LR * 0.5)  # half way down the cosine
    assert schedule.lr(48) == pytest.approx(0.0, abs=1e-12)


def test_torchvision_model_is_the_tutorial_recipe_on_the_given_weights(tmp_path):
    weights = torchvision.models.mobilenet_v2(weights=None).state_dict()
    torch.save(weights, tmp_path / "imagenet.pth")
    model = torchvision_budget.build_model(2, tmp_path / "imagenet.pth")
    assert torch.equal(model.backbone[0][0].weight, weights["features.0.0.weight"])
    assert isinstance(model.backbone[0][1], FrozenBatchNorm2d)
    assert model.rpn.anchor_generator.num_anchors_per_location() == [15]  # 5 sizes x 3 ratios
    assert model.transform.min_size == (800,) and model.roi_heads.box_predictor.cls_score.out_features == 2


def test_the_sweep_summary_takes_each_runs_last_evaluation_and_their_median(tmp_path):
    def curve(*values):
        return [{"elapsed_s": 60.0 * i, "iteration": i, "value": v} for i, v in enumerate(values, 1)]

    results = {
        "data": "tiles",
        "budget": "3m",
        "runs": {
            "this project": {"1": curve(0.1, 0.5), "2": curve(0.2, 0.3), "3": curve(0.4, 0.45)},
            "torchvision": {"1": curve(0.0, 0.02)},
        },
    }
    summary = small_objects.summarise(results)
    assert summary["this project"] == {"final_ap": [0.5, 0.3, 0.45], "median": 0.45}
    assert summary["torchvision"]["median"] == 0.02
    small_objects.plot(results, tmp_path / "curve.png")
    assert cv2.imread(str(tmp_path / "curve.png")).shape[1] == 700
