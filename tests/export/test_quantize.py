"""Static int8 quantisation (export.py --quantize int8, export/quantize.py): which nodes, the
calibration inputs, and the int8 graph's detections against the fp32 graph's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from easydict import EasyDict
from test_onnx import export, random_checkpoint, sample_images

from frcnn.data.loader import ImageReadError
from frcnn.export.quantize import (
    LazyImages,
    calibration_images,
    calibration_inputs,
    int8_nodes,
    spatial_means_as_pooling,
    tile_quotas,
)
from frcnn.inference.onnx_detector import OnnxDetector

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def graph_of(nodes):
    from onnx import helper

    made = [helper.make_node(op, inputs, [name], name=name) for name, op, inputs in nodes]
    return helper.make_graph(made, "g", [], [])


def test_the_feature_extractor_is_quantised_and_the_box_arithmetic_is_not():
    graph = graph_of(
        [
            ("conv1", "Conv", ["image", "w1"]),
            ("relu6", "Clip", ["conv1", "lo", "hi"]),  # after a convolution: int8
            ("conv2", "Conv", ["relu6", "w2"]),
            ("residual", "Add", ["conv2", "relu6"]),  # joins two quantised outputs: int8
            ("head", "Gemm", ["residual", "w3"]),
            ("deltas", "Reshape", ["head", "shape"]),
            ("decode", "Add", ["deltas", "anchors"]),  # box decoding: float
            ("clip_boxes", "Clip", ["decode", "zero", "width"]),  # clipping to the image: float
            ("anchors_plus", "Add", ["conv2", "anchors"]),  # one input not quantised: float
        ]
    )
    assert int8_nodes(graph) == ["conv1", "conv2", "head", "relu6", "residual"]


def test_the_layers_making_the_predictions_stay_float():
    graph = graph_of(
        [
            ("conv1", "Conv", ["image", "w1"]),
            ("rpn_conv", "Conv", ["conv1", "model.rpn.head.conv.weight"]),
            ("objectness", "Conv", ["rpn_conv", "model.rpn.head.objectness.weight"]),
            ("rpn_deltas", "Conv", ["rpn_conv", "model.rpn.head.deltas.weight"]),
            ("cls_score", "Gemm", ["conv1", "model.roi_heads.predictor.cls_score.weight"]),
            ("bbox_pred", "Gemm", ["conv1", "model.roi_heads.predictor.bbox_pred.weight"]),
        ]
    )
    assert int8_nodes(graph) == ["conv1", "rpn_conv"]


def test_hard_swish_and_squeeze_excitation_products_are_quantised_around_a_float_gate():
    """MobileNetV3 exports x * hardsigmoid(x) and x * hardsigmoid(conv(pool(x))): ONNX Runtime has
    no int8 HardSigmoid, so the gate stays float and the product joins int8 (QLinearMul)."""
    graph = graph_of(
        [
            ("conv1", "Conv", ["image", "w1"]),
            ("gate1", "HardSigmoid", ["conv1"]),
            ("hswish", "Mul", ["conv1", "gate1"]),  # int8: one chosen input, one gate of a chosen node
            ("pool", "ReduceMean", ["hswish"]),
            ("squeeze", "Conv", ["pool", "w2"]),
            ("gate2", "HardSigmoid", ["squeeze"]),
            ("excite", "Mul", ["hswish", "gate2"]),  # int8
            ("scale", "Mul", ["excite", "six"]),  # a constant input: float
            ("gated_gates", "Mul", ["gate1", "gate2"]),  # no quantised input at all: float
        ]
    )
    assert int8_nodes(graph) == ["conv1", "excite", "hswish", "squeeze"]


def means_model(opset):
    """x (1, 3, 5, 6) -> its spatial mean (the rewritten kind) and its channel mean (left alone)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 6])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("spatial", "channels")]
    if opset >= 18:  # the axes are an input
        axes = [helper.make_tensor(n, TensorProto.INT64, [len(v)], v) for n, v in (("hw", [-2, -1]), ("c", [1]))]
        nodes = [
            helper.make_node("ReduceMean", ["x", a], [o], keepdims=1) for a, o in (("hw", "spatial"), ("c", "channels"))
        ]
    else:
        axes = []
        nodes = [
            helper.make_node("ReduceMean", ["x"], [o], axes=v, keepdims=1)
            for v, o in (([2, 3], "spatial"), ([1], "channels"))
        ]
    graph = helper.make_graph(nodes, "means", [x], outs, initializer=axes)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model)


