"""What a training run leaves to watch (metrics.jsonl, curves.png, TensorBoard events), evaluation
during training with the best checkpoint kept, and resuming a session by its own number."""

import json
from pathlib import Path

import pytest
from conftest import CFGS, SMALL_NET

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.inference.evaluator import evaluation_split
from frcnn.inference.torch_detector import load_detector
from frcnn.runs.checkpoint import load_checkpoint
from frcnn.training.build import TrainOptions, train

SMALL = SMALL_NET
TERMS = ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box", "loss")


def run(data_dir: Path, save_dir: Path, **kw):
    opts = dict(dataset="shapes", net="tiny", batch_size=4, epochs=2, save_dir=str(save_dir), data_dir=str(data_dir))
    opts.update(kw)
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=SMALL)
    return train(TrainOptions(lr=0.001, optimizer="adam", **opts), cfg)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def watched(small_shapes_root, tmp_path_factory):
    """Two epochs with TensorBoard, a record every 4 steps and an evaluation after each epoch."""
    save_dir = tmp_path_factory.mktemp("watched")
    last = run(small_shapes_root.parent, save_dir, use_tfb=True, eval_interval=1, disp_interval=4)
    return last.parent


def test_metrics_file_has_every_logged_step_and_evaluation(watched):
    lines = records(watched / "metrics.jsonl")
    train_lines = [r for r in lines if r["kind"] == "train"]
    # 12 steps an epoch: records at steps 4, 8 and 12 of both epochs
    assert [(r["epoch"], r["step"], r["iteration"]) for r in train_lines] == [
        (e, s, 12 * (e - 1) + s) for e in (1, 2) for s in (4, 8, 12)
    ]
    for r in train_lines:
        assert set(TERMS) <= set(r) and 0 < r["lr"] <= 0.001 and r["images_per_s"] > 0
        assert r["loss"] == pytest.approx(sum(r[t] for t in TERMS[:-1]), rel=1e-5)
    lrs = [r["lr"] for r in train_lines]
    assert lrs == sorted(lrs) and lrs[0] < lrs[-1]  # cfgs/tiny.yml's warm-up over 100 iterations
    evals = [r for r in lines if r["kind"] == "eval"]
    assert [(r["epoch"], r["iteration"], r["metric"], r["split"]) for r in evals] == [
        (1, 12, "voc", "shapes_test"),
        (2, 24, "voc", "shapes_test"),
    ]
    assert all(0 <= r["value"] <= 1 and r["seconds"] > 0 for r in evals)
    assert (watched / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_events_hold_the_same_figures(watched):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(watched / "tensorboard" / "session_1"))
    events.Reload()
    lines = records(watched / "metrics.jsonl")
    for term in (*TERMS, "lr", "images_per_s"):
        scalars = events.Scalars(f"train/{term}")
        expected = [(r["iteration"], r[term]) for r in lines if r["kind"] == "train"]
        assert [(s.step, pytest.approx(s.value, rel=1e-5)) for s in scalars] == expected, term
    assert [(s.step, pytest.approx(s.value)) for s in events.Scalars("eval/voc")] == [
        (r["iteration"], r["value"]) for r in lines if r["kind"] == "eval"
    ]


def test_best_checkpoint_is_the_best_evaluation_and_loads(watched):
    evals = [r for r in records(watched / "metrics.jsonl") if r["kind"] == "eval"]
    best = load_checkpoint(watched / "faster_rcnn_1_best.pth")
    top = max(evals, key=lambda r: r["value"])
    assert best["best"]["value"] == top["value"] and best["best"]["epoch"] == best["epoch"] == top["epoch"]
    assert load_detector(watched / "faster_rcnn_1_best.pth").classes == tuple(best["classes"])


def test_evaluation_during_training_prefers_a_val_split(tmp_path, build):
    samples = build.shapes_samples(4)
    for split in ("trainval", "val", "test"):
        build.write_voc(tmp_path / "voc", split, samples, prefix=split)
    (tmp_path / "d.yaml").write_text("format: voc\nroot: voc\ntrain: trainval\ntest: test\nval: val\n")
    dataset, is_val = evaluation_split(str(tmp_path / "d.yaml"), tmp_path, "")
    assert is_val and dataset.name == "d_val" and len(dataset.records) == 4
    (tmp_path / "e.yaml").write_text("format: voc\nroot: voc\ntrain: trainval\ntest: test\n")
    dataset, is_val = evaluation_split(str(tmp_path / "e.yaml"), tmp_path, "")
    assert not is_val and dataset.name == "e_test"


def test_resumed_session_by_its_own_number_keeps_one_record_per_step(small_shapes_root, tmp_path):
    data_dir = small_shapes_root.parent
    run(data_dir, tmp_path, session=7, epochs=1, disp_interval=1, checkpoint_interval=5)
    folder = tmp_path / "tiny" / "shapes"
    assert (folder / "7_metrics.jsonl").is_file() and not (folder / "metrics.jsonl").exists()
    (folder / "faster_rcnn_7_1_10.pth").unlink()
    (folder / "faster_rcnn_7_1_12.pth").unlink()  # as if killed after step 12 was logged, before its checkpoint
    assert len(records(folder / "7_metrics.jsonl")) == 12
    last = run(data_dir, tmp_path, session=7, epochs=1, disp_interval=1, resume=True)  # no checksession
    assert last.name == "faster_rcnn_7_1_12.pth"
    assert [r["iteration"] for r in records(folder / "7_metrics.jsonl")] == list(range(1, 13))
