import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from frcnn.runs.checkpoint import (
    CheckpointError,
    checkpoint_path,
    find_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)


def test_round_trip_with_weights_only(tmp_path):
    state = {
        "model": {"w": torch.arange(4.0)},
        "epoch": 3,
        "step": 7,
        "config": {"A": [1, 2]},
        "classes": ["__background__", "x"],
    }
    path = save_checkpoint(tmp_path / "c.pth", state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert {k: loaded[k] for k in ("epoch", "step", "config", "classes")} == {
        k: state[k] for k in ("epoch", "step", "config", "classes")
    }
    assert loaded["format_version"] == 1
    assert not list(tmp_path.glob(".*tmp*"))


def test_naming_and_lookup(tmp_path):
    assert checkpoint_path(tmp_path, "vgg16", "pascal_voc", 1, 6, 10021).name == "faster_rcnn_1_6_10021.pth"
    for epoch, step in [(1, 100), (2, 50), (2, 100), (10, 3)]:
        save_checkpoint(checkpoint_path(tmp_path, "tiny", "shapes", 1, epoch, step), {"model": {}})
    save_checkpoint(checkpoint_path(tmp_path, "tiny", "shapes", 2, 99, 1), {"model": {}})
    assert latest_checkpoint(tmp_path, "tiny", "shapes", 1).name == "faster_rcnn_1_10_3.pth"
    assert find_checkpoint(tmp_path, "tiny", "shapes", 1, 2, None).name == "faster_rcnn_1_2_100.pth"
    with pytest.raises(CheckpointError, match="not found"):
        find_checkpoint(tmp_path, "tiny", "shapes", 1, 3, 5)


def test_pruning_keeps_the_newest_by_epoch_and_step_and_spares_best_and_other_sessions(tmp_path):
    for epoch, step in [(1, 100), (2, 50), (2, 100), (10, 3)]:
        save_checkpoint(checkpoint_path(tmp_path, "tiny", "shapes", 1, epoch, step), {"model": {}})
    save_checkpoint(checkpoint_path(tmp_path, "tiny", "shapes", 2, 1, 1), {"model": {}})
    folder = checkpoint_path(tmp_path, "tiny", "shapes", 1, 1, 1).parent
    save_checkpoint(folder / "faster_rcnn_1_best.pth", {"model": {}})
    removed = prune_checkpoints(tmp_path, "tiny", "shapes", 1, keep=2)
    assert [p.name for p in removed] == ["faster_rcnn_1_1_100.pth", "faster_rcnn_1_2_50.pth"]
    left = sorted(p.name for p in folder.glob("*.pth"))
    assert left == [
        "faster_rcnn_1_10_3.pth",
        "faster_rcnn_1_2_100.pth",
        "faster_rcnn_1_best.pth",
        "faster_rcnn_2_1_1.pth",
    ]
    with pytest.raises(ValueError, match="keep at least one"):
        prune_checkpoints(tmp_path, "tiny", "shapes", 1, keep=0)


class _Exploit:
    """Unpickling this calls os.mkdir(marker): evidence that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path, marker = tmp_path / "evil.pth", tmp_path / "ran"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to load: it asks to call posix.mkdir"):
        load_checkpoint(path)
    assert not marker.exists()


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a file written by torch.save"):
        load_checkpoint(path)


def test_kill_during_write_keeps_the_previous_checkpoint(tmp_path):
    target = tmp_path / "c.pth"
    save_checkpoint(target, {"model": {"w": torch.ones(3)}})
    script = textwrap.dedent(f"""
        import os, torch
        from frcnn.runs import checkpoint
        real_save = torch.save
        def slow_save(obj, f):
            real_save(obj, f)
            print("written", flush=True)
            import time; time.sleep(60)  # killed here, before the rename
        checkpoint.torch.save = slow_save
        checkpoint.save_checkpoint({str(target)!r}, {{"model": {{"w": torch.zeros(10**6)}}}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.equal(load_checkpoint(target)["model"]["w"], torch.ones(3))