@pytest.mark.parametrize("opset", [17, 18])
def test_a_spatial_mean_becomes_global_pooling_with_the_same_values(opset):
    import onnxruntime

    model = means_model(opset)
    x = np.random.default_rng(0).normal(size=(1, 3, 5, 6)).astype(np.float32)
    before = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    assert spatial_means_as_pooling(model) == 1
    assert [n.op_type for n in model.graph.node] == ["GlobalAveragePool", "ReduceMean"]
    after = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    np.testing.assert_allclose(after[0], before[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0][0, :, 0, 0], x[0].mean(axis=(1, 2)), rtol=1e-5)


def test_global_pooling_after_a_quantised_node_is_quantised():
    graph = graph_of(
        [("conv1", "Conv", ["image", "w1"]), ("pool", "GlobalAveragePool", ["conv1"]), ("fc", "Conv", ["pool", "w2"])]
    )
    assert int8_nodes(graph) == ["conv1", "fc", "pool"]
    assert int8_nodes(graph_of([("pool", "GlobalAveragePool", ["image"])])) == []  # a float input: float


def test_calibration_inputs_are_the_model_inputs_of_the_tiles():
    cfg = EasyDict(TEST={"SCALES": [64], "MAX_SIZE": 200}, CONVENTION="original", TILES={"SIZE": 100, "OVERLAP": 0.2})
    images = [np.zeros((150, 250, 3), np.uint8), np.zeros((80, 90, 3), np.uint8)]
    inputs = list(calibration_inputs(images, cfg, count=10))
    # 150 x 250 in tiles of 100 overlapping by 20: 2 rows x 3 columns; then the small image whole
    assert len(inputs) == 7
    assert inputs[0]["image"].shape == (1, 3, 64, 64) and inputs[-1]["image"].shape == (1, 3, 64, 72)
    assert len(list(calibration_inputs(images, cfg, count=4))) == 4
    # an even share of each image's tiles: 2 of the first image's 6 (the first and the last)
    spread = list(calibration_inputs(images, cfg, count=10, per_image=[2, 2]))
    assert len(spread) == 3 and spread[1]["image"].shape == (1, 3, 64, 64)
    cfg.TILES.SIZE = 0
    assert [i["image"].shape for i in calibration_inputs(images, cfg, count=10)] == [(1, 3, 64, 107), (1, 3, 64, 72)]


@pytest.mark.parametrize(
    ("available", "count", "quotas"),
    [
        ([12, 1, 1], 32, [12, 1, 1]),  # fewer windows than asked: all of them (an even share gave 11 + 1 + 1)
        ([40, 1, 1], 32, [30, 1, 1]),  # the small scenes' unused shares go to the large one
        ([40, 30, 1], 32, [16, 15, 1]),
        ([5, 5, 5], 4, [2, 1, 1]),  # fewer inputs than images: one each, in order, until none is left
        ([0, 6], 3, [0, 3]),
        ([], 8, []),
    ],
)
def test_calibration_inputs_are_shared_among_the_images_as_evenly_as_their_tiles_allow(available, count, quotas):
    assert tile_quotas(available, count) == quotas
    assert sum(quotas) == min(count, sum(available))


def test_each_image_gives_its_own_quota_of_tiles():
    cfg = EasyDict(TEST={"SCALES": [64], "MAX_SIZE": 200}, CONVENTION="original", TILES={"SIZE": 100, "OVERLAP": 0.2})
    images = [np.zeros((150, 250, 3), np.uint8), np.zeros((80, 90, 3), np.uint8)]  # 6 tiles, then 1 whole
    inputs = list(calibration_inputs(images, cfg, count=6, per_image=tile_quotas([6, 1], 6)))
    assert [i["image"].shape[3] for i in inputs] == [64] * 5 + [72]  # 5 tiles of the first, the second whole


