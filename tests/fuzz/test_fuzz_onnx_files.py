"""Exported detectors (.onnx), fuzzed: a tiny graph with export.py's inputs, outputs and metadata,
its metadata mutated, its graph changed or its bytes damaged. The property: it opens and detects
(boxes (D, 4), scores (D,), labels (D,)), or one clean ExportedFileError naming the file."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import TINY_ONNX_METADATA, tiny_onnx
from fuzzing import environment_unchanged, fast, files_under, mutated_bytes, mutated_tree, read_cleanly, slow
from hypothesis import given
from hypothesis import strategies as st

from frcnn.inference.onnx_detector import OnnxDetector

IMAGE = np.full((24, 30, 3), 128, np.uint8)


def graph_variant(change: str) -> bytes:
    """The tiny graph with one thing changed as a foreign or broken file would have it."""
    model = onnx.load_from_string(tiny_onnx())
    graph = model.graph
    if change == "input renamed":
        graph.input[0].name = "images"
    elif change == "output dropped":
        graph.output.pop()
    elif change == "node dropped":
        graph.node.pop()  # an output no node makes: the graph does not load
    elif change == "boxes of 3":
        graph.node[0].attribute[0].t.dims[:] = [1, 3]
        del graph.node[0].attribute[0].t.float_data[3:]
    elif change == "no metadata":
        del model.metadata_props[:]
    elif change == "opset 999":
        model.opset_import[0].version = 999
    return model.SerializeToString()


def cases():
    metadata = mutated_tree(TINY_ONNX_METADATA, extra=("tiny", "shapes", {"TEST": {"SCALES": [32]}}))
    metadata = metadata.map(lambda m: tiny_onnx(json.dumps(m)))
    variants = ("input renamed", "output dropped", "node dropped", "boxes of 3", "no metadata", "opset 999")
    graphs = st.sampled_from(variants).map(graph_variant)
    return st.one_of(metadata, metadata, graphs, mutated_bytes(tiny_onnx()), mutated_bytes(tiny_onnx(), most=12))


def check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(data)

        def detect():
            detector = OnnxDetector.from_file(path, threads=1)
            (found,) = detector.detect_arrays([IMAGE])
            assert all(isinstance(c, str) for c in detector.classes) and isinstance(detector.net, str)
            return found

        before = files_under(Path(tmp))
        found = read_cleanly(detect, path)
        environment_unchanged(Path(tmp), before)
        if not isinstance(found, Exception):
            n = len(found["scores"])
            assert found["boxes"].shape == (n, 4) and found["labels"].shape == (n,)


@fast(400)
@given(cases())
def test_onnx_files(data):
    check(data)


@pytest.mark.slow
@slow()
@given(cases())
def test_onnx_files_many(data):
    check(data)
