"""CSV box files (format: csv), fuzzed: fields, rows and bytes mutated; read, checked and
evaluated, or one clean error naming the file."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import good_image
from fuzzing import (
    environment_unchanged,
    fast,
    files_under,
    mutated_bytes,
    mutated_lines,
    read_check_evaluate,
    slow,
)
from hypothesis import given
from hypothesis import strategies as st

from frcnn.data.datasets.csv_boxes import CSVFormatDataset

CLASSES = ("cat", "dog")
VALID = (
    "image_path,xmin,ymin,xmax,ymax,label\n"
    "a.png,10,10,30,30,cat\n"
    "a.png,40.5,20,70,50,dog\n"
    "b.png,0,0,80,60,dog\n"
    "c.png,,,,,\n"
    "b.png,5,5,15,15,cat\n"
)
EXTRA_ROWS = "../outside.png,1,1,9,9,cat\n/etc/passwd,1,1,9,9,cat\nmissing.png,1,1,9,9,dog\n"


@functools.cache
def data_folder() -> Path:
    root = Path(tempfile.mkdtemp(prefix="fuzz_csv_")) / "csv"
    root.mkdir()
    for name in ("a", "b", "c"):
        good_image(root / f"{name}.png", h=60, w=80)
    good_image(root.parent / "outside.png")
    return root


def cases():
    lines = mutated_lines(VALID + EXTRA_ROWS, ",")
    return st.one_of(lines, lines, lines, mutated_lines(VALID, ";"), mutated_bytes(VALID.encode()))


def check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "csv"
        shutil.copytree(data_folder(), root)
        (root / "boxes.csv").write_bytes(data)
        before = files_under(Path(tmp))
        dataset = CSVFormatDataset("fuzz_test", root / "boxes.csv", CLASSES)
        read_check_evaluate(dataset, [root, "fuzz_test"])
        environment_unchanged(Path(tmp), before)


@fast(250)
@given(cases())
def test_csv_boxes(data):
    check(data)


@pytest.mark.slow
@slow()
@given(cases())
def test_csv_boxes_many(data):
    check(data)
