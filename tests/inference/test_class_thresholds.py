"""Per-class thresholds from test_net.py --threshold_rule to the checkpoint, the ONNX metadata,
threshold="auto" and demo.py --thresh auto; test_net.py refusing, before it detects, an IoU its
metric cannot take."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import CFGS, SMALL_NET

from frcnn import Detector
from frcnn.cli import score_or_auto
from frcnn.config import build_config, to_plain
from frcnn.data.datasets.factory import dataset_spec
from frcnn.inference.evaluator import EvalOptions, evaluate_checkpoint
from frcnn.inference.torch_detector import detect_images
from frcnn.runs.checkpoint import load_checkpoint
from frcnn.training.build import TrainOptions, train


@pytest.fixture(scope="module")
def chosen(small_shapes_root, tmp_path_factory):
    """A one-epoch tiny checkpoint whose thresholds test_net.py's path chose (rule f1)."""
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=SMALL_NET)
    save_dir = tmp_path_factory.mktemp("thresholds")
    data_dir = str(small_shapes_root.parent)
    opts = TrainOptions(dataset="shapes", net="tiny", batch_size=4, epochs=1, save_dir=str(save_dir), data_dir=data_dir)
    path = train(opts, cfg)
    with torch.no_grad():  # one epoch scores little: spread the class scores so that every class has detections
        state = load_checkpoint(path)
        torch.manual_seed(0)
        state["model"]["roi_heads.predictor.cls_score.weight"].normal_(std=4.0)
        torch.save(state, path)
    options = EvalOptions(data_dir=data_dir, output_dir=str(save_dir / "out"), threshold_rule="f1")
    evaluation = evaluate_checkpoint(path, options)
    return path, evaluation, save_dir / "out"


def test_the_chosen_thresholds_are_written_into_the_checkpoint(chosen):
    path, _, out = chosen
    stored = load_checkpoint(path)["config"]["TEST"]["CLASS_THRESHOLDS"]
    assert len(stored) == 8 and stored[0] == 0.0 and all(0.0 < t <= 1.0 for t in stored[1:])
    text = next(out.rglob("thresholds.txt")).read_text()
    assert text.startswith("score thresholds per class (rule f1, on") and "circle" in text
    assert text.splitlines()[-1].startswith("one threshold for every class here: ")
    assert Detector.from_file(path).cfg.TEST.CLASS_THRESHOLDS == stored


def test_the_test_report_compares_them_with_one_threshold(chosen):
    import json

    _, _, out = chosen
    report = json.loads(next(p for p in out.rglob("ap.json") if "thresholds" not in p.parts).read_text())
    comparison = report["class_thresholds"]
    assert set(comparison) == {
        "per_class",
        "f1_at_class_thresholds",
        "mean_class_f1_at_class_thresholds",
        "single_threshold",
        "f1_at_single_threshold",
        "val_single_threshold",  # chosen beside the per-class thresholds, by the same run
        "f1_at_val_single_threshold",
        "mean_class_f1_at_val_single_threshold",
    }
    stored = load_checkpoint(chosen[0])["config"]["TEST"]["CLASS_THRESHOLDS"]
    assert [c["threshold"] for c in comparison["per_class"].values()] == stored[1:]
    assert 0.0 <= comparison["f1_at_class_thresholds"] <= 1.0 and 0.0 <= comparison["f1_at_single_threshold"] <= 1.0


def test_auto_keeps_each_class_above_its_own_threshold(chosen, small_shapes_root):
    path, _, _ = chosen
    detector = Detector.from_file(path)
    image = sorted((small_shapes_root / "JPEGImages").glob("test_*.jpg"))[0]
    everything = detector(image, threshold=0.0)
    thresholds = np.asarray(detector.cfg.TEST.CLASS_THRESHOLDS, np.float32)
    expected = everything.scores >= thresholds[everything.labels]
    auto = detector(image, threshold="auto")
    np.testing.assert_array_equal(auto.scores, everything.scores[expected])
    np.testing.assert_array_equal(auto.labels, everything.labels[expected])
    assert 0 < len(auto) < len(everything)