def test_lazy_images_know_their_sizes_from_the_headers_without_decoding(tmp_path, monkeypatch):
    import cv2

    import frcnn.export.quantize as quantize

    for name, shape in (("a.png", (150, 250, 3)), ("b.jpg", (80, 90, 3))):
        cv2.imwrite(str(tmp_path / name), np.zeros(shape, np.uint8))
    images = LazyImages([tmp_path / "a.png", tmp_path / "b.jpg"])
    assert [image.shape[:2] for image in images] == [(150, 250), (80, 90)]
    monkeypatch.setattr(quantize, "read_image", lambda path: pytest.fail(f"decoded {path}"))
    assert images.shapes() == [(150, 250), (80, 90)]
    monkeypatch.undo()
    (tmp_path / "c.png").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="cannot read image"):
        LazyImages([tmp_path / "c.png"]).shapes()


def test_a_bad_calibration_source_says_what_is_wanted(tmp_path):
    with pytest.raises(ValueError, match="a folder of images or a split"):
        next(calibration_images(str(tmp_path / "nowhere"), "shapes", tmp_path, 4))
    with pytest.raises(ValueError, match="name the dataset with --dataset"):
        next(calibration_images("train", None, tmp_path, 4))


@pytest.fixture(scope="module")
def quantised(tmp_path_factory):
    """The tests' tiny net (random weights, scores spread) exported in fp32 and in int8, calibrated
    on a folder of sample images."""
    folder = tmp_path_factory.mktemp("int8")
    checkpoint = random_checkpoint("tiny", folder)
    import cv2

    (folder / "calibration").mkdir()
    for i, image in enumerate(sample_images()):
        cv2.imwrite(str(folder / "calibration" / f"{i}.png"), image[:, :, ::-1])
    fp32 = export(checkpoint, folder / "fp32.onnx")
    assert fp32.returncode == 0, fp32.stderr[-2000:]
    extra = ("--quantize", "int8", "--calibration", str(folder / "calibration"), "--calibration_images", "8")
    int8 = export(checkpoint, folder / "int8.onnx", *extra)
    assert int8.returncode == 0, int8.stderr[-2000:]
    return folder, int8.stderr + int8.stdout


def test_the_int8_file_says_how_it_was_made_and_is_smaller(quantised):
    folder, log = quantised
    props = {p.key: p.value for p in onnx.load(str(folder / "int8.onnx")).metadata_props}
    meta = json.loads(props["frcnn"])
    assert meta["quantization"]["images"] == 4 and meta["quantization"]["nodes"] > 0  # 4 images given
    assert "int8: " in log and "MB ->" in log and "Please consider" not in log
    assert (folder / "int8.onnx").stat().st_size < (folder / "fp32.onnx").stat().st_size
    ops = {node.op_type for node in onnx.load(str(folder / "int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "NonMaxSuppression"} <= ops


def test_int8_detections_stay_close_to_fp32(quantised):
    """Tolerances from measurement on these images (the tiny random net, scores spread; onnxruntime
    1.32 on a 2-core Xeon): of the 169 fp32 detections scoring 0.3 or more, 83% (79-88% per image)
    had an int8 detection of the same class at IoU >= 0.7 (median IoU 0.98), and the counts
    differed by at most 1 per image. Asserted: 75%, and counts within a third."""
    from torchvision.ops import box_iou

    folder, _ = quantised
    fp32, int8 = (OnnxDetector.from_file(folder / f"{name}.onnx") for name in ("fp32", "int8"))
    matched = total = 0
    for image in sample_images():
        a, b = fp32(image, threshold=0.3), int8(image, threshold=0.3)
        assert abs(len(a) - len(b)) <= max(2, len(a) // 3)
        if len(a) and len(b):
            iou = box_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes))
            same = torch.from_numpy(a.labels[:, None] == b.labels[None, :])
            matched += int(((iou * same).max(1).values >= 0.7).sum())
        total += len(a)
    assert total > 0 and matched >= 0.75 * total
