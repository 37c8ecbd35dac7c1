"""Interrupted runs, diverging runs, bad data and mismatched checkpoints."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import CFGS, ROOT, SMALL_NET

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.validate import DataError
from frcnn.inference.torch_detector import load_detector
from frcnn.runs.checkpoint import CheckpointError, load_checkpoint
from frcnn.training.build import TrainOptions, train
from frcnn.training.hooks import NonFiniteLossError

SMALL = SMALL_NET


def small_cfg(dataset: str, data_dir: Path, *extra: str):
    return build_config("tiny", CFGS, dataset_spec(dataset, data_dir).profile, set_cfgs=[*SMALL, *extra])


def test_training_on_bad_data_skips_and_finishes(tmp_path, build, caplog):
    build.bad_voc(tmp_path / "bad")
    (tmp_path / "bad" / "ImageSets" / "Main" / "test.txt").write_text("good\ngray\nzerobytes\n")
    (tmp_path / "bad.yaml").write_text(
        "format: voc\nroot: bad\ntrain: trainval\ntest: test\nclasses: [circle, square]\n"
    )
    dataset = str(tmp_path / "bad.yaml")
    opts = TrainOptions(
        dataset=dataset,
        net="tiny",
        batch_size=2,
        epochs=1,
        save_dir=str(tmp_path / "m"),
        data_dir=str(tmp_path),
        disp_interval=1,
        lr=0.001,
        optimizer="adam",
    )
    with caplog.at_level("INFO", logger="frcnn"):
        checkpoint = train(opts, small_cfg(dataset, tmp_path))
    assert checkpoint.name == "faster_rcnn_1_1_7.pth"  # 7 usable images + flips, batch 2
    assert any("skipped 9 images" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "m" / "tiny" / "bad" / "data_check.txt").read_text().count("skipped\t") == 9
    state = load_checkpoint(checkpoint)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    opts.strict, opts.save_dir = True, str(tmp_path / "strict")
    with pytest.raises(DataError, match="--strict"):
        train(opts, small_cfg(dataset, tmp_path))


def test_non_finite_loss_stops_with_step_terms_and_images(small_shapes_root, tmp_path, monkeypatch):
    from frcnn.modeling.faster_rcnn import FasterRCNN

    real_forward = FasterRCNN.forward
    calls = {"n": 0}

    def forward_nan_at_third_step(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:
                out["rcnn_box"] = out["rcnn_box"] * float("nan")
        return out

    monkeypatch.setattr(FasterRCNN, "forward", forward_nan_at_third_step)
    data_dir = small_shapes_root.parent
    opts = TrainOptions(
        dataset="shapes",
        net="tiny",
        batch_size=4,
        epochs=2,
        save_dir=str(tmp_path),
        data_dir=str(data_dir),
        disp_interval=5,
        checkpoint_interval=2,
        lr=0.001,
        optimizer="adam",
    )
    with pytest.raises(NonFiniteLossError) as info:
        train(opts, small_cfg("shapes", data_dir))
    message = str(info.value)
    assert "non-finite loss at step 3" in message and "rcnn_box=nan" in message and "rpn_cls=" in message
    assert "images of the batch: trainval_" in message
    saved = sorted(p.name for p in (tmp_path / "tiny" / "shapes").glob("*.pth"))
    assert saved == ["faster_rcnn_1_1_2.pth"]  # the good checkpoint before step 3, nothing after
    assert all(
        torch.isfinite(v).all()
        for v in load_checkpoint(tmp_path / "tiny" / "shapes" / saved[0])["model"].values()
        if v.is_floating_point()
    )


def test_resume_into_another_model_lists_the_differences(small_shapes_root, tmp_path):
    data_dir = small_shapes_root.parent
    opts = TrainOptions(
        dataset="shapes", net="tiny", batch_size=4, epochs=1, save_dir=str(tmp_path), data_dir=str(data_dir), lr=0.001
    )
    checkpoint = train(opts, small_cfg("shapes", data_dir))
    opts.resume, opts.epochs = True, 2
    with pytest.raises(CheckpointError) as info:
        train(opts, small_cfg("shapes", data_dir, "POOLING_MODE", "crop", "CLASS_AGNOSTIC", "True"))
    assert "POOLING_MODE: align (checkpoint) vs crop" in str(
        info.value
    ) and "CLASS_AGNOSTIC: False (checkpoint) vs True" in str(info.value)
    with pytest.raises(CheckpointError, match="POOLING_SIZE: 7 \\(checkpoint\\) vs 14"):
        load_detector(checkpoint, overrides=["POOLING_SIZE", "14"])
    with pytest.raises(CheckpointError, match="net: tiny \\(checkpoint\\) vs vgg16"):
        load_detector(checkpoint, net="vgg16")
    assert load_detector(checkpoint, overrides=["TEST.SCALES", "[160]"]).cfg.TEST.SCALES == [
        160
    ]  # test-time settings may change


def kill_after_an_early_checkpoint(args: list[str], folder: Path) -> None:
    """Start a training, kill it just after its checkpoint of step 3, 6 or 9 of epoch 1, with 15 or
    more of the 24 steps to go (on a fast machine a step takes tens of milliseconds: a longer wait
    could miss the run), and check that it was running when killed."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rng = random.Random(os.getpid())
    target = folder / f"faster_rcnn_1_1_{rng.choice([3, 6, 9])}.pth"
    try:
        deadline = time.time() + 300
        while not target.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert target.exists(), "no checkpoint before the run ended or timed out"
        time.sleep(rng.uniform(0.0, 0.05))  # within the next step or so, maybe in the middle of a save
        assert proc.poll() is None, "the run ended before the kill: nothing was interrupted"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_killed_run_resumes_to_the_same_parameters(small_shapes_root, tmp_path):
    """Kill a training process soon after one of its early checkpoints, long before its last; --r
    continues from its newest checkpoint and ends where an uninterrupted run ends."""
    args = [sys.executable, "trainval_net.py", "--dataset", "shapes", "--net", "tiny", "--bs", "4", "--epochs", "2"]
    args += ["--o", "adam", "--lr", "0.001", "--data_dir", str(small_shapes_root.parent)]
    args += ["--checkpoint_interval", "3", "--disp_interval", "3", "--set", *SMALL]
    straight = subprocess.run(
        [*args, "--save_dir", str(tmp_path / "a")], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert straight.returncode == 0, straight.stderr[-2000:]
    folder = tmp_path / "b" / "tiny" / "shapes"
    final = folder / "faster_rcnn_1_2_12.pth"  # 48 images (24 + flips) / 4 = 12 steps an epoch, 2 epochs
    kill_after_an_early_checkpoint([*args, "--save_dir", str(tmp_path / "b")], folder)
    assert not final.exists(), "the killed run reached its last checkpoint: nothing was interrupted"
    saved = list(folder.glob("faster_rcnn_*.pth"))
    assert saved
    resumed = subprocess.run(
        [*args, "--save_dir", str(tmp_path / "b"), "--r"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    resumed_line = [line for line in resumed.stdout.splitlines() if "resumed from" in line]
    assert len(resumed_line) == 1, resumed.stdout[-2000:]
    newest = max(saved, key=lambda path: [int(part) for part in path.stem.split("_")[-2:]])  # (epoch, step)
    assert newest.name in resumed_line[0], resumed_line[0]
    a = load_checkpoint(tmp_path / "a" / "tiny" / "shapes" / "faster_rcnn_1_2_12.pth")["model"]
    b = load_checkpoint(final)["model"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
