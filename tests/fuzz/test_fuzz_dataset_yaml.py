"""Dataset YAML files (--dataset data.yaml), fuzzed: every split they name is read, checked and
evaluated, and their config merged, or one clean error names the file."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import CFGS, shapes_samples, write_coco, write_voc
from fuzzing import (
    environment_unchanged,
    fast,
    files_under,
    mutated_bytes,
    mutated_tree,
    read_check_evaluate,
    read_cleanly,
    slow,
)
from hypothesis import given
from hypothesis import strategies as st

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec

COCO = {
    "format": "coco",
    "root": "data",
    "train": {"images": "images/train", "annotations": "annotations/train.json"},
    "test": {"images": "images/test", "annotations": "annotations/test.json"},
    "val": {"images": "images/test", "annotations": "annotations/test.json"},
    "classes": ["circle", "square", "triangle", "star"],
    "metric": "coco",
    "config": {"ANCHOR_SCALES": [2, 4, 8], "TRAIN": {"SCALES": [128]}},
}
VOC = {"format": "voc", "root": "voc", "train": ["trainval"], "test": "test", "metric": "voc07"}
EXTRA = ("voc", "coco", "test", "trainval", "data", "images/test", "annotations/train.json", COCO["train"], ["test"])


@functools.cache
def data_folder() -> Path:
    """Small COCO and VOC data beside where each case's YAML goes, made once."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz_dataset_"))
    samples = shapes_samples(6, seed=2)
    ids = {"circle": 1, "square": 2, "triangle": 3, "star": 4, "cross": 5, "ring": 6, "crescent": 7}
    data = folder / "data"
    write_coco(data / "annotations" / "train.json", data / "images" / "train", samples[:3], ids)
    write_coco(data / "annotations" / "test.json", data / "images" / "test", samples[3:], ids, first_image_id=50)
    write_voc(folder / "voc", "trainval", samples[:3])
    write_voc(folder / "voc", "test", samples[3:])
    return folder


def cases():
    def as_yaml(tree) -> bytes:
        return yaml.safe_dump(tree, allow_unicode=True).encode("utf-8", "surrogatepass")

    trees = st.one_of(mutated_tree(COCO, extra=EXTRA), mutated_tree(VOC, extra=EXTRA)).map(as_yaml)
    return st.one_of(trees, trees, trees, mutated_bytes(as_yaml(COCO)), mutated_bytes(as_yaml(VOC)))


def check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "case"
        shutil.copytree(data_folder(), folder)
        path = folder / "mine.yaml"
        path.write_bytes(data)
        before = files_under(Path(tmp))
        spec = read_cleanly_spec(path)
        if spec is not None:
            for split in (spec.train, spec.test, spec.val):
                datasets = read_cleanly_split(split, path) if split is not None else []
                for dataset in datasets:
                    read_check_evaluate(dataset, [path, dataset.name, path.parent], ("coco", "voc"))
        environment_unchanged(Path(tmp), before)


def read_cleanly_spec(path: Path):
    def spec_and_config():
        spec = dataset_spec(str(path))
        build_config("tiny", CFGS, spec.profile, profile_source=spec.source)
        return spec

    spec = read_cleanly(spec_and_config, path)
    return None if isinstance(spec, Exception) else spec


def read_cleanly_split(split, path: Path) -> list:
    datasets = read_cleanly(split, path, path.parent, f"{path.stem}_")  # a file of the data, a split of it
    if isinstance(datasets, Exception):
        return []
    return datasets if isinstance(datasets, list) else [datasets]


@fast(200)
@given(cases())
def test_dataset_yaml(data):
    check(data)


@pytest.mark.slow
@slow()
@given(cases())
def test_dataset_yaml_many(data):
    check(data)
