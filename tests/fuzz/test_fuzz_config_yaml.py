"""Config files (--cfg, and the _BASE_ files they name), fuzzed: merged into a config whose every
value has its default's type, or one clean ConfigError naming the file."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import CFGS
from fuzzing import environment_unchanged, fast, files_under, mutated_bytes, mutated_tree, read_cleanly, slow
from hypothesis import given
from hypothesis import strategies as st

from frcnn.config import build_config, default_config, from_plain, to_plain

CHILD = {
    "_BASE_": "base.yml",
    "EXP_DIR": "res101",  # a key of the original's: ignored with a warning
    "POOLING_MODE": "align",
    "ANCHOR_SCALES": [4, 8, 16],
    "TRAIN": {"LEARNING_RATE": 0.01, "SCALES": [480, 576], "USE_FLIPPED": True, "AUGMENT": ["hflip"]},
    "TEST": {"NMS": 0.4, "MAX_SIZE": 800},
}
BASE = {"TRAIN": {"WEIGHT_DECAY": 0.0001, "BATCH_SIZE": 64}, "TINY": {"CHANNELS": [8, 16, 16, 32]}}
EXTRA = ("base.yml", "child.yml", "missing.yml", ".", "auto", "TRAIN", {"TRAIN": {"NOPE": 1}}, {"_BASE_": "child.yml"})


def cases():
    def as_yaml(tree) -> bytes:
        return yaml.safe_dump(tree, allow_unicode=True).encode("utf-8", "surrogatepass")

    child = st.one_of(mutated_tree(CHILD, extra=EXTRA).map(as_yaml), mutated_bytes(as_yaml(CHILD)))
    base = st.one_of(st.just(as_yaml(BASE)), mutated_tree(BASE, extra=EXTRA).map(as_yaml), mutated_bytes(as_yaml(BASE)))
    return st.tuples(child, base)


def check(case: tuple[bytes, bytes]) -> None:
    child, base = case
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "child.yml").write_bytes(child)
        (Path(tmp) / "base.yml").write_bytes(base)
        before = files_under(Path(tmp))
        cfg = read_cleanly(lambda: build_config("tiny", CFGS, cfg_file=Path(tmp) / "child.yml"), tmp)
        environment_unchanged(Path(tmp), before)
        if not isinstance(cfg, Exception):
            assert_like_the_defaults(to_plain(cfg), to_plain(default_config()))
            assert to_plain(from_plain(to_plain(cfg))) == to_plain(cfg)  # what a checkpoint stores reads back


def assert_like_the_defaults(values: dict, defaults: dict, prefix: str = "") -> None:
    """Every value has its default's type; numbers are finite."""
    for key, default in defaults.items():
        value = values[key]
        if isinstance(default, dict):
            assert_like_the_defaults(value, default, f"{prefix}{key}.")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            assert type(value) is type(default) and math.isfinite(value), (prefix + key, value)
        elif isinstance(default, list) and value != "auto":
            assert isinstance(value, list), (prefix + key, value)
            if default and all(isinstance(v, (int, float)) for v in default):
                assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in value), (prefix + key, value)
        elif value != "auto":
            assert type(value) is type(default), (prefix + key, value)


@fast(500)
@given(cases())
def test_config_yaml(case):
    check(case)


@pytest.mark.slow
@slow()
@given(cases())
def test_config_yaml_many(case):
    check(case)
