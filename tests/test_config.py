import pytest

from frcnn.config import default_config, from_plain, merge_file, merge_pairs, parse_literal, to_plain


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
