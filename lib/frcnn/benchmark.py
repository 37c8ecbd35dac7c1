"""Side-by-side speed and memory: this project's Faster R-CNN and torchvision's, built alike.

torchvision.models.detection.FasterRCNN is assembled to this project's specification: the same
backbone module and weights (same frozen layers), RPN head weights, anchor sizes and ratios, input
scale, RPN pre/post-NMS top-N (train 12000/2000, test 6000/300), 256 anchors and 128 RoIs per
image, RoIAlign 7x7 with 2 samples per bin, the same fc6/fc7 head and predictor weights, and the
same test thresholds. Both get the same images, already resized to the scale (torchvision's own
resize then has nothing to do), and the same SGD settings.

Timings are medians of steps taken alternately (ours, torchvision, ours, ...) after a warm-up, so
that both see the same machine load. Peak memory is CUDA's max allocated, or on CPU the growth of
the resident set's high-water mark (Linux VmHWM), each model in a process of its own.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .cli import build_config
from .data.datasets.factory import dataset_spec
from .data.loader import RoidbDataset, collate
from .engine.amp import Precision
from .engine.optim import build_optimizer, step_in_backward_if_usable
from .modeling import FasterRCNN, build_model

log = logging.getLogger(__name__)

NUM_CLASSES = 21  # a PASCAL VOC-sized head


@dataclass
class Settings:
    net: str = "vgg16"
    device: str = "cpu"
    batch_size: int = 1
    scale: int = 600
    amp: bool = False
    repeats: int = 5
    warmup: int = 2
    cfgs_dir: str = "cfgs"
    data_dir: str = "data"


def spec_overrides(s: Settings) -> list[str]:
    """The shared specification, as --set pairs for this project's config."""
    return [
        "POOLING_MODE",
        "align",
        "ROI_ALIGN_SAMPLING_RATIO",
        "2",
        "ROI_ALIGN_ALIGNED",
        "False",
        "POOLING_SIZE",
        "7",
        "ANCHOR_SCALES",
        "[8,16,32]",
        "ANCHOR_RATIOS",
        "[0.5,1,2]",
        "TRAIN.SCALES",
        f"[{s.scale}]",
        "TRAIN.MAX_SIZE",
        "1000",
        "TEST.SCALES",
        f"[{s.scale}]",
        "TEST.MAX_SIZE",
        "1000",
        "TRAIN.RPN_PRE_NMS_TOP_N",
        "12000",
        "TRAIN.RPN_POST_NMS_TOP_N",
        "2000",
        "TEST.RPN_PRE_NMS_TOP_N",
        "6000",
        "TEST.RPN_POST_NMS_TOP_N",
        "300",
        "TRAIN.RPN_BATCHSIZE",
        "256",
        "TRAIN.BATCH_SIZE",
        "128",
        "TRAIN.FG_FRACTION",
        "0.25",
        "TRAIN.BG_THRESH_LO",
        "0.0",
        "TEST.NMS",
        "0.3",
        "TEST.SCORE_THRESH",
        "0.05",
        "TEST.MAX_PER_IMAGE",
        "100",
        "RPN_CHANNELS",
        {"vgg16": "512", "mobilenet_v2": "96", "tiny": "160"}.get(
            s.net, "1024"
        ),  # torchvision's RPN conv keeps the width
    ]


def build_ours(s: Settings) -> FasterRCNN:
    cfg = build_config("shapes", s.net, Path(s.cfgs_dir), set_cfgs=spec_overrides(s), data_dir=s.data_dir)
    model, _ = build_model(cfg, s.net, NUM_CLASSES, use_default_weights=False)
    model.benchmark_cfg = cfg  # type: ignore[attr-defined]
    return model


class _Base(nn.Module):
    """The backbone as torchvision's FasterRCNN expects it: a module with out_channels."""

    def __init__(self, base: nn.Module, out_channels: int, channels_last: bool) -> None:
        super().__init__()
        self.body = base
        self.out_channels = out_channels
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)


