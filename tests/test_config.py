from pathlib import Path

import pytest

from frcnn.config import build_config, default_config, from_plain, merge_file, merge_pairs, parse_literal, to_plain

CFGS = Path(__file__).resolve().parents[1] / "cfgs"


def test_set_pairs_are_literals_not_code():
    cfg = default_config()
    merge_pairs(
        cfg, ["TRAIN.SCALES", "[480, 576]", "POOLING_MODE", "crop", "TRAIN.USE_FLIPPED", "false", "TEST.NMS", "0.4"]
    )
    assert cfg.TRAIN.SCALES == [480, 576] and cfg.POOLING_MODE == "crop"
    assert cfg.TRAIN.USE_FLIPPED is False and cfg.TEST.NMS == 0.4
    assert parse_literal("__import__('os').system('x')") == "__import__('os').system('x')"


def test_unknown_keys_and_wrong_types_are_errors(tmp_path):
    cfg = default_config()
    with pytest.raises(ValueError, match="unknown config key TRAIN.SCALE"):
        merge_pairs(cfg, ["TRAIN.SCALE", "[600]"])
    with pytest.raises(ValueError, match="TRAIN.BATCH_SIZE wants a whole number"):
        merge_pairs(cfg, ["TRAIN.BATCH_SIZE", "1.5"])
    with pytest.raises(ValueError, match="KEY VALUE pairs"):
        merge_pairs(cfg, ["TRAIN.SCALES"])
    bad = tmp_path / "bad.yml"
    bad.write_text("!!python/object/apply:os.mkdir ['ran']\n")
    with pytest.raises(ValueError, match="not a plain YAML config"):
        merge_file(cfg, bad)
    assert not (tmp_path / "ran").exists()


def test_original_yaml_files_merge(tmp_path):
    f = tmp_path / "res101.yml"
    f.write_text("EXP_DIR: res101\nTRAIN:\n  WEIGHT_DECAY: 0.0001\n  DOUBLE_BIAS: False\nPOOLING_MODE: align\n")
    cfg = default_config()
    merge_file(cfg, f)
    assert cfg.TRAIN.WEIGHT_DECAY == 0.0001 and cfg.TRAIN.DOUBLE_BIAS is False


def test_plain_round_trip():
    cfg = default_config()
    cfg.ANCHOR_SCALES = [4, 8]
    assert from_plain(to_plain(cfg)) == cfg


def test_a_file_builds_on_its_base_and_wins_over_it(tmp_path):
    (tmp_path / "base.yml").write_text("TRAIN:\n  WEIGHT_DECAY: 0.0001\n  LEARNING_RATE: 0.01\nPOOLING_MODE: crop\n")
    (tmp_path / "child.yml").write_text("_BASE_: base.yml\nTRAIN:\n  LEARNING_RATE: 0.02\n")
    cfg = default_config()
    merge_file(cfg, tmp_path / "child.yml")
    assert (cfg.TRAIN.WEIGHT_DECAY, cfg.TRAIN.LEARNING_RATE, cfg.POOLING_MODE) == (0.0001, 0.02, "crop")
    (tmp_path / "base.yml").write_text("_BASE_: child.yml\n")
    with pytest.raises(ValueError, match="in a loop"):
        merge_file(default_config(), tmp_path / "child.yml")


def test_shipped_resnet_files_are_one_config():
    resnets = [build_config(net, CFGS) for net in ("res50", "res101", "res152")]
    assert resnets[0] == resnets[1] == resnets[2] != default_config()
    assert resnets[0].TRAIN.WEIGHT_DECAY == 0.0001 and resnets[0].TRAIN.DOUBLE_BIAS is False


def test_build_config_merge_order(tmp_path):
    """defaults -> dataset profile -> cfgs/<net>.yml -> large scale -> --cfg -> --cag -> --set."""
    (tmp_path / "mine.yml").write_text("TEST:\n  NMS: 0.4\n  MAX_SIZE: 1300\n")
    profile = {"TEST": {"NMS": 0.2, "SCALES": [256]}, "ANCHOR_SCALES": [1, 2]}
    cfg = build_config("vgg16", CFGS, profile, tmp_path / "mine.yml", ["TEST.MAX_SIZE", "1400"], True, True)
    assert cfg.ANCHOR_SCALES == [1, 2]  # the profile, untouched by later sources
    assert cfg.TRAIN.DOUBLE_BIAS is True and cfg.TRAIN.BG_THRESH_LO == 0.0  # cfgs/vgg16.yml
    assert cfg.TEST.SCALES == [800]  # large_scale.yml over the profile
    assert cfg.TEST.NMS == 0.4  # --cfg over the profile
    assert cfg.TEST.MAX_SIZE == 1400  # --set over --cfg over large_scale.yml
    assert cfg.CLASS_AGNOSTIC is True
    assert build_config("vgg16", CFGS, profile).TEST.SCALES == [256]
