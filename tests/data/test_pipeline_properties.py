"""Property: any image size and any boxes, through the data check, the loader and one training
step, give finite losses or a clear rejection (DataError), never a crash."""

import math

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frcnn.config import default_config, merge_dict
from frcnn.data.datasets.base import ImageRecord
from frcnn.data.datasets.factory import SHAPES_PROFILE
from frcnn.data.loader import RoidbDataset, collate
from frcnn.data.roidb import build_roidb
from frcnn.data.validate import DataError, check_records
from frcnn.modeling import build_model

NUM_CLASSES = 4
coordinate = st.one_of(st.floats(-1e4, 1e4), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0]))
box = st.tuples(coordinate, coordinate, coordinate, coordinate)


@pytest.fixture(scope="module")
def model():
    cfg = default_config()
    merge_dict(cfg, SHAPES_PROFILE)  # the default (BatchNorm) tiny net, small
    merge_dict(
        cfg,
        {
            "TINY": {"CHANNELS": [8, 16, 16, 32], "HEAD_DIM": 32},
            "ANCHOR_SCALES": [1, 1.41, 2, 2.83, 4, 5.66, 8],  # fixed: `auto` needs the training data
            "RPN_CHANNELS": 32,
            "TRAIN": {"SCALES": [128], "MAX_SIZE": 256},
        },
    )
    torch.manual_seed(0)
    m, _ = build_model(cfg, "tiny", NUM_CLASSES)
    return m.train(), cfg


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.tuples(st.integers(1, 300), st.integers(1, 300)), min_size=1, max_size=3),
    boxes=st.lists(st.lists(box, max_size=6), min_size=3, max_size=3),
    labels=st.lists(st.integers(-2, NUM_CLASSES + 2), min_size=6, max_size=6),
)
def test_any_boxes_and_sizes_train_or_are_rejected(model, tmp_path, sizes, boxes, labels):
    net, cfg = model
    records = []
    for i, (h, w) in enumerate(sizes):
        path = tmp_path / f"{i}_{h}x{w}.png"
        cv2.imwrite(str(path), np.full((h, w, 3), 127, np.uint8))
        b = np.asarray(boxes[i], dtype=np.float64).reshape(-1, 4).astype(np.float32)
        records.append(
            ImageRecord(
                id=str(i),
                path=str(path),
                width=w,
                height=h,
                boxes=b,
                labels=np.asarray(labels[: len(b)], dtype=np.int64),
                difficult=np.zeros(len(b), bool),
                crowd=np.zeros(len(b), bool),
            )
        )
    try:
        report = check_records("property", records, num_classes=NUM_CLASSES, progress=False)
    except DataError as e:
        assert "no usable images" in str(e)
        return
    for r in report.kept:
        assert np.isfinite(r.boxes).all() and (r.boxes[:, 2:] >= r.boxes[:, :2]).all()
        assert (
            (r.boxes[:, :2] >= 0).all()
            and (r.boxes[:, 2] <= r.width - 1).all()
            and (r.boxes[:, 3] <= r.height - 1).all()
        )
        assert ((r.labels >= 1) & (r.labels < NUM_CLASSES)).all()
    roidb = build_roidb(report.kept, use_flipped=True)
    data = RoidbDataset(roidb, cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE)
    batch = collate([data[i] for i in range(len(roidb))])
    losses = net(batch.images, batch.image_sizes, batch.image_scales, batch.targets)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
