"""ONNX export (export.py): ONNX Runtime's detections equal PyTorch's for every exportable net, on
images of several sizes and aspect ratios, through the same Python API."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import CFGS, ROOT, shapes_samples, write_image
from cv2 import INTER_LINEAR, resize

from frcnn.config import build_config, to_plain
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.loader import collate
from frcnn.inference.onnx_detector import OnnxDetector
from frcnn.inference.torch_detector import Detector
from frcnn.modeling import build_model
from frcnn.runs.checkpoint import save_checkpoint
from frcnn.structures.batch import Sample

# Small test scales keep the graphs quick to run; pre-NMS top-N 300 lies between the anchor
# counts of the small and the large images, so both sides of min(top-N, anchors) are exercised.
SETTINGS = ["ANCHOR_SCALES", "[2,4,8]", "TEST.SCALES", "[96]", "TEST.MAX_SIZE", "224", "TEST.RPN_PRE_NMS_TOP_N", "300"]
NET_SETTINGS = {
    "tiny": ["TINY.CHANNELS", "[8,16,16,32]", "TINY.HEAD_DIM", "32", "RPN_CHANNELS", "32"],
    # trainable BatchNorm, whose statistics random_checkpoint sets: frozen unit statistics under
    # random weights make this net's features vanish (1e-9) and every RoI score the same
    "mobilenet_v3_fpn": ["BACKBONE_FROM_SCRATCH", "True"],
}
SIZES = [(97, 131), (150, 64), (60, 230), (40, 40)]  # original (h, w): landscape, portrait, wide, small


def sample_images():
    images = [image for image, _ in shapes_samples(len(SIZES), seed=7)]
    return [resize(image, (w, h), interpolation=INTER_LINEAR) for image, (h, w) in zip(images, SIZES)]


def random_checkpoint(net: str, folder, settings: list[str] = ()) -> object:
    """A checkpoint of `net` with random weights whose scores spread over (0, 1) (see spread_scores)."""
    cfg = build_config(
        net, CFGS, dataset_spec("shapes").profile, set_cfgs=[*SETTINGS, *NET_SETTINGS.get(net, []), *settings]
    )
    torch.manual_seed(0)
    model, _ = build_model(cfg, net, 4, use_default_weights=False)
    images = [torch.from_numpy(image).permute(2, 0, 1) for image in sample_images()]
    batch = collate([Sample.unlabelled(image, 1.0, i) for i, image in enumerate(images)])
    with torch.no_grad():
        spread_scores(model, batch)
    state = {"model": model.state_dict(), "config": to_plain(cfg), "net": net, "dataset": "shapes"}
    return save_checkpoint(folder / f"{net}.pth", {**state, "classes": ["__background__", "a", "b", "c"]})


def spread_scores(model, batch) -> None:
    """Random weights give near-equal or saturated scores, and ties are ordered arbitrarily (by
    each runtime differently). So: BatchNorm statistics of the batch (from-scratch nets), then the
    RPN's and the classifier's output layers scaled to their inputs, each in turn."""
    for layer in model.backbone.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.momentum = None
    model.backbone.train()(model.normalize(batch.images, batch.image_sizes))
    head, predictor = model.rpn.head, model.roi_heads.predictor
    for layers in (
        ((head.objectness, 2.0), (head.deltas, 0.1)),
        ((predictor.cls_score, 2.0), (predictor.bbox_pred, 0.3)),
    ):
        inputs = []
        hook = layers[0][0].register_forward_hook(lambda module, args, output, found=inputs: found.append(args[0]))
        model.eval()(batch.images[:1], batch.image_sizes[:1], batch.image_scales[:1])
        hook.remove()
        rms = inputs[0].pow(2).mean().sqrt().item()
        for layer, spread in layers:
            torch.nn.init.normal_(layer.weight, std=spread / (layer.weight[0].numel() ** 0.5 * rms))


def export(checkpoint, out, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "export.py"), "--load_name", str(checkpoint), "--out", str(out), *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)


def assert_same_detections(torch_det, onnx_det, images) -> None:
    """Same count, labels and order; boxes within 0.5 px, scores within 1e-3."""
    for image, expected, found in zip(images, torch_det(images), onnx_det(images)):
        assert len(found) == len(expected) > 0, image.shape
        np.testing.assert_array_equal(found.labels, expected.labels)
        np.testing.assert_allclose(found.boxes, expected.boxes, atol=0.5)
        np.testing.assert_allclose(found.scores, expected.scores, atol=1e-3)


def exported(net: str, folder, settings: list[str] = ()) -> tuple:
    checkpoint = random_checkpoint(net, folder, settings)
    done = export(checkpoint, folder / "model.onnx")
    assert done.returncode == 0, done.stderr[-3000:]
    return checkpoint, folder / "model.onnx"


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    return exported("tiny", tmp_path_factory.mktemp("onnx"))


SLOW = pytest.mark.slow  # 1-2 minutes each on a 2-core CPU: ./make.sh test -m slow tests/export


@pytest.mark.parametrize(
    "net, settings",
    [
        ("tiny", ["POOLING_MODE", "pool"]),
        ("tiny", ["POOLING_MODE", "crop"]),
        ("mobilenet_v3_fpn", []),  # torchvision's convention, a pyramid
        pytest.param("mobilenet_v2", [], marks=SLOW),
        pytest.param("vgg16", [], marks=SLOW),
        pytest.param("res50", [], marks=SLOW),
        pytest.param("res101", [], marks=SLOW),
        pytest.param("res50_fpn", [], marks=SLOW),
        pytest.param("res50_fpn_v2", [], marks=SLOW),
        pytest.param("res101_fpn", [], marks=SLOW),
        pytest.param("mobilenet_v2_fpn", [], marks=SLOW),
    ],
)
def test_onnx_runtime_detections_equal_pytorch(net, settings, tmp_path):
    checkpoint, onnx_file = exported(net, tmp_path, settings)
    assert_same_detections(Detector.from_file(checkpoint), Detector.from_file(onnx_file), sample_images())


def test_the_tiny_net_exported_detects_as_in_pytorch_through_the_api_and_the_demo(tiny_export, tmp_path):
    checkpoint, onnx_file = tiny_export
    onnx_det = Detector.from_file(onnx_file)
    assert isinstance(onnx_det, OnnxDetector) and onnx_det.classes == ("__background__", "a", "b", "c")
    assert_same_detections(Detector.from_file(checkpoint), onnx_det, sample_images())
    found = {}
    for name, model in (("pth", checkpoint), ("onnx", onnx_file)):
        folder = tmp_path / name
        write_image(folder / "a.jpg", sample_images()[0])
        command = [sys.executable, str(ROOT / "demo.py"), "--load_name", str(model), "--image_dir", str(folder)]
        subprocess.run(command + ["--thresh", "0.2"], cwd=ROOT, check=True, capture_output=True, timeout=300)
        found[name] = json.loads((folder / "a_det.json").read_text())
    assert len(found["onnx"]) == len(found["pth"]) > 0
    for a, b in zip(found["onnx"], found["pth"]):
        assert a["label"] == b["label"] and abs(a["score"] - b["score"]) <= 1e-3
        np.testing.assert_allclose(a["box"], b["box"], atol=0.5)


def test_settings_that_onnx_cannot_take_are_refused_clearly(tiny_export, tmp_path):
    checkpoint, onnx_file = tiny_export
    with pytest.raises(ValueError, match="settings are fixed"):
        Detector.from_file(onnx_file, overrides=["TEST.NMS", "0.5"])
    done = export(checkpoint, tmp_path / "old.onnx", "--opset", "16")
    assert done.returncode != 0 and "opset 17 or newer" in done.stderr
    deform = random_checkpoint("tiny", tmp_path, ["POOLING_MODE", "deform"])
    done = export(deform, tmp_path / "deform.onnx")
    assert done.returncode != 0 and "POOLING_MODE deform cannot be exported" in done.stderr
    assert not (tmp_path / "deform.onnx").exists()
