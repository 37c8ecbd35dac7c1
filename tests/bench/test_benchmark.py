"""The benchmark compares like with like and reports what the issue asks for."""

import json
import multiprocessing
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.bench_measure import peak_rss_bytes, reset_peak_rss
from tools.bench_models import Settings, build_ours, build_torchvision

ROOT = Path(__file__).resolve().parents[2]


def test_torchvision_model_gets_our_weights_and_frozen_layers():
    s = Settings(net="vgg16")
    ours, _ = build_ours(s)
    tv = build_torchvision(ours, s)
    for a, b in zip(ours.backbone.base.parameters(), tv.backbone.body.parameters()):
        assert torch.equal(a, b) and a.requires_grad == b.requires_grad
    assert not next(tv.backbone.body.parameters()).requires_grad  # conv1 frozen in both
    assert torch.equal(tv.rpn.head.conv[0][0].weight, ours.rpn.head.conv.weight)
    assert torch.equal(tv.rpn.head.bbox_pred.weight, ours.rpn.head.deltas.weight)
    assert torch.equal(tv.roi_heads.box_head[1].weight, ours.roi_heads.box_head[1].weight)  # fc6
    assert torch.equal(tv.roi_heads.box_predictor.cls_score.weight, ours.roi_heads.predictor.cls_score.weight)
    assert tv.rpn._pre_nms_top_n == {"training": 12000, "testing": 6000} and tv.rpn._post_nms_top_n == {
        "training": 2000,
        "testing": 300,
    }
    assert tv.roi_heads.fg_bg_sampler.batch_size_per_image == 128 and tv.roi_heads.box_roi_pool.sampling_ratio == 2
    assert tv.transform.min_size == (600,) and tv.transform.max_size == 1000
    assert ours.roi_heads.pooler.mode == "align" and ours.roi_heads.pooler.sampling_ratio == 2
    anchors = tv.rpn.anchor_generator.cell_anchors[0]
    assert anchors.shape == ours.rpn.anchor_generator.base_anchors.shape == (9, 4)


linux_memory_counters = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc needed")
MiB = 2**20


@linux_memory_counters
def test_peak_memory_sees_a_freed_allocation_and_starts_afresh_on_reset():
    reset_peak_rss()
    start = peak_rss_bytes()
    block = np.ones(300 * MiB // 8)  # written, so resident
    del block
    assert peak_rss_bytes() - start >= 290 * MiB
    reset_peak_rss()
    assert peak_rss_bytes() - start < 100 * MiB


@linux_memory_counters
def test_a_measuring_process_does_not_inherit_its_parents_peak():
    """getrusage's ru_maxrss carries a parent's size over exec; VmHWM in a spawned process (as
    memory_in_fresh_process starts one) starts afresh."""
    block = np.ones(1024 * MiB // 8)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        child_peak = pool.submit(peak_rss_bytes).result()
    parent_peak = peak_rss_bytes()
    del block
    assert parent_peak > 1024 * MiB
    assert child_peak < parent_peak - 700 * MiB


def test_benchmark_script_writes_the_figures(small_shapes_root, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "benchmark.py",
            "--net",
            "tiny",
            "--scale",
            "128",
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--memory_repeats",
            "2",
            "--data_dir",
            str(small_shapes_root.parent),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    for model in ("ours", "torchvision"):
        assert all(data[model][k] > 0 for k in ("train_step", "inference", "peak_mem"))
    assert set(data["ratio"]) == {"train_step", "inference", "peak_mem"}
    assert abs(data["ratio"]["train_step"] - data["ours"]["train_step"] / data["torchvision"]["train_step"]) < 1e-9
    # memory: two fresh processes each, the median of both; every ratio with its side-by-side spread
    assert len(data["ours"]["peak_mem_all"]) == 2 and data["ours"]["peak_mem"] == sum(data["ours"]["peak_mem_all"]) / 2
    low, high = data["ratio_spread"]["peak_mem"]
    pairs = [a / b for a, b in zip(data["ours"]["peak_mem_all"], data["torchvision"]["peak_mem_all"])]
    assert (low, high) == (min(pairs), max(pairs)) and "side by side" in result.stdout
    assert "train step (s)" in result.stdout and "ratio" in result.stdout