def test_auto_without_thresholds_says_how_to_choose_them(chosen, small_shapes_root):
    path, _, _ = chosen
    detector = Detector.from_file(path)
    detector.cfg.TEST.CLASS_THRESHOLDS = []
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="test_net.py --threshold_rule f1"):
        detector(image, threshold="auto")
    with pytest.raises(ValueError, match="a score or 'auto'"):
        detector(image, threshold="high")


def test_the_thresholds_travel_in_the_onnx_metadata(chosen, tmp_path, small_shapes_root):
    pytest.importorskip("onnxruntime")
    from frcnn.export.onnx import export_onnx
    from frcnn.inference.onnx_detector import OnnxDetector

    path, _, _ = chosen
    eager = Detector.from_file(path)
    meta = {"classes": list(eager.classes), "net": eager.net, "dataset": eager.dataset, "config": to_plain(eager.cfg)}
    export_onnx(eager.model, meta, tmp_path / "model.onnx", 18)
    onnx = OnnxDetector.from_file(tmp_path / "model.onnx")
    assert onnx.cfg.TEST.CLASS_THRESHOLDS == eager.cfg.TEST.CLASS_THRESHOLDS
    image = sorted((small_shapes_root / "JPEGImages").glob("test_*.jpg"))[0]
    assert onnx(image, threshold="auto").labels.tolist() == eager(image, threshold="auto").labels.tolist()


def test_demo_takes_auto_or_a_score(chosen, small_shapes_root, tmp_path, caplog):
    import argparse
    import shutil

    from frcnn.inference.demo import run_folder

    assert score_or_auto("auto") == "auto" and score_or_auto("0.25") == 0.25
    for bad in ("1.5", "high", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="between 0 and 1, or auto"):
            score_or_auto(bad)
    path, _, _ = chosen
    image = sorted((small_shapes_root / "JPEGImages").glob("test_*.jpg"))[0]
    shutil.copy(image, tmp_path / image.name)
    detector = Detector.from_file(path)
    with caplog.at_level(logging.INFO, logger="frcnn.demo"):
        drawn = run_folder(detector, tmp_path, "auto", 1)
    assert drawn == len(detector(image, threshold="auto")) > 0
    assert "score >= each class's threshold" in caplog.text


def test_detect_images_is_untouched_by_the_thresholds(chosen, small_shapes_root):
    path, _, _ = chosen
    detector = Detector.from_file(path)
    image = np.zeros((64, 64, 3), np.uint8)
    raw = detect_images(detector, [image])[0]
    assert len(detector(image, threshold=0.0)) == len(raw["scores"])


def test_a_threshold_of_one_switches_a_class_off_even_for_saturated_scores():
    from frcnn.inference.detections import detections_of

    class Runtime:
        classes = ("bg", "a", "b")

    out = {"boxes": np.zeros((3, 4), np.float32), "scores": np.array([1.0, 1.0, 0.6], np.float32)}
    out["labels"] = np.array([1, 2, 2])
    kept = detections_of(Runtime(), out, np.array([0.0, 1.0, 0.5], np.float32))
    assert kept.labels.tolist() == [2, 2]  # class a (threshold 1.0) is off although it scored 1.0
    assert len(detections_of(Runtime(), out, np.float32(0.9))) == 2  # a NumPy score is a score


def test_numpy_scores_are_thresholds_too(chosen):
    path, _, _ = chosen
    detector = Detector.from_file(path)
    image = np.zeros((64, 64, 3), np.uint8)
    assert len(detector(image, threshold=np.float32(0.0))) == len(detector(image, threshold=0.0))


def test_an_iou_the_metric_cannot_take_is_refused_before_detecting(chosen, small_shapes_root, monkeypatch):
    path, _, save_dir = chosen

    def detect(*args, **kwargs):
        raise AssertionError("detected before the IoU was checked")

    monkeypatch.setattr("frcnn.inference.evaluator.detect_sharded", detect)
    options = EvalOptions(data_dir=str(small_shapes_root.parent), output_dir=str(save_dir), metric="coco", iou=0.4)
    with pytest.raises(ValueError, match="coco averages over .50:.95"):
        evaluate_checkpoint(path, options)
