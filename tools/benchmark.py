"""Compare this project's Faster R-CNN with torchvision's, built to the same specification.

    python benchmark.py --device cpu --net vgg16 --bs 1 --scale 600 --out bench.json
    ./make.sh bench    (the same, with the defaults below)
    python benchmark.py --onnx --nets tiny mobilenet_v2 --threads 2    (inference: eager vs ONNX Runtime
        vs torchvision, see bench_inference.py)
    python benchmark.py --small_objects --wheel deepforest-2.1.0-py3-none-any.whl --budget 25m
        (test AP against minutes of training on real tree-crown tiles, this project's defaults vs
        torchvision's; the flags after --small_objects are small_objects.py's)

Prints a table (training step time, inference time per image, peak memory, ratios ours /
torchvision) and writes the figures as JSON with keys ours, torchvision and ratio. See
bench_models.py for how the two models are matched and bench_measure.py for how they are measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from frcnn.cli import add_bool_flag, run_main
from frcnn.modeling.backbones import NETS

from . import bench_inference, small_objects
from .bench_measure import run
from .bench_models import Settings

log = logging.getLogger("frcnn.bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--net", default="vgg16", choices=NETS)
    p.add_argument("--bs", dest="batch_size", type=int, default=1, help="images per step")
    p.add_argument("--scale", type=int, default=600, help="shorter image side")
    add_bool_flag(p, "--amp", help="mixed precision for both models")
    add_bool_flag(p, "--recompute_head", help="ours: recompute the per-RoI head in backward (TRAIN.RECOMPUTE_HEAD)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per model (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    p.add_argument("--memory_repeats", type=int, default=5, help="CPU peak memory: fresh processes per model")
    p.add_argument("--data_dir", default="data", help="the built-in dataset's folder (its test images are the inputs)")
    p.add_argument("--out", default=None, help="write the figures to this JSON file")
    add_bool_flag(p, "--onnx", help="compare CPU inference: eager vs ONNX Runtime vs torchvision (bench_inference.py)")
    p.add_argument("--nets", nargs="+", default=["tiny", "mobilenet_v2"], choices=NETS, help="nets of --onnx")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of each runtime with --onnx (default 2)")
    return p.parse_args(argv)


def format_table(result: dict) -> str:
    ours, tv, ratio = result["ours"], result["torchvision"], result["ratio"]
    rows = [("", "ours", "torchvision", "ratio", "side by side")]
    for key, label, fmt, scale in (
        ("train_step", "train step (s)", "{:.3f}", 1.0),
        ("inference", "inference (s/image)", "{:.3f}", 1.0),
        ("peak_mem", "peak memory (MiB)", "{:.0f}", 1 / 2**20),
    ):
        low, high = result["ratio_spread"][key]
        cells = fmt.format(ours[key] * scale), fmt.format(tv[key] * scale), f"{ratio[key]:.2f}", f"{low:.2f}-{high:.2f}"
        rows.append((label, *cells))
    rate_ours, rate_tv = ours["train_images_per_s"], tv["train_images_per_s"]
    rows.append(("train images/s", f"{rate_ours:.2f}", f"{rate_tv:.2f}", f"{rate_ours / rate_tv:.2f}x", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    )


def main() -> None:
    if sys.argv[1:2] == ["--small_objects"]:
        return small_objects.main(sys.argv[2:])
    args = parse_args()
    if args.onnx:
        return run_inference_comparison(args)
    settings = Settings(**{k: v for k, v in vars(args).items() if k not in ("out", "onnx", "nets", "threads")})
    what = f"{args.net}, batch {args.batch_size}, scale {args.scale}{', amp' if args.amp else ''}"
    what += ", ours recomputing its head" if args.recompute_head else ""
    log.info("benchmarking %s on %s", what, args.device)
    result = run(settings)
    if result["memory_note"]:
        log.warning("%s", result["memory_note"])
    print(f"{what}, on {result['device']} (torch {result['torch']})")
    print(format_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        log.info("wrote %s", args.out)


def run_inference_comparison(args: argparse.Namespace) -> None:
    settings = Settings(scale=args.scale, repeats=args.repeats, warmup=args.warmup, data_dir=args.data_dir)
    log.info("inference on the CPU, %d threads, scale %d: %s", args.threads, args.scale, ", ".join(args.nets))
    results = bench_inference.run(args.nets, settings, args.threads)
    print(
        f"median of {args.repeats} images each, {args.threads} threads, scale {args.scale} (torch {torch.__version__})"
    )
    print(bench_inference.format_table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
        log.info("wrote %s", args.out)


if __name__ == "__main__":
    run_main(main)
