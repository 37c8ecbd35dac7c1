"""Seconds per megapixel of sliced inference on one large image: a checkpoint run eagerly by
PyTorch and, exported, by ONNX Runtime, in the checkpoint's own tiles, alternated over repeats.

    python -m tools.bench_sliced --load_name CHECKPOINT.pth --image SCENE.png --repeats 5 [--int8 FILE]

The ONNX file is written into --out (export.py's graph, the checkpoint's config in its
metadata). Both runtimes use --threads threads. Prints and writes <out>/bench_sliced.json: the
median and min-max of each runtime's s/MP, the tiles, and how many boxes each found (the two
should agree closely: the same graph).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from frcnn.data.loader import read_image
from frcnn.export.onnx import detector_metadata, export_onnx
from frcnn.inference.onnx_detector import OnnxDetector
from frcnn.inference.torch_detector import load_detector


def time_once(detector, image) -> tuple[float, int]:
    tic = time.perf_counter()
    found = detector(image)
    return time.perf_counter() - tic, len(found.boxes)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--load_name", required=True, help="a checkpoint trained with tiles (or give --tile)")
    p.add_argument("--image", required=True)
    p.add_argument("--tile", type=int, default=None, help="default: the checkpoint's own tiles")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--int8", default=None, help="also time this int8 file (export.py --quantize int8)")
    p.add_argument("--out", default="output/bench_sliced")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    eager = load_detector(Path(args.load_name), "cpu")
    if args.tile is not None:
        eager.cfg.TILES.SIZE = args.tile
    export_onnx(eager.model, detector_metadata(eager), out / "model.onnx", 18)
    runtimes = {"eager": eager, "onnx": OnnxDetector.from_file(out / "model.onnx", threads=args.threads)}
    if args.int8:
        runtimes["int8"] = OnnxDetector.from_file(args.int8, threads=args.threads)
        runtimes["int8"].cfg.TILES.SIZE = eager.cfg.TILES.SIZE  # the same tiles for every runtime
    image = read_image(args.image)
    megapixels = image.shape[0] * image.shape[1] / 1e6
    for detector in runtimes.values():  # warm-up
        time_once(detector, image)
    seconds: dict[str, list[float]] = {name: [] for name in runtimes}
    boxes = {}
    for _ in range(args.repeats):
        for name, detector in runtimes.items():
            spent, boxes[name] = time_once(detector, image)
            seconds[name].append(spent / megapixels)
    result = {
        "image": f"{image.shape[1]} x {image.shape[0]} ({megapixels:.2f} MP)",
        "tile": eager.cfg.TILES.SIZE,
        "overlap": eager.cfg.TILES.OVERLAP,
        "threads": args.threads,
        "s_per_mp": {n: {"median": statistics.median(v), "min": min(v), "max": max(v)} for n, v in seconds.items()},
        "boxes": boxes,
    }
    (out / "bench_sliced.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