def build_torchvision(ours: FasterRCNN, s: Settings) -> nn.Module:
    """torchvision's FasterRCNN with our model's weights, to the same specification."""
    from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign

    stride = ours.rpn.anchor_generator.stride
    sizes = tuple(float(stride * k) for k in (8, 16, 32))
    backbone = _Base(copy.deepcopy(ours.backbone.base), ours.backbone.out_channels, ours.channels_last)
    rpn_head = RPNHead(ours.backbone.out_channels, 9, conv_depth=1)  # its conv keeps the width: RPN_CHANNELS matches
    rpn_head.conv[0][0].load_state_dict(ours.rpn.head.conv.state_dict())
    rpn_head.cls_logits.load_state_dict(ours.rpn.head.objectness.state_dict())
    rpn_head.bbox_pred.load_state_dict(ours.rpn.head.deltas.state_dict())
    predictor = FastRCNNPredictor(ours.roi_heads.predictor.cls_score.in_features, NUM_CLASSES)
    predictor.load_state_dict(ours.roi_heads.predictor.state_dict())
    model = TorchvisionFasterRCNN(
        backbone,
        num_classes=None,
        min_size=s.scale,
        max_size=1000,
        image_mean=[m / 255 for m in ours.pixel_mean.flatten().tolist()],
        image_std=[v / 255 for v in ours.pixel_std.flatten().tolist()],
        rpn_anchor_generator=AnchorGenerator(sizes=(sizes,), aspect_ratios=((0.5, 1.0, 2.0),)),
        rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=12000,
        rpn_pre_nms_top_n_test=6000,
        rpn_post_nms_top_n_train=2000,
        rpn_post_nms_top_n_test=300,
        rpn_nms_thresh=0.7,
        rpn_fg_iou_thresh=0.7,
        rpn_bg_iou_thresh=0.3,
        rpn_batch_size_per_image=256,
        rpn_positive_fraction=0.5,
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
        box_head=copy.deepcopy(ours.roi_heads.box_head),
        box_predictor=predictor,
        box_score_thresh=0.05,
        box_nms_thresh=0.3,
        box_detections_per_img=100,
        box_fg_iou_thresh=0.5,
        box_bg_iou_thresh=0.5,
        box_batch_size_per_image=128,
        box_positive_fraction=0.25,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0),
    )
    for ours_p, tv_p in zip(ours.backbone.base.parameters(), model.backbone.body.parameters()):
        tv_p.requires_grad_(ours_p.requires_grad)  # the same frozen layers
    return model


def load_batches(s: Settings, count: int) -> list:
    """`count` batches of the built-in dataset's test images, resized to the scale."""
    test = dataset_spec("shapes", s.data_dir).test()
    data = RoidbDataset(test.records, [s.scale], 1000)
    return [collate([data[i * s.batch_size + j] for j in range(s.batch_size)]) for i in range(count)]


def torchvision_inputs(batch, device: torch.device) -> tuple[list[torch.Tensor], list[dict]]:
    """The same images as float [0, 1] tensors and targets with exclusive corners."""
    images, targets = [], []
    for image, (h, w), t in zip(batch.images, batch.image_sizes.tolist(), batch.targets):
        images.append(image[:, :h, :w].to(device).float() / 255)
        targets.append(
            {"boxes": (t["boxes"] + torch.tensor([0.0, 0.0, 1.0, 1.0])).to(device), "labels": t["labels"].to(device)}
        )
    return images, targets


