"""Inference speed on the CPU: PyTorch eager vs ONNX Runtime vs torchvision, per net, through the
Python API (Detector and its ONNX counterpart), and the ONNX graph quantised to int8
(export/quantize.py, calibrated on the same images), side by side in one run.

    python benchmark.py --onnx --nets tiny mobilenet_v2 vgg16 res50 --scale 600 --threads 2

Each net is built with random weights (speed does not depend on them) at TEST.SCALES [scale],
exported to ONNX in a temporary folder, and then the three runners detect the built-in dataset's
test images in turn (eager, ONNX Runtime, torchvision, eager, ...), each image from its RGB array
(the runner's own resize included), so that they share the machine's load. Reported: median
seconds per image and images/s, and ONNX Runtime's throughput as a multiple of eager's.
torchvision's model: for the original's nets, torchvision's FasterRCNN built to the same
specification with the same weights (bench_models); for FPN nets, torchvision's own detector of
that architecture; none for res101_fpn, which torchvision does not build.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.loader import read_image
from frcnn.export.onnx import detector_metadata, export_onnx
from frcnn.export.quantize import calibration_inputs, quantize_int8
from frcnn.inference.onnx_detector import OnnxDetector
from frcnn.inference.torch_detector import Detector
from frcnn.modeling import build_model

from .bench_models import CFGS_DIR, NUM_CLASSES, Settings, build_torchvision, ours_config

TORCHVISION_FPN = {
    "res50_fpn": "fasterrcnn_resnet50_fpn",
    "res50_fpn_v2": "fasterrcnn_resnet50_fpn_v2",
    "mobilenet_v3_fpn": "fasterrcnn_mobilenet_v3_large_fpn",
}


def build_eager(net: str, s: Settings) -> Detector:
    if "_fpn" in net:  # a pyramid: its own cfgs file, torchvision's convention
        sizes = ["TEST.SCALES", f"[{s.scale}]", "TEST.MAX_SIZE", "1000"]
        cfg = build_config(net, CFGS_DIR, dataset_spec("shapes", s.data_dir).profile, set_cfgs=sizes)
    else:
        cfg = ours_config(Settings(net=net, scale=s.scale, data_dir=s.data_dir))
    torch.manual_seed(0)
    model, _ = build_model(cfg, net, NUM_CLASSES, use_default_weights=False)
    classes = ("__background__", *(f"class{i}" for i in range(1, NUM_CLASSES)))
    return Detector(model.eval(), cfg, classes, net, None, torch.device("cpu"))


def build_torchvision_runner(net: str, eager: Detector, s: Settings) -> Callable | None:
    import torchvision.models.detection as detection

    if net in TORCHVISION_FPN:
        builder = getattr(detection, TORCHVISION_FPN[net])
        model = builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=s.scale, max_size=1000)
    elif "_fpn" in net:
        return None
    else:
        model = build_torchvision(eager.model, Settings(net=net, scale=s.scale))
    model.eval()

    @torch.no_grad()
    def run(image: np.ndarray) -> object:
        return model([torch.from_numpy(image).permute(2, 0, 1).float() / 255])

    return run


def time_runners(runners: dict[str, Callable], images: list[np.ndarray], repeats: int, warmup: int) -> dict:
    """Median seconds per image of each runner, the runners taking turns image by image."""
    for run in runners.values():
        for image in images[:warmup]:
            run(image)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(repeats):
        image = images[i % len(images)]
        for name, run in runners.items():
            tic = time.perf_counter()
            run(image)
            times[name].append(time.perf_counter() - tic)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_net(net: str, s: Settings, images: list[np.ndarray], threads: int) -> dict:
    eager = build_eager(net, s)
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(eager.model, detector_metadata(eager), Path(folder) / f"{net}.onnx")
        ort = OnnxDetector.from_file(path, threads=threads)
        # calibrated on the benchmark's own images (speed does not depend on the scales found)
        quantize_int8(path, Path(folder) / "int8.onnx", calibration_inputs(images, eager.cfg, len(images)))
        int8 = OnnxDetector.from_file(Path(folder) / "int8.onnx", threads=threads)
    runners = {"eager": eager, "onnxruntime": ort, "int8": int8}
    torchvision = build_torchvision_runner(net, eager, s)
    if torchvision is not None:
        runners["torchvision"] = torchvision
    with torch.no_grad():
        seconds = time_runners(runners, images, s.repeats, s.warmup)
    ratios = {
        "ort_vs_eager": seconds["eager"] / seconds["onnxruntime"],
        "int8_vs_ort": seconds["onnxruntime"] / seconds["int8"],
    }
    return {"seconds": seconds, **ratios}


def run(nets: list[str], s: Settings, threads: int) -> dict:
    torch.set_num_threads(threads)
    test = dataset_spec("shapes", s.data_dir).test()
    images = [read_image(str(r.path)) for r in test.records[:8]]
    return {net: bench_net(net, s, images, threads) for net in nets}


def format_table(results: dict) -> str:
    rows = [("net", "eager img/s", "onnxruntime img/s", "int8 img/s", "torchvision img/s", "ort / eager", "int8 / ort")]
    for net, r in results.items():
        rate = {name: f"{1 / t:.2f}" for name, t in r["seconds"].items()}
        ratios = f"{r['ort_vs_eager']:.2f}x", f"{r['int8_vs_ort']:.2f}x"
        rows.append((net, rate["eager"], rate["onnxruntime"], rate["int8"], rate.get("torchvision", "-"), *ratios))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)
