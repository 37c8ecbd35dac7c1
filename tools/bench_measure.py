"""Timing and peak memory of the two models of bench_models, measured alike.

Timings are medians of steps taken alternately (ours, torchvision, ours, ...) after a warm-up, so
that both see the same machine load. Peak memory is CUDA's max allocated, or on CPU the growth of
the resident set's high-water mark (Linux VmHWM), each model in a fresh process of its own
(multiprocessing's spawn: a new interpreter, so nothing of this process's size is counted).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from easydict import EasyDict
from torch import nn

from frcnn.structures.batch import Batch
from frcnn.training.amp import Precision
from frcnn.training.optim import build_optimizer, step_in_backward_if_usable

from .bench_models import Settings, build_ours, build_torchvision, load_batches, torchvision_inputs

MODELS = ("ours", "torchvision")


class Runner:
    """One model's training step and inference on fixed batches; subclasses say how to call it."""

    name = ""

    def __init__(self, model: nn.Module, s: Settings) -> None:
        self.device = torch.device(s.device)
        self.model = model.to(self.device)
        self.precision = Precision.for_device(self.device, s.amp)
        self.count = 0

    def forward(self, training: bool) -> tuple[object, int]:
        """The model's output on the next batch, and the batch's number of images."""
        raise NotImplementedError

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def train_step(self) -> float:
        """Seconds for one forward, backward and optimiser step."""
        self.model.train()
        self._sync()
        start = time.perf_counter()
        with self.precision.autocast():
            losses, _ = self.forward(training=True)
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
        with self.precision.autocast():
            _, count = self.forward(training=False)
        self._sync()
        return (time.perf_counter() - start) / count


class OursRunner(Runner):
    name = "ours"

    def __init__(self, model: nn.Module, cfg: EasyDict, batches: list[Batch], s: Settings) -> None:
        super().__init__(model, s)
        self.optimizer = build_optimizer(model, cfg, "sgd", 0.001)
        # as the trainer does; kept here because the hooks hold it weakly
        scaling = self.precision.scaler is not None
        self.step_in_backward = step_in_backward_if_usable(self.optimizer, cfg, scaling, distributed=False)
        self.inputs = [b.to(self.device) for b in batches]

    def forward(self, training: bool) -> tuple[object, int]:
        batch = self.inputs[self.count % len(self.inputs)]
        self.count += 1
        targets = batch.targets if training else None
        return self.model(batch.images, batch.image_sizes, batch.image_scales, targets), len(batch.images)


class TorchvisionRunner(Runner):
    name = "torchvision"

    def __init__(self, model: nn.Module, batches: list[Batch], s: Settings) -> None:
        super().__init__(model, s)
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(trainable, lr=0.001, momentum=0.9, weight_decay=5e-4)
        self.inputs = [torchvision_inputs(b, self.device) for b in batches]

    def forward(self, training: bool) -> tuple[object, int]:
        images, targets = self.inputs[self.count % len(self.inputs)]
        self.count += 1
        return self.model(images, targets if training else None), len(images)


def build_pair(s: Settings) -> tuple[Runner, Runner]:
    torch.manual_seed(0)
    ours, cfg = build_ours(s)
    tv = build_torchvision(ours, s)
    batches = load_batches(s, 4)
    return OursRunner(ours, cfg, batches, s), TorchvisionRunner(tv, batches, s)


def time_alternately(s: Settings) -> dict[str, dict[str, list[float]]]:
    """Every timed training step and inference of each model."""
    runners = build_pair(s)
    for r in runners:
        for _ in range(s.warmup):
            r.train_step()
            r.inference()
    times = {r.name: {"train_step_all": [], "inference_all": []} for r in runners}
    for _ in range(s.repeats):
        for r in runners:
            times[r.name]["train_step_all"].append(r.train_step())
        for r in runners:
            times[r.name]["inference_all"].append(r.inference())
    return times


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
    from where it stands once built; nan where Linux's counters are missing."""
    runner = dict((r.name, r) for r in build_pair(s))[which]
    cuda = s.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        try:
            reset_peak_rss()  # building both models must not count
            base = _rss_bytes()
        except OSError:  # no Linux /proc, or clear_refs refused
            return float("nan")
    for _ in range(2):
        runner.train_step()
    runner.inference()
    return float((torch.cuda.max_memory_allocated() if cuda else peak_rss_bytes()) - base)


def memory_in_fresh_process(s: Settings, which: str) -> float:
    """CPU peak memory is per process: measure each model in a new interpreter."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(peak_memory, s, which).result()


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def memory_alternately(s: Settings) -> dict[str, list[float]]:
    """Each model's peak memory `memory_repeats` times, the models taking turns. One measurement
    is not enough on CPU: the resident high-water mark of identical runs of mobilenet_v2 at 600 px
    spread over 535-684 MiB (the allocator's timing), more than the two models differ."""
    cuda = s.device.startswith("cuda")
    measure = peak_memory if cuda else memory_in_fresh_process
    found: dict[str, list[float]] = {name: [] for name in MODELS}
    for _ in range(1 if cuda else max(s.memory_repeats, 1)):  # CUDA's counter is exact
        for name in MODELS:
            found[name].append(measure(s, name))
    return found


def ratio_spread(ours: list[float], theirs: list[float]) -> list[float]:
    """[min, max] of the ratios of measurements taken side by side (ours[i] / theirs[i])."""
    ratios = [a / b for a, b in zip(ours, theirs) if b]
    return [min(ratios), max(ratios)] if ratios else [math.nan, math.nan]


def run(s: Settings) -> dict:
    """The figures: per model medians, every timing and memory measurement, images/s; ours /
    torchvision ratios of the medians, and the spread of the side-by-side ratios."""
    times = time_alternately(s)
    memory = memory_alternately(s)
    result: dict = {"settings": s.__dict__, "device": device_name(s.device), "torch": torch.__version__}
    for name in MODELS:
        t = {**times[name], "peak_mem_all": memory[name]}
        train, infer = statistics.median(t["train_step_all"]), statistics.median(t["inference_all"])
        result[name] = {"train_step": train, "inference": infer, "peak_mem": statistics.median(memory[name]), **t}
        result[name].update(train_images_per_s=s.batch_size / train, inference_images_per_s=1.0 / infer)
    ratio_keys = ("train_step", "inference", "peak_mem")
    result["ratio"] = {k: result["ours"][k] / result["torchvision"][k] for k in ratio_keys}
    result["ratio_spread"] = {
        k: ratio_spread(result["ours"][f"{k}_all"], result["torchvision"][f"{k}_all"]) for k in ratio_keys
    }
    result["memory_note"] = (
        ""
        if not any(math.isnan(result[m]["peak_mem"]) for m in MODELS)
        else ("CPU peak memory needs Linux's /proc/self/clear_refs and VmHWM; reported as nan")
    )
    return result