class Runner:
    """One model's training step and inference, on fixed batches."""

    def __init__(self, name: str, model: nn.Module, batches: list, s: Settings) -> None:
        self.name = name
        self.device = torch.device(s.device)
        self.model = model.to(self.device)
        self.precision = Precision.for_device(self.device, s.amp)
        cfg = getattr(model, "benchmark_cfg", None)
        if name == "ours":
            self.optimizer = build_optimizer(model, cfg, "sgd", 0.001)
            # as the trainer does; kept here because the hooks hold it weakly
            self.step_in_backward = step_in_backward_if_usable(
                self.optimizer, cfg, self.precision.scaler is not None, distributed=False
            )
            self.inputs = [b.to(self.device) for b in batches]
        else:
            self.optimizer = torch.optim.SGD(
                [p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9, weight_decay=5e-4
            )
            self.inputs = [torchvision_inputs(b, self.device) for b in batches]
        self.count = 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _forward(self, training: bool) -> tuple[object, int]:
        """The model's output on the next batch, and the batch's number of images."""
        inputs = self.inputs[self.count % len(self.inputs)]
        self.count += 1
        with self.precision.autocast():
            if self.name == "ours":
                return self.model(
                    inputs.images, inputs.image_sizes, inputs.image_scales, inputs.targets if training else None
                ), len(inputs.images)
            images, targets = inputs
            return self.model(images, targets if training else None), len(images)

    def train_step(self) -> float:
        """Seconds for one forward, backward and optimiser step."""
        self.model.train()
        self._sync()
        start = time.perf_counter()
        losses, _ = self._forward(training=True)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(sum(losses.values()))
        self.precision.step(self.optimizer)
        self._sync()
        return time.perf_counter() - start

    @torch.no_grad()
    def inference(self) -> float:
        """Seconds per image."""
        self.model.eval()
        self._sync()
        start = time.perf_counter()
        _, count = self._forward(training=False)
        self._sync()
        return (time.perf_counter() - start) / count


def build_pair(s: Settings) -> tuple[Runner, Runner]:
    torch.manual_seed(0)
    ours = build_ours(s)
    tv = build_torchvision(ours, s)
    batches = load_batches(s, 4)
    return Runner("ours", ours, batches, s), Runner("torchvision", tv, batches, s)


def time_alternately(s: Settings) -> dict[str, dict[str, float]]:
    runners = build_pair(s)
    for r in runners:
        for _ in range(s.warmup):
            r.train_step()
            r.inference()
    train = {r.name: [] for r in runners}
    infer = {r.name: [] for r in runners}
    for _ in range(s.repeats):
        for r in runners:
            train[r.name].append(r.train_step())
        for r in runners:
            infer[r.name].append(r.inference())
    return {
        r.name: {
            "train_step": statistics.median(train[r.name]),
            "inference": statistics.median(infer[r.name]),
            "train_step_all": train[r.name],
            "inference_all": infer[r.name],
        }
        for r in runners
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> None:
    """Start the process's resident-memory high-water mark afresh from its current size (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_bytes() -> int:
    """The process's resident-memory high-water mark (VmHWM). Not getrusage's ru_maxrss: Linux
    carries that over exec, so a process started by a large parent reports the parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def peak_memory(s: Settings, which: str) -> float:
    """Peak memory growth (bytes) of `which` model over two training steps and an inference,
    from where it stands once built."""
    runners = dict((r.name, r) for r in build_pair(s))
    runner = runners[which]
    del runners
    if s.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        try:
            reset_peak_rss()  # building both models must not count
            base = _rss_bytes()
        except OSError:  # no Linux /proc, or clear_refs refused: run() says so
            return float("nan")
    for _ in range(2):
        runner.train_step()
    runner.inference()
    if s.device.startswith("cuda"):
        return float(torch.cuda.max_memory_allocated() - base)
    return float(peak_rss_bytes() - base)


def memory_in_subprocess(s: Settings, which: str) -> float:
    """CPU peak RSS is per process: measure each model in a fresh one."""
    args = [sys.executable, "-m", "frcnn.benchmark", json.dumps(s.__dict__), which]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run(s: Settings) -> dict:
    times = time_alternately(s)
    if s.device.startswith("cuda"):
        memory = {name: peak_memory(s, name) for name in ("ours", "torchvision")}
    else:
        memory = {name: memory_in_subprocess(s, name) for name in ("ours", "torchvision")}
        if any(math.isnan(m) for m in memory.values()):
            log.warning("CPU peak memory needs Linux's /proc/self/clear_refs and VmHWM; reported as nan")
    result: dict = {"settings": s.__dict__, "device": _device_name(s.device), "torch": torch.__version__}
    for name in ("ours", "torchvision"):
        t = times[name]
        result[name] = {
            "train_step": t["train_step"],
            "inference": t["inference"],
            "peak_mem": memory[name],
            "train_images_per_s": s.batch_size / t["train_step"],
            "inference_images_per_s": 1.0 / t["inference"],
            "train_step_all": t["train_step_all"],
            "inference_all": t["inference_all"],
        }
    result["ratio"] = {k: result["ours"][k] / result["torchvision"][k] for k in ("train_step", "inference", "peak_mem")}
    return result


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def format_table(result: dict) -> str:
    rows = [("", "ours", "torchvision", "ratio")]
    for key, label, fmt in (
        ("train_step", "train step (s)", "{:.3f}"),
        ("inference", "inference (s/image)", "{:.3f}"),
        ("peak_mem", "peak memory (MiB)", "{:.0f}"),
    ):
        scale = 1 / 2**20 if key == "peak_mem" else 1
        rows.append(
            (
                label,
                fmt.format(result["ours"][key] * scale),
                fmt.format(result["torchvision"][key] * scale),
                f"{result['ratio'][key]:.2f}",
            )
        )
    rows.append(
        (
            "train images/s",
            f"{result['ours']['train_images_per_s']:.2f}",
            f"{result['torchvision']['train_images_per_s']:.2f}",
            f"{result['ours']['train_images_per_s'] / result['torchvision']['train_images_per_s']:.2f}x",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    )


if __name__ == "__main__":  # the per-model memory measurement process
    print(peak_memory(Settings(**json.loads(sys.argv[1])), sys.argv[2]))
