import re
from pathlib import Path

import pytest

from frcnn.config import (
    ConfigError,
    build_config,
    default_config,
    from_plain,
    merge_file,
    merge_pairs,
    parse_literal,
    to_plain,
)

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


ORIGINAL_VGG16_YML = """EXP_DIR: vgg16
TRAIN:
  HAS_RPN: True
  BBOX_NORMALIZE_TARGETS_PRECOMPUTED: True
  RPN_POSITIVE_OVERLAP: 0.7
  RPN_BATCHSIZE: 256
  PROPOSAL_METHOD: gt
  BG_THRESH_LO: 0.0
  BATCH_SIZE: 256
  LEARNING_RATE: 0.001
TEST:
  HAS_RPN: True
POOLING_MODE: pool
CROP_RESIZE_WITH_MAX_POOL: False
"""


def test_the_originals_own_cfg_files_merge_with_one_warning(tmp_path, caplog):
    """Its keys that mean something here take effect; those only it had are named once and ignored."""
    (tmp_path / "vgg16.yml").write_text(ORIGINAL_VGG16_YML)
    res101 = ORIGINAL_VGG16_YML.replace("EXP_DIR: vgg16", "EXP_DIR: res101").replace(
        "BATCH_SIZE: 256", "BATCH_SIZE: 128"
    )
    res101 = res101.replace("POOLING_MODE: pool", "POOLING_MODE: align\nPOOLING_SIZE: 7")
    res101 = res101.replace("TRAIN:\n", "TRAIN:\n  DISPLAY: 20\n  WEIGHT_DECAY: 0.0001\n  DOUBLE_BIAS: False\n")
    (tmp_path / "res101.yml").write_text(res101.replace("LEARNING_RATE: 0.001", "LEARNING_RATE: 0.01"))
    with caplog.at_level("WARNING", logger="frcnn"):
        vgg = build_config("vgg16", CFGS, cfg_file=tmp_path / "vgg16.yml")
    (warning,) = [r.getMessage() for r in caplog.records]
    for key in ("EXP_DIR", "TRAIN.HAS_RPN", "TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED", "TRAIN.PROPOSAL_METHOD"):
        assert key in warning
    assert "TEST.HAS_RPN" in warning and "CROP_RESIZE_WITH_MAX_POOL" in warning
    assert (vgg.POOLING_MODE, vgg.TRAIN.BATCH_SIZE, vgg.TRAIN.BG_THRESH_LO) == ("pool", 256, 0.0)
    res = build_config("res101", CFGS, cfg_file=tmp_path / "res101.yml")
    assert (res.POOLING_MODE, res.TRAIN.BATCH_SIZE, res.TRAIN.LEARNING_RATE) == ("align", 128, 0.01)
    assert res.TRAIN.DOUBLE_BIAS is False and res.TRAIN.WEIGHT_DECAY == 0.0001


def test_a_misspelt_key_is_an_error_that_suggests_the_name(tmp_path):
    (tmp_path / "typo.yml").write_text("TRAIN:\n  LEARNIG_RATE: 0.01\n")
    with pytest.raises(
        ValueError, match=r"unknown config key TRAIN.LEARNIG_RATE \(did you mean TRAIN.LEARNING_RATE\?\)"
    ):
        merge_file(default_config(), tmp_path / "typo.yml")
    with pytest.raises(ValueError, match=r"POOLNG_MODE \(did you mean POOLING_MODE\?\)"):
        merge_pairs(default_config(), ["POOLNG_MODE", "align"])


def test_a_missing_base_names_the_file_that_names_it(tmp_path):
    """It was open()'s FileNotFoundError for the base alone."""
    (tmp_path / "child.yml").write_text("_BASE_: nowhere.yml\nTRAIN:\n  LEARNING_RATE: 0.02\n")
    with pytest.raises(ConfigError) as info:
        merge_file(default_config(), tmp_path / "child.yml")
    assert (
        str(info.value)
        == f"{tmp_path / 'child.yml'}: its _BASE_ 'nowhere.yml' is not a file ({tmp_path / 'nowhere.yml'})"
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), "is a folder, not a config file"),  # was IsADirectoryError's traceback
        (lambda p: p.write_bytes(b"TRAIN:\n  LEARNING_RATE: 0.01 \xe9t\xe9\n"), "not UTF-8 text"),  # named no file
        (lambda p: p.write_text("TRAIN:\n  LEARNING_RATE: .nan\n"), "TRAIN.LEARNING_RATE wants a finite number"),
        (lambda p: p.write_text("TRAIN:\n  LEARNING_RATE: " + "9" * 400 + "\n"), "wants a finite number"),
        (lambda p: p.write_text("TEST:\n  SCALES: [600, abc]\n"), "TEST.SCALES wants a finite number; got 'abc'"),
        (lambda p: p.write_text("TRAIN:\n  NOPE: 1\n"), "unknown config key TRAIN.NOPE"),
        (lambda p: p.write_text("[" * 5000), "not"),
    ],
)
def test_a_config_file_that_cannot_be_used_is_one_line_naming_it(tmp_path, make, message):
    path = tmp_path / "mine.yml"
    make(path)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        build_config("tiny", CFGS, cfg_file=path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_dataset_profile_error_names_the_dataset_file(tmp_path):
    with pytest.raises(ConfigError, match=r"data.yaml: config: unknown config key ANCHOR_SCALE \(did you mean"):
        build_config("tiny", CFGS, {"ANCHOR_SCALE": [4]}, profile_source=tmp_path / "data.yaml")
