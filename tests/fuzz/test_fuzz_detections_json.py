"""--detections files (COCO results JSON), fuzzed: read into detections that every metric takes,
or one clean DetectionsFileError naming the file."""

from __future__ import annotations

import functools
import json
import math
import tempfile
from pathlib import Path

import pytest
from conftest import shapes_samples, write_coco, write_voc
from fuzzing import environment_unchanged, fast, files_under, mutated_bytes, mutated_tree, perfect, read_cleanly, slow
from hypothesis import given
from hypothesis import strategies as st

from frcnn.data.datasets.coco import COCOFormatDataset
from frcnn.data.datasets.pascal_voc import VOCFormatDataset
from frcnn.data.validate import check_records
from frcnn.evaluation.detections_io import from_results, load_results, to_results
from frcnn.evaluation.evaluate import category_maps, evaluate

PLAUSIBLE = (0, 0.0, -7.5, 1e-9, 3, 25, 640, 1e6, 1e29, -1e29, 2.0, [0, 0, 0, 0], [-5, -5, 10, 10], [70, 50, 1e6, 1e6])
CLASSES = ("circle", "square", "triangle", "star", "cross", "ring", "crescent")


@functools.cache
def splits() -> dict:
    """A COCO and a VOC split of three images, checked, with the results file of perfect
    detections on each (made once)."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz_detections_"))
    samples = shapes_samples(3, seed=5)
    write_coco(folder / "ann.json", folder / "images", samples, {n: 3 * i + 1 for i, n in enumerate(CLASSES)})
    write_voc(folder / "voc", "test", samples)
    out = {}
    for dataset in (
        COCOFormatDataset("c", folder / "ann.json", folder / "images"),
        VOCFormatDataset("v", folder / "voc", "test", CLASSES),
    ):
        kept = check_records(dataset.name, dataset.records, dataset.issues, progress=False).kept
        category_of, label_of = category_maps(dataset)
        out[dataset.name] = (dataset, kept, label_of, to_results(kept, perfect(kept), category_of))
    return out


def cases():
    def files(name):
        valid = splits()[name][3]
        extra = (*valid[:2], 1, 4, 100, "circle", "c_0", "test_000")
        as_json = mutated_tree(valid, extra=extra).map(lambda t: json.dumps(t).encode())
        # numbers a results file may well hold: boxes off the image, empty, huge; scores out of 0..1
        plausible = mutated_tree(valid, extra=(*extra, *PLAUSIBLE), most=6, nasty=False)
        plausible = plausible.map(lambda t: json.dumps(t).encode())
        choices = (as_json, plausible, plausible, mutated_bytes(json.dumps(valid).encode()))
        return st.tuples(st.just(name), st.one_of(*choices))

    return st.one_of(files("c"), files("v"))


def check(case: tuple[str, bytes]) -> None:
    name, data = case
    dataset, kept, label_of, _ = splits()[name]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "detections.json"
        path.write_bytes(data)
        before = files_under(Path(tmp))
        detections = read_cleanly(lambda: from_results(load_results(path), kept, label_of, source=path), path)
        environment_unchanged(Path(tmp), before)
        if isinstance(detections, Exception):
            return
        for metric in ("coco", "voc", "voc07"):
            result = evaluate(dataset, detections, metric, kept)
            assert all(math.isnan(r.ap) or 0 <= r.ap <= 1 + 1e-9 for r in result.classes), result.classes


@fast(500)
@given(cases())
def test_detections_json(case):
    check(case)


@pytest.mark.slow
@slow()
@given(cases())
def test_detections_json_many(case):
    check(case)
