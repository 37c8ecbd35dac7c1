"""YOLO label files (format: yolo), fuzzed: rows of the label files and the split's list of
images mutated; read, checked and evaluated, or one clean error naming the file."""

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

from frcnn.data.datasets.yolo import YOLOFormatDataset

CLASSES = ("cat", "dog")
ROWS = "0 0.25 0.3 0.2 0.3\n1 0.6 0.55 0.35 0.4\n1 0.1 0.1 0.15 0.12 0.3 0.25 0.05 0.2\n"  # the last a polygon
LIST = "./images/test/a.png\n./images/test/b.png\nimages/test/c.png\n"


@functools.cache
def data_folder() -> Path:
    """Three images with their label files, and an image beside (outside) the root, made once."""
    root = Path(tempfile.mkdtemp(prefix="fuzz_yolo_")) / "yolo"
    (root / "images" / "test").mkdir(parents=True)
    (root / "labels" / "test").mkdir(parents=True)
    for name in ("a", "b", "c"):
        good_image(root / "images" / "test" / f"{name}.png", h=60, w=80)
        (root / "labels" / "test" / f"{name}.txt").write_text(ROWS)
    good_image(root.parent / "outside.png")
    return root


def cases():
    rows = st.one_of(mutated_lines(ROWS, " "), mutated_lines(ROWS, " "), mutated_bytes(ROWS.encode()))
    extra = ("../../outside.png", "/etc/passwd", "images/test/missing.png", "images/test/a.png")
    lists = st.one_of(st.just(LIST.encode()), mutated_lines(LIST + "\n".join(extra) + "\n", " "))
    return st.tuples(rows, st.sampled_from(("a", "b", "c")), st.one_of(st.just(None), lists))


def check(case: tuple[bytes, str, bytes | None]) -> None:
    rows, which, listing = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "yolo"
        shutil.copytree(data_folder(), root)
        (root / "labels" / "test" / f"{which}.txt").write_bytes(rows)
        source = root / "images" / "test"
        if listing is not None:
            source = root / "test.txt"
            source.write_bytes(listing)
        before = files_under(Path(tmp))
        dataset = YOLOFormatDataset("fuzz_test", root, [source], CLASSES)
        read_check_evaluate(dataset, [root, "fuzz_test"])
        environment_unchanged(Path(tmp), before)


@fast(200)
@given(cases())
def test_yolo_labels(case):
    check(case)


@pytest.mark.slow
@slow()
@given(cases())
def test_yolo_labels_many(case):
    check(case)
