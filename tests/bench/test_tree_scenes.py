"""Leave-one-scene-out on whole scenes (tools/tree_scenes.py): the wheel's scenes as CSV data, the
folds' dataset files, and the pooled score's joined detections."""

import json

import numpy as np
import pytest
from test_small_objects import fake_wheel

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.runs.checkpoint import save_checkpoint
from tools import tree_scenes

CFGS = tree_scenes.ROOT / "cfgs"


def test_the_wheel_scenes_become_csv_data_read_as_written(tmp_path):
    fake_wheel(tmp_path / "fake.whl")
    scenes = tree_scenes.build(tmp_path / "fake.whl", tmp_path / "data")
    assert sorted(scenes) == ["big", "small"]  # the PNG without annotations is no scene
    assert scenes["big"][0] == ["big.png", "5", "5", "34", "34", "Tree"]  # the XML's numbers, one class
    all_scenes = dataset_spec(str(tmp_path / "data" / "all.yaml")).test()
    assert [r.id for r in all_scenes.records] == ["big.png", "small.png"]
    big = all_scenes.records[0]
    assert (big.width, big.height, len(big.boxes)) == (1200, 800, 117)
    # CSV corners are exclusive (DeepForest's convention): the last pixel is xmax - 1
    assert big.boxes[0].tolist() == [5, 5, 33, 33] and (all_scenes.records[1].labels == 1).all()


def test_a_fold_trains_on_the_other_scenes_and_tests_on_the_held_out_one(tmp_path):
    fake_wheel(tmp_path / "fake.whl")
    scenes = tree_scenes.build(tmp_path / "fake.whl", tmp_path / "data")
    sliced = tree_scenes.fold_yaml(tmp_path / "data", scenes, "small", "sliced")
    resized = tree_scenes.fold_yaml(tmp_path / "data", scenes, "small", "resized")
    spec = dataset_spec(str(sliced))
    assert [r.id for d in spec.train() for r in d.records] == ["big.png"]
    assert [r.id for r in spec.test().records] == ["small.png"]
    # the only difference: sliced keeps the default tiles (auto), resized none
    assert build_config("mobilenet_v2", CFGS, spec.profile).TILES.SIZE == "auto"
    assert build_config("mobilenet_v2", CFGS, dataset_spec(str(resized)).profile).TILES.SIZE == 0


def test_crowns_under_40_px_are_counted_by_the_side_of_their_box():
    rows = [["a.png", "0", "0", "39", "41", "Tree"], ["a.png", "0", "0", "40", "40", "Tree"]]
    sides = tree_scenes.crown_sides(rows)
    np.testing.assert_allclose(sides, [np.sqrt(39 * 41), 40.0])
    assert int((sides < tree_scenes.SMALL_CROWN).sum()) == 1


def test_the_table_gives_each_mode_per_scene_and_pooled():
    results = {
        "modes": ["sliced", "resized"],
        "scenes": {"big": {"crowns": 117, "small": 117}},
        "runs": {"big/sliced": {"1": {"ap": 0.5}, "2": {"ap": 0.7}, "3": {"ap": 0.6}}, "big/resized": {}},
        "pooled": {"sliced": [0.4]},
    }
    lines = tree_scenes.table(results).splitlines()
    assert lines[2] == "| big | 117 | 117 | 0.600 |  |" and lines[3] == "| pooled | | | 0.400 |  |"


def test_pooled_ap_joins_the_folds_detections(tmp_path, monkeypatch):
    folds = []
    for i, scene in enumerate(("big.png", "small.png")):
        path = tmp_path / f"fold{i}.json"
        path.write_text(json.dumps([{"image_id": scene, "category_id": 1, "bbox": [5, 5, 29, 29], "score": 0.9}]))
        folds.append({"detections": str(path)})
    commands = []

    def fake_run(command, log):
        commands.append(command)
        ap = tmp_path / "out" / "pooled" / "sliced_s1" / "x" / "ap.json"
        ap.parent.mkdir(parents=True)
        ap.write_text(json.dumps({"mean_ap": 0.25}))

    monkeypatch.setattr(tree_scenes, "run", fake_run)
    assert tree_scenes.pooled_ap(tmp_path / "data", tmp_path / "out", folds, "sliced_s1") == 0.25
    joined = json.loads((tmp_path / "out" / "pooled" / "sliced_s1.json").read_text())
    assert [d["image_id"] for d in joined] == ["big.png", "small.png"]
    assert commands[0][commands[0].index("--detections") + 1].endswith("sliced_s1.json")
    assert commands[0][commands[0].index("--dataset") + 1] == str(tmp_path / "data" / "all.yaml")


