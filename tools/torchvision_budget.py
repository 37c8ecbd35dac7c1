"""torchvision's Faster R-CNN trained for a wall-clock budget, evaluated as this project evaluates.

The model is torchvision's documented recipe for a custom backbone ("Faster R-CNN with a
MobileNetV2 backbone" in its detection tutorial): MobileNetV2's ImageNet features (stride 32, 1280
channels, BatchNorm frozen as torchvision freezes it in its own detection backbones), one feature
map, anchors of 32-512 px at ratios 0.5 / 1 / 2, RoIAlign 7x7, torchvision's default input size
(shorter side 800, longer at most 1333) and its tutorial optimiser (SGD, lr 0.005, momentum 0.9,
weight decay 5e-4). So that the comparison is of the models and their defaults, not of the
schedules, it gets the shape of the schedule `--budget` gives this project: the step time measured
on its first steps (median of 10 after 2), then a linear warm-up over a tenth of the steps that fit
(this project: 100 steps, at most a tenth) and a cosine decay to zero at the last. Unlike
`--budget` it plans once: its steps (seconds each, compute-bound) hardly change speed.
Horizontal flips, as this project's training. AP is this project's VOC evaluation of its
detections (torchvision's labels are 1..K, like this project's).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from frcnn.data.datasets.base import DetectionDataset, ImageRecord
from frcnn.evaluation.evaluate import evaluate

LR, MOMENTUM, WEIGHT_DECAY = 0.005, 0.9, 5e-4
TIMED_STEPS, SKIP, WARMUP_SHARE, RESERVE_SHARE = 10, 2, 0.1, 0.03


def build_model(num_classes: int, imagenet_file: str | Path | None) -> FasterRCNN:
    """The tutorial's model; num_classes counts the background."""
    net = torchvision.models.mobilenet_v2(weights=None, norm_layer=FrozenBatchNorm2d)
    if imagenet_file:
        net.load_state_dict(torch.load(imagenet_file, map_location="cpu", weights_only=True))
    backbone = net.features
    backbone.out_channels = 1280
    anchors = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    return FasterRCNN(backbone, num_classes=num_classes, rpn_anchor_generator=anchors, box_roi_pool=pool)


def load_image(record: ImageRecord) -> torch.Tensor:
    image = cv2.cvtColor(cv2.imread(record.path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(image).permute(2, 0, 1).float().div(255)


def training_pair(record: ImageRecord, image: torch.Tensor, flip: bool) -> tuple[torch.Tensor, dict]:
    """One image and its target; boxes of difficult objects are left out, as this project's
    training leaves them out. torchvision boxes are pixel edges: 0-based inclusive x2 + 1."""
    keep = ~record.difficult
    boxes = torch.as_tensor(record.boxes[keep], dtype=torch.float32) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    if flip:
        image = image.flip(-1)
        boxes = torch.stack([image.shape[-1] - boxes[:, 2], boxes[:, 1], image.shape[-1] - boxes[:, 0], boxes[:, 3]], 1)
    return image, {"boxes": boxes, "labels": torch.as_tensor(record.labels[keep], dtype=torch.int64)}


def detect(model: FasterRCNN, records: Sequence[ImageRecord], images: Sequence[torch.Tensor]) -> list[dict]:
    """Detections as this project's evaluation takes them (0-based inclusive boxes)."""
    model.eval()
    found = []
    with torch.inference_mode():
        for image in images:
            out = model([image])[0]
            boxes = out["boxes"].numpy() - np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32)
            found.append({"boxes": boxes, "scores": out["scores"].numpy(), "labels": out["labels"].numpy()})
    model.train()
    return found


class CosineBudget:
    """The learning rate of `--budget`: linear warm-up over a tenth of the planned steps, then
    cosine to zero at the last; the plan is made from the median of the first steps."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.durations: list[float] = []
        self.planned: int | None = None

    def lr(self, iteration: int) -> float:
        if self.planned is None:
            return LR * 0.1
        warmup = int(WARMUP_SHARE * self.planned)
        if iteration < warmup:
            return LR * (0.1 + 0.9 * iteration / warmup)
        return LR * 0.5 * (1 + math.cos(math.pi * min(iteration / self.planned, 1.0)))

    def record(self, iteration: int, seconds: float, trained: float) -> None:
        """One step of `seconds`; `trained`: training seconds so far (evaluations left out)."""
        if iteration > SKIP:
            self.durations.append(seconds)
        if self.planned is None and len(self.durations) >= TIMED_STEPS:
            left = self.seconds * (1 - RESERVE_SHARE) - trained
            self.planned = iteration + max(int(left / statistics.median(self.durations)), 0)


def train_for_budget(
    train: Sequence[ImageRecord],
    test: DetectionDataset,
    seconds: float,
    imagenet_file: str | Path | None,
    seed: int = 1,
    evaluations: int = 10,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train for `seconds` of wall clock at batch 2 and return the AP curve: one {elapsed_s,
    iteration, value} after every `seconds / evaluations` of training and at the end. Its
    evaluations (at 800 px through a 1024-wide fc head, seconds an image) are left out of the
    clock; this project's (a few seconds in all) are counted in its budget."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(test.num_classes, imagenet_file)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    train_images = [load_image(r) for r in train]
    test_images = [load_image(r) for r in test.records]
    schedule, curve, iteration, trained = CosineBudget(seconds), [], 0, 0.0
    model.train()
    while trained < seconds and (schedule.planned is None or iteration < schedule.planned):
        step_started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr(iteration)
        batch = [training_pair(train[i], train_images[i], rng.random() < 0.5) for i in rng.choice(len(train), 2, False)]
        losses = model([image for image, _ in batch], [target for _, target in batch])
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        iteration += 1
        step = time.perf_counter() - step_started
        trained += step
        schedule.record(iteration, step, trained)
        last = trained >= seconds or iteration == schedule.planned
        if last or len(curve) < int(trained / (seconds / evaluations)):
            value = float(evaluate(test, detect(model, test.records, test_images), "voc").mean_ap)
            curve.append({"elapsed_s": round(trained, 1), "iteration": iteration, "value": value})
            log(f"torchvision seed {seed}: {curve[-1]}")
    return curve
