"""Two gloo processes train exactly like one process with the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, SMALL_NET

from frcnn.runs.checkpoint import load_checkpoint

SMALL = ["--set", *SMALL_NET, "TINY.NORM", "group", "TRAIN.USE_FLIPPED", "False", "TRAIN.WARMUP_ITERS", "0"]


@pytest.fixture(scope="module")
def same_size_data(tmp_path_factory, build):
    """7 images of one size: batches of 4 and 3, the second shared 2 + 1 between two processes, so
    the losses must be weighted by each process's share (GroupNorm statistics include padding, so
    equal sizes keep the padding equal for any split)."""
    root = tmp_path_factory.mktemp("ddp")
    samples = []
    for image, objects in build.shapes_samples(30, seed=70):
        if image.shape[0] >= 200 and image.shape[1] >= 200 and len(samples) < 7:
            kept = [(n, b, d) for n, b, d in objects if b[2] < 200 and b[3] < 200]
            samples.append((np.ascontiguousarray(image[:200, :200]), kept))
    assert len(samples) == 7
    build.write_voc(root, "trainval", samples)
    build.write_voc(root, "test", samples[:2])
    (root / "d.yaml").write_text(
        "format: voc\ntrain: trainval\ntest: test\nclasses: [circle, square, triangle, star, cross, ring, crescent]\n"
    )
    return root / "d.yaml"


def train(
    dataset: Path, save_dir: Path, processes: int, *extra: str, settings: tuple = (), net: str = "tiny"
) -> subprocess.CompletedProcess:
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        if processes > 1
        else [sys.executable]
    )
    args = [
        "trainval_net.py",
        "--dataset",
        str(dataset),
        "--net",
        net,
        "--bs",
        "4",
        "--o",
        "sgd",
        "--lr",
        "0.01",
        "--save_dir",
        str(save_dir),
        "--disp_interval",
        "1",
        *extra,
        *SMALL,
        *settings,
    ]
    result = subprocess.run([*launcher, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def parameters(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def assert_same(a: dict, b: dict) -> None:
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), rtol=1e-4, atol=1e-5), key


def test_two_processes_match_one(same_size_data, tmp_path):
    train(same_size_data, tmp_path / "one", 1, "--epochs", "1")
    two = train(same_size_data, tmp_path / "two", 2, "--epochs", "1")
    folder = tmp_path / "two" / "tiny" / "d"
    assert sorted(p.name for p in folder.glob("*.pth")) == ["faster_rcnn_1_1_2.pth"]  # one checkpoint, by rank 0
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 2  # one record per step, by rank 0
    assert two.stdout.count("saved ") == 1 and "2 processes, global batch 4" in two.stdout
    assert_same(
        parameters(tmp_path / "one" / "tiny" / "d" / "faster_rcnn_1_1_2.pth"),
        parameters(folder / "faster_rcnn_1_1_2.pth"),
    )


def test_resume_with_another_number_of_processes(same_size_data, tmp_path):
    train(same_size_data, tmp_path / "straight", 1, "--epochs", "2")
    train(same_size_data, tmp_path / "mixed", 2, "--epochs", "1")
    train(same_size_data, tmp_path / "mixed", 1, "--epochs", "2", "--r")
    straight = parameters(tmp_path / "straight" / "tiny" / "d" / "faster_rcnn_1_2_2.pth")
    assert_same(straight, parameters(tmp_path / "mixed" / "tiny" / "d" / "faster_rcnn_1_2_2.pth"))


def test_evaluation_across_processes_equals_one_process(same_size_data, tmp_path):
    train(same_size_data, tmp_path / "m", 1, "--epochs", "1")
    common = [
        "test_net.py",
        "--dataset",
        str(same_size_data),
        "--net",
        "tiny",
        "--load_dir",
        str(tmp_path / "m"),
        "--output_dir",
        str(tmp_path / "out"),
        "--set",
        "TEST.SCORE_THRESH",
        "0.0",
    ]
    one = subprocess.run([sys.executable, *common], cwd=ROOT, capture_output=True, text=True, timeout=300)
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *common],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    ap_lines = lambda out: [line for line in out.splitlines() if line.startswith(("AP for", "Mean AP"))]  # noqa: E731
    assert ap_lines(two.stdout) == ap_lines(one.stdout) and len(ap_lines(one.stdout)) == 8
    assert "2 processes" in two.stdout


def test_deformable_pooling_under_ddp_matches_one_process_and_its_checkpoint_evaluates(same_size_data, tmp_path):
    deform = ("POOLING_MODE", "deform")
    train(same_size_data, tmp_path / "one", 1, "--epochs", "1", settings=deform)
    train(same_size_data, tmp_path / "two", 2, "--epochs", "1", settings=deform)
    one = parameters(tmp_path / "one" / "tiny" / "d" / "faster_rcnn_1_1_2.pth")
    two = parameters(tmp_path / "two" / "tiny" / "d" / "faster_rcnn_1_1_2.pth")
    assert_same(one, two)
    assert one["roi_heads.pooler.deform.offset_fc.weight"].abs().sum() > 0  # the offsets learnt something
    evaluated = subprocess.run(
        [sys.executable, "test_net.py", "--dataset", str(same_size_data), "--load_dir", str(tmp_path / "two")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "Mean AP = " in evaluated.stdout


def test_a_pyramid_net_under_ddp_matches_one_process_and_trains_with_amp(same_size_data, tmp_path):
    """From (random) ImageNet-layout weights, so BatchNorm is frozen: a global batch split over two
    processes then computes what one process computes."""
    import torchvision

    net = "mobilenet_v3_fpn"
    weights = tmp_path / "mobilenet_v3_large-8738ca79.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v3_large(weights=None).state_dict(), weights)
    start = ("--pretrained", str(weights))
    train(same_size_data, tmp_path / "one", 1, "--epochs", "1", *start, net=net)
    train(same_size_data, tmp_path / "two", 2, "--epochs", "1", *start, net=net)
    one = parameters(tmp_path / "one" / net / "d" / "faster_rcnn_1_1_2.pth")
    assert_same(one, parameters(tmp_path / "two" / net / "d" / "faster_rcnn_1_1_2.pth"))
    amp = train(same_size_data, tmp_path / "amp", 1, "--epochs", "1", "--amp", net=net)  # from scratch
    assert "mixed precision" in amp.stdout and "saved " in amp.stdout


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def rank_of(pid: int) -> int:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(e for e in environ if e.startswith(b"RANK=")).split(b"=")[1])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux /proc needed to find the rank processes")
def test_a_killed_rank_stops_the_others_and_the_run_resumes(same_size_data, tmp_path):
    """kill -9 of rank 1 under torchrun: rank 0 stops within 60 s, the message names rank 1, the
    newest checkpoint loads and --resume finishes the run."""
    import signal
    import time

    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "trainval_net.py"]
    args += ["--dataset", str(same_size_data), "--net", "tiny", "--bs", "2", "--epochs", "6", "--o", "sgd"]
    args += ["--lr", "0.01", "--save_dir", str(tmp_path), "--checkpoint_interval", "1", *SMALL]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    folder = tmp_path / "tiny" / "d"
    deadline = time.time() + 300
    while not list(folder.glob("faster_rcnn_1_*.pth")) and time.time() < deadline:
        time.sleep(0.05)
    victim = next(pid for pid in children(proc.pid) if rank_of(pid) == 1)
    assert proc.poll() is None
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    _, stderr = proc.communicate(timeout=120)
    assert time.time() - killed_at < 60 and proc.returncode != 0
    assert "rank      : 1" in stderr and "SIGKILL" in stderr
    assert not (folder / "faster_rcnn_1_6_4.pth").exists()  # it was interrupted
    newest = sorted(folder.glob("faster_rcnn_1_*.pth"), key=lambda p: p.stat().st_mtime)[-1]
    assert load_checkpoint(newest)["model"]
    resumed = subprocess.run([*args, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and (folder / "faster_rcnn_1_6_4.pth").is_file()


def _rank_one_dies() -> None:
    from frcnn.runs import distributed

    world = distributed.init(False)
    if world.rank == 1:
        os.kill(os.getpid(), 9)
    torch.distributed.barrier()  # rank 0 would wait here for ever


def test_mgpus_launcher_stops_the_others_when_one_dies():
    """--mGPUs's launcher (one process per GPU; here two gloo processes on the CPU)."""
    import time

    from frcnn.runs.distributed import LostProcessError, launch_local

    started = time.time()
    with pytest.raises(
        LostProcessError, match=r"rank 1 of 2 died \(signal SIGKILL\); the other processes were stopped"
    ):
        launch_local(_rank_one_dies, 2)
    assert time.time() - started < 60