def test_data_only_writes_every_fold_and_trains_nothing(tmp_path, monkeypatch, capsys):
    fake_wheel(tmp_path / "fake.whl")
    monkeypatch.setattr(tree_scenes, "run", lambda *a: pytest.fail("nothing is run with --data_only"))
    tree_scenes.main(["--wheel", str(tmp_path / "fake.whl"), "--data_dir", str(tmp_path / "d"), "--data_only"])
    written = sorted(p.name for p in (tmp_path / "d").glob("*.yaml"))
    assert written == ["all.yaml", "big_resized.yaml", "big_sliced.yaml", "small_resized.yaml", "small_sliced.yaml"]
    assert capsys.readouterr().out.count(".yaml") == 4


def test_the_figure_draws_both_modes_side_by_side(tmp_path):
    import cv2

    fake_wheel(tmp_path / "fake.whl")
    tree_scenes.build(tmp_path / "fake.whl", tmp_path / "d")
    runs = {}
    # the crop is the centre 400 x 400 of the 1200 x 800 scene: x 400-799, y 200-599
    for mode, found in (("sliced", [{"bbox": [500, 300, 100, 100], "score": 0.9}]), ("resized", [])):
        path = tmp_path / f"{mode}.json"
        path.write_text(json.dumps([{"image_id": "big.png", "category_id": 1, **d} for d in found]))
        runs[f"big/{mode}"] = {"1": {"ap": 0.5 if found else 0.0, "detections": str(path)}}
    tree_scenes.draw_figure(tmp_path / "d", {"runs": runs}, "big", tmp_path / "figure.jpg", side=400)
    figure = cv2.imread(str(tmp_path / "figure.jpg"))
    assert figure.shape == (300, (400 * 2 + 12) * 3 // 4, 3)
    b, g, r = (figure[40:, :, c].astype(int) for c in range(3))  # below the titles
    orange = (r > 200) & (g > 140) & (g < 240) & (b < 90)
    assert orange[:, :300].sum() > 100 and orange[:, -300:].sum() == 0  # only the sliced run found it


def test_a_variants_flags_reach_both_scripts_and_the_last_checkpoint_is_scored(tmp_path, monkeypatch):
    argv = ["--wheel", "w.whl", "--imagenet", "mnv2.pth", "--net", "mobilenet_v2_fpn", "--budget", "5m"]
    argv += ["--set", "TRAIN.EMA_DECAY", "0.998", "--test_set", "TEST.NMS", "0.4", "--eval_interval", "3"]
    commands = []
    models = tmp_path / "run" / "models" / "mobilenet_v2_fpn" / "fold"

    def fake_run(command, log):
        commands.append(command)
        if "trainval_net.py" in command[1]:  # the last checkpoint by epoch and step, not `best`
            for name, iteration in (("1_9_4", 36), ("1_10_2", 38), ("1_best", 20)):
                save_checkpoint(
                    models / f"faster_rcnn_{name}.pth",
                    {"model": {}, "iteration": iteration, "config": {"TILES": {"SIZE": 600}}},
                )
        else:
            (tmp_path / "run" / "eval").mkdir(parents=True)
            (tmp_path / "run" / "eval" / "ap.json").write_text(json.dumps({"mean_ap": 0.3}))
            (tmp_path / "run" / "eval" / "detections.json").write_text("[]")

    monkeypatch.setattr(tree_scenes, "run", fake_run)
    args = tree_scenes.parse_args(argv)
    result = tree_scenes.run_fold(args, tmp_path / "fold.yaml", 1, tmp_path / "run")
    assert (result["ap"], result["tile"], result["iterations"]) == (0.3, 600, 38)
    train, test = commands
    assert train[train.index("--net") + 1] == "mobilenet_v2_fpn" and test[test.index("--net") + 1] == "mobilenet_v2_fpn"
    assert train[train.index("--set") + 1 :][:2] == ["TRAIN.EMA_DECAY", "0.998"] and "TEST.NMS" not in train
    assert test[test.index("--set") + 1 :][:2] == ["TEST.NMS", "0.4"] and "--eval_interval" not in test
    assert train[train.index("--eval_interval") + 1] == "3"


def test_a_folder_holding_another_variant_is_refused(tmp_path, capsys):
    fake_wheel(tmp_path / "fake.whl")
    out = tmp_path / "out"
    out.mkdir()
    (out / "tree_scenes.json").write_text(json.dumps({"runs": {}, "budget": "25m"}))  # the plain defaults
    argv = ["--wheel", str(tmp_path / "fake.whl"), "--imagenet", "x.pth", "--data_dir", str(tmp_path / "data")]
    with pytest.raises(SystemExit) as info:
        tree_scenes.main([*argv, "--out", str(out), "--budget", "25m", "--set", "TRAIN.EMA_DECAY", "0.998"])
    assert info.value.code == 2 and "give another --out" in capsys.readouterr().err
