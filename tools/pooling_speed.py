"""Seconds per training step of each RoI pooling mode (or of several nets), side by side, on the built-in dataset.

    python -m tools.pooling_speed [--net tiny] [--bs 4] [--repeats 10]
    python -m tools.pooling_speed --nets tiny mobilenet_v2 mobilenet_v3_fpn res50_fpn

Each mode's model is built from the same config as `./make.sh run` (cfgs/<net>.yml over the shapes
profile) with POOLING_MODE set, and all of them step through the same batches of the trainval
split in turn (pool, align, crop, deform, pool, ...), so that they share the machine's load; the
table gives each mode's median and its ratio to align. With --nets, each net (in its own config,
default pooling mode, random weights) takes a mode's place, and ratios are to the first net.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from frcnn.autofit.anchors import resolve_auto_anchors
from frcnn.autofit.profile import BoxProfile
from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.loader import RoidbDataset, collate
from frcnn.data.roidb import build_roidb
from frcnn.modeling import build_model
from frcnn.modeling.poolers.roi_pool import POOLING_MODES

from .bench_measure import OursRunner
from .bench_models import CFGS_DIR, Settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", default="tiny")
    p.add_argument("--bs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--data_dir", default="data")
    p.add_argument("--nets", nargs="+", default=None, help="compare these nets instead of --net's pooling modes")
    args = p.parse_args()
    spec = dataset_spec("shapes", args.data_dir)
    roidb = build_roidb(spec.train()[0].records[: 8 * args.bs], use_flipped=False)
    cfg0 = build_config(args.net, CFGS_DIR, spec.profile)
    data = RoidbDataset(roidb, cfg0.TRAIN.SCALES, cfg0.TRAIN.MAX_SIZE)
    batches = [collate([data[i * args.bs + j] for j in range(args.bs)]) for i in range(8)]
    if args.nets:
        variants = {net: (net, []) for net in args.nets}
    else:
        variants = {mode: (args.net, ["POOLING_MODE", mode]) for mode in POOLING_MODES}
    runners = {}
    for name, (net, settings) in variants.items():
        torch.manual_seed(0)
        cfg = build_config(net, CFGS_DIR, spec.profile, set_cfgs=settings)
        resolve_auto_anchors(cfg, BoxProfile.of(spec.train()[0].records))  # the anchors training would choose
        model, _ = build_model(cfg, net, spec.train()[0].num_classes, use_default_weights=False)
        runners[name] = OursRunner(model, cfg, batches, Settings(net=net))
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(args.repeats + 3):
        for name, runner in runners.items():
            seconds = runner.train_step()
            if i >= 3:  # warm-up steps are not counted
                times[name].append(seconds)
    reference = next(iter(times))
    base = statistics.median(times[reference])
    print(f"batch {args.bs}, {torch.get_num_threads()} threads, median of {args.repeats} steps")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:16s} {median:.3f} s/step  {median / base:.2f}x {reference}")


if __name__ == "__main__":
    main()
