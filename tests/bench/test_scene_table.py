"""The ablation table of the scene benchmark (tools/scene_table.py), from hand-written summaries."""

import json

import pytest

from tools import scene_table


def summary(folder, runs, pooled=None, **variant):
    folder.mkdir(parents=True)
    results = {
        "budget": "5m",
        "net": "mobilenet_v2",
        "set": [],
        "test_set": [],
        **variant,
        "modes": sorted({key.split("/")[1] for key in runs}),
        "scenes": {"big": {}, "small": {}},
        "runs": {
            key: {seed: {"ap": ap, "iterations": int(1000 * ap)} for seed, ap in seeds.items()}
            for key, seeds in runs.items()
        },
        "pooled": pooled or {},
    }
    (folder / "tree_scenes.json").write_text(json.dumps(results))
    return folder


def test_rows_are_seed_medians_with_their_mean_and_the_change_from_the_baseline(tmp_path):
    base = summary(tmp_path / "base", {"big/sliced": {"1": 0.2, "2": 0.4, "3": 0.3}, "small/sliced": {"1": 0.1}})
    ema = summary(tmp_path / "ema", {"big/sliced": {"1": 0.5}}, set=["TRAIN.EMA_DECAY", "0.998"])
    lines = scene_table.table([base, ema], baseline=base).splitlines()
    assert (
        lines[0]
        == "| variant | folder | mode | budget | seeds | steps | big | small | mean | pooled | mean vs baseline |"
    )
    # base: big is the median of three seeds (0.3), the mean is over the scenes run (0.2)
    assert lines[2] == "| defaults | base | sliced | 5m | 3 | 100-400 | 0.300 | 0.100 | 0.200 |  | +0.000 |"
    # the change is over the scenes both ran: 0.5 - 0.3 on big alone
    assert (
        lines[3] == "| --set TRAIN.EMA_DECAY 0.998 | ema | sliced | 5m | 1 | 500-500 | 0.500 |  | 0.500 |  | +0.200 |"
    )


def test_pooled_and_a_peer_mode_get_their_own_row(tmp_path):
    runs = {"big/sliced": {"1": 0.4}, "small/sliced": {"1": 0.2}, "big/yolo": {"1": 0.1}, "small/yolo": {"1": 0.3}}
    folder = summary(tmp_path / "both", runs, pooled={"sliced": [0.35], "yolo": [0.15]}, net="mobilenet_v2_fpn")
    lines = scene_table.table([folder]).splitlines()
    assert lines[2] == "| --net mobilenet_v2_fpn | both | sliced | 5m | 1 | 200-400 | 0.400 | 0.200 | 0.300 | 0.350 |"
    assert lines[3] == "| --net mobilenet_v2_fpn | both | yolo | 5m | 1 | 100-300 | 0.100 | 0.300 | 0.200 | 0.150 |"


def test_a_folder_without_a_summary_is_refused_by_name(tmp_path):
    with pytest.raises(SystemExit, match="no tree_scenes.json"):
        scene_table.table([tmp_path])
