"""Fine-tuning from a detector against ImageNet-only initialisation, at equal steps, on the built-in data.

    python -m tools.finetune_gain [--net mobilenet_v2] [--epochs 1] [--seeds 1 2 3] [--imagenet FILE]

The source detector starts from ImageNet weights and learns four of the shapes classes (circle,
square, triangle, star). The target task is the other three (cross, ring, crescent), which the
source never saw: each seed trains it twice for the same number of steps, once from the ImageNet
weights and once from the source detector (trainval_net.py --pretrained <source checkpoint>), and
evaluates both on the test split. Prints a table and writes <out>/finetune_gain.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from frcnn.cli import setup_logging
from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.inference.evaluator import EvalOptions, evaluate_checkpoint
from frcnn.training.build import TrainOptions, train

from .bench_models import CFGS_DIR

SOURCE = ("circle", "square", "triangle", "star")
TARGET = ("cross", "ring", "crescent")


def subset_file(out: Path, data_dir: Path, classes: tuple[str, ...]) -> str:
    path = out / f"shapes_{'_'.join(classes)}.yaml"
    path.write_text(
        f"format: voc\nroot: {(data_dir / 'shapes').resolve()}\ntrain: trainval\ntest: test\nclasses: {list(classes)}\n"
    )
    return str(path)


def train_and_test(args, dataset: str, name: str, seed: int, pretrained: str) -> tuple[str, float]:
    cfg = build_config(args.net, CFGS_DIR, dataset_spec("shapes").profile)  # the subsets keep shapes' scales
    options = TrainOptions(
        dataset=dataset,
        net=args.net,
        batch_size=args.bs,
        epochs=args.epochs,
        lr_decay_step=args.epochs,
        lr=args.lr,
        optimizer="sgd",
        save_dir=str(args.out / name),
        data_dir=str(args.data_dir),
        pretrained=pretrained,
        seed=seed,
        disp_interval=200,
    )
    checkpoint = train(options, cfg)
    evaluation = evaluate_checkpoint(
        checkpoint, EvalOptions(data_dir=str(args.data_dir), output_dir=str(args.out / name / "eval"))
    )
    return str(checkpoint), evaluation.mean_ap


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", default="mobilenet_v2")
    p.add_argument("--imagenet", required=True, help="the backbone's ImageNet weight file")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--bs", type=int, default=4)
    p.add_argument("--lr", type=float, default=None, help="default: the net's (cfgs/<net>.yml)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--data_dir", type=Path, default=Path("data"))
    p.add_argument("--out", type=Path, default=Path("output/finetune_gain"))
    args = p.parse_args()
    setup_logging()
    args.out.mkdir(parents=True, exist_ok=True)
    source, source_ap = train_and_test(args, subset_file(args.out, args.data_dir, SOURCE), "source", 0, args.imagenet)
    target = subset_file(args.out, args.data_dir, TARGET)
    results = {"source_map": source_ap, "imagenet": [], "detector": []}
    for seed in args.seeds:
        results["imagenet"].append(train_and_test(args, target, f"imagenet_{seed}", seed, args.imagenet)[1])
        results["detector"].append(train_and_test(args, target, f"detector_{seed}", seed, source)[1])
        (args.out / "finetune_gain.json").write_text(json.dumps(results, indent=2))
    print(f"source detector ({', '.join(SOURCE)}): mAP {source_ap:.4f}")
    print("| initialisation | " + " | ".join(f"seed {s}" for s in args.seeds) + " | median |")
    for key, label in (("imagenet", "ImageNet backbone only"), ("detector", "source detector")):
        values = results[key]
        print(f"| {label} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {statistics.median(values):.4f} |")


if __name__ == "__main__":
    main()
