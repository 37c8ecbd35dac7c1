"""Detector files (--load_name): this project's checkpoints, torchvision's state_dicts and the
original faster-rcnn.pytorch's, fuzzed. Each starts valid and small: ours a tiny net's real
weights, loaded all the way to a model (load_detector); torchvision's and the original's of full
size but on the meta device (names and shapes, no data), read through the conversion to this
project's layout and its checks (as load_detector does before building the model, which for them
takes seconds). The property: a detector or checkpoint, or one clean error naming the file."""

from __future__ import annotations

import functools
import io
import math
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import CFGS, SMALL_NET
from fuzzing import environment_unchanged, fast, files_under, mutated_bytes, mutated_tree, read_cleanly, slow
from hypothesis import given
from hypothesis import strategies as st

from frcnn.config import build_config, to_plain
from frcnn.convert import LoadContext, as_checkpoint, original
from frcnn.data.datasets.factory import dataset_spec
from frcnn.inference.torch_detector import checked_checkpoint, load_detector, stored_config
from frcnn.modeling import build_model
from frcnn.runs.checkpoint import load_checkpoint

TENSORS = (
    torch.zeros(0),
    torch.zeros(3, 0),
    torch.tensor(1.5),
    torch.full((4,), math.nan),
    torch.ones(2, 2, dtype=torch.int64),
    torch.ones(3, dtype=torch.bool),
)


@functools.cache
def ours() -> dict:
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=[*SMALL_NET, "ANCHOR_SCALES", "[2, 4]"])
    model, _ = build_model(cfg, "tiny", 3, use_default_weights=False)
    classes = ["__background__", "circle", "square"]
    return {
        "format_version": 1,
        "model": model.state_dict(),
        "config": to_plain(cfg),
        "classes": classes,
        "net": "tiny",
        "dataset": "shapes",
        "epoch": 1,
    }


@functools.cache
def torchvision_file() -> dict:
    from torchvision.models import detection

    with torch.device("meta"):
        model = detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=4)
    return dict(model.state_dict())


@functools.cache
def original_file() -> dict:
    """The original's res50 VOC file: its key names and shapes, on the meta device."""
    cfg = build_config("res50", CFGS, set_cfgs=["ANCHOR_SCALES", "[8, 16, 32]"])
    with torch.device("meta"):
        model, _ = build_model(cfg, "res50", 21, use_default_weights=False)
        layout = original._expected_layout(model.state_dict(), "res50")
        weights = {key: torch.empty(shape) for key, shape in layout.items()}
    return {"model": weights, "pooling_mode": "align", "class_agnostic": False, "epoch": 6}


def saved(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def cases():
    def kind(name, base, extra=()):
        tree = mutated_tree(base(), extra=(*TENSORS, *extra), most=3).map(saved)
        return st.tuples(st.just(name), st.one_of(tree, tree, tree, mutated_bytes(saved(base()))))

    return st.one_of(
        kind("ours", ours, ("tiny", "res50", ["__background__", "a"])),
        kind("torchvision", torchvision_file),
        kind("original", original_file, ("crop", "pool")),
    )


def check(case: tuple[str, bytes]) -> None:
    kind, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("fasterrcnn_mobilenet.pth" if kind == "torchvision" else "faster_rcnn_1_6_100.pth")
        path.write_bytes(data)
        before = files_under(Path(tmp))
        check_kind(kind, path, tmp)
        environment_unchanged(Path(tmp), before)


def check_kind(kind: str, path: Path, tmp: str) -> None:
    if kind == "ours":
        detector = read_cleanly(lambda: load_detector(path), path)
        if not isinstance(detector, Exception):
            assert all(isinstance(c, str) for c in detector.classes) and detector.net == "tiny"
        return
    context = LoadContext("res50" if kind == "original" else None, "pascal_voc", Path(tmp) / "data")

    def convert():
        state = checked_checkpoint(as_checkpoint(load_checkpoint(path, require_model=False), path, context), path)
        return state, stored_config(state["config"], path)

    read_cleanly(convert, path)


@fast(300)
@given(cases())
def test_checkpoints(case):
    check(case)


@pytest.mark.slow
@slow()
@given(cases())
def test_checkpoints_many(case):
    check(case)
