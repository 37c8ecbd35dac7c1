"""Compare this project's Faster R-CNN with torchvision's, built to the same specification.

    python benchmark.py --device cpu --net vgg16 --bs 1 --scale 600 --out bench.json
    ./make.sh bench    (the same, with the defaults below)

Prints a table (training step time, inference time per image, peak memory, ratios ours /
torchvision) and writes the figures as JSON with keys ours, torchvision and ratio. See
lib/frcnn/benchmark.py for how the two models are matched and measured.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from frcnn.benchmark import Settings, format_table, run
from frcnn.cli import add_bool_flag, run_main
from frcnn.modeling.backbones import NETS

log = logging.getLogger("frcnn.bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--net", default="vgg16", choices=NETS)
    p.add_argument("--bs", type=int, default=1, help="images per step")
    p.add_argument("--scale", type=int, default=600, help="shorter image side")
    add_bool_flag(p, "--amp", help="mixed precision for both models")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per model (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    p.add_argument(
        "--data_dir", default="data", help="where the built-in dataset lives (its test images are the inputs)"
    )
    p.add_argument("--out", default=None, help="write the figures to this JSON file")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    settings = Settings(
        args.net,
        args.device,
        args.bs,
        args.scale,
        args.amp,
        args.repeats,
        args.warmup,
        str(Path(__file__).resolve().parent / "cfgs"),
        args.data_dir,
    )
    log.info(
        "benchmarking %s on %s, batch %d, scale %d%s",
        args.net,
        args.device,
        args.bs,
        args.scale,
        ", amp" if args.amp else "",
    )
    result = run(settings)
    print(
        f"{args.net}, batch {args.bs}, scale {args.scale}{', amp' if args.amp else ''}, on {result['device']} (torch {result['torch']})"
    )
    print(format_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        log.info("wrote %s", args.out)


if __name__ == "__main__":
    run_main(main)
