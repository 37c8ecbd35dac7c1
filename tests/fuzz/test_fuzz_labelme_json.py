"""LabelMe JSON files (format: labelme), fuzzed: read, checked and evaluated, or one clean error
naming the file."""

from __future__ import annotations

import functools
import json
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
    mutated_tree,
    read_check_evaluate,
    slow,
)
from hypothesis import given
from hypothesis import strategies as st

from frcnn.data.datasets.labelme import LabelMeDataset

CLASSES = ("cat", "dog")


def shape(label, points, kind="rectangle", group=None, flags=None):
    return {"label": label, "points": points, "group_id": group, "shape_type": kind, "flags": flags or {}}


VALID = {
    "version": "5.2.1",
    "flags": {},
    "shapes": [
        shape("cat", [[10, 10], [30, 30]]),
        shape("dog", [[40, 20], [70, 20], [70, 50], [40, 50]], "polygon"),
        shape("dog", [[20, 40], [25, 40]], "circle", flags={"difficult": True}),
        shape("cat", [[50, 5], [60, 15]], group=1),
        shape("cat", [[58, 12], [65, 18]], group=1),
        shape("__ignore__", [[0, 0], [5, 5]]),
        shape("cat", [[1, 1]], "point"),
    ],
    "imagePath": "../images/a.png",
    "imageData": None,
    "imageHeight": 60,
    "imageWidth": 80,
}
EXTRA = ("../images/b.png", "../../outside.png", "rectangle", "polygon", "mask", "circle", [[1, 2], [3, 4]], [5, 6])


@functools.cache
def data_folder() -> Path:
    root = Path(tempfile.mkdtemp(prefix="fuzz_labelme_")) / "labelme"
    (root / "images").mkdir(parents=True)
    (root / "json").mkdir()
    for name in ("a", "b"):
        good_image(root / "images" / f"{name}.png", h=60, w=80)
        (root / "json" / f"{name}.json").write_text(json.dumps({**VALID, "imagePath": f"../images/{name}.png"}))
    good_image(root.parent / "outside.png")
    return root


def cases():
    tree = mutated_tree(VALID, extra=EXTRA).map(lambda t: json.dumps(t).encode())
    return st.tuples(st.one_of(tree, tree, mutated_bytes(json.dumps(VALID).encode())), st.sampled_from(("a", "b")))


def check(case: tuple[bytes, str]) -> None:
    data, which = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "labelme"
        shutil.copytree(data_folder(), root)
        (root / "json" / f"{which}.json").write_bytes(data)
        before = files_under(Path(tmp))
        dataset = LabelMeDataset("fuzz_test", root / "json", CLASSES, root=root)
        read_check_evaluate(dataset, [root, "fuzz_test"])
        environment_unchanged(Path(tmp), before)


@fast(250)
@given(cases())
def test_labelme_json(case):
    check(case)


@pytest.mark.slow
@slow()
@given(cases())
def test_labelme_json_many(case):
    check(case)
