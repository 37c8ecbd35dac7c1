"""COCO instances JSON, fuzzed: read, checked and evaluated, or one clean error naming the file."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import pytest
from conftest import good_image
from fuzzing import (
    environment_unchanged,
    fast,
    files_under,
    mutated_bytes,
    mutated_tree,
    read_check_evaluate,
    slow,
)
from hypothesis import given
from hypothesis import strategies as st

from frcnn.data.datasets.coco import COCOFormatDataset

VALID = {
    "images": [
        {"id": 1, "file_name": "a.jpg", "width": 80, "height": 60},
        {"id": 2, "file_name": "b.jpg", "width": 80, "height": 60},
        {"id": 3, "file_name": "sub/c.png", "width": 64, "height": 48},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [40, 20, 30, 30], "area": 900, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 5, "bbox": [0, 0, 80, 60], "area": 4800, "iscrowd": 1},
        {"id": 4, "image_id": 2, "category_id": 7, "bbox": [5.5, 6.25, 12, 9], "area": 108, "iscrowd": 0},
        {"id": 5, "image_id": 3, "category_id": 5, "bbox": [30, 20, 30, 25]},
    ],
    "categories": [{"id": 5, "name": "circle"}, {"id": 7, "name": "square"}],
}


@functools.cache
def image_folder() -> Path:
    """The images VALID names (and one it does not), made once."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz_coco_")) / "images"
    (folder / "sub").mkdir(parents=True)
    for name, (h, w) in {"a.jpg": (60, 80), "b.jpg": (60, 80), "sub/c.png": (48, 64), "x.jpg": (40, 40)}.items():
        good_image(folder / name, h=h, w=w)
    return folder


def cases():
    tree = mutated_tree(VALID, extra=(VALID["images"][0], VALID["annotations"][0], "x.jpg", "sub/../a.jpg"))
    as_text = tree.map(lambda t: json.dumps(t).encode())
    return st.one_of(as_text, as_text, mutated_bytes(json.dumps(VALID).encode()))


def check(data: bytes) -> None:
    images = image_folder()
    before = files_under(images.parent)
    with tempfile.TemporaryDirectory() as tmp:
        annotations = Path(tmp) / "instances.json"
        annotations.write_bytes(data)
        dataset = COCOFormatDataset("fuzz_test", annotations, images)
        read_check_evaluate(dataset, [annotations])
    environment_unchanged(images.parent, before)


@fast(600)
@given(cases())
def test_coco_json(data):
    check(data)


@pytest.mark.slow
@slow()
@given(cases())
def test_coco_json_many(data):
    check(data)
