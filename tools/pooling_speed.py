"""Seconds per training step of each RoI pooling mode, side by side, on the built-in dataset.

    python -m tools.pooling_speed [--net tiny] [--bs 4] [--repeats 10]

Each mode's model is built from the same config as `./make.sh run` (cfgs/<net>.yml over the shapes
profile) with POOLING_MODE set, and all of them step through the same batches of the trainval
split in turn (pool, align, crop, deform, pool, ...), so that they share the machine's load; the
table gives each mode's median and its ratio to align.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.loader import RoidbDataset, collate
from frcnn.data.roidb import build_roidb
from frcnn.modeling import build_model
from frcnn.modeling.roi_pool import POOLING_MODES

from .bench_measure import OursRunner
from .bench_models import CFGS_DIR, Settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", default="tiny")
    p.add_argument("--bs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--data_dir", default="data")
    args = p.parse_args()
    spec = dataset_spec("shapes", args.data_dir)
    roidb = build_roidb(spec.train()[0].records[: 8 * args.bs], use_flipped=False)
    cfg0 = build_config(args.net, CFGS_DIR, spec.profile)
    data = RoidbDataset(roidb, cfg0.TRAIN.SCALES, cfg0.TRAIN.MAX_SIZE)
    batches = [collate([data[i * args.bs + j] for j in range(args.bs)]) for i in range(8)]
    runners = {}
    for mode in POOLING_MODES:
        torch.manual_seed(0)
        cfg = build_config(args.net, CFGS_DIR, spec.profile, set_cfgs=["POOLING_MODE", mode])
        model, _ = build_model(cfg, args.net, spec.train()[0].num_classes, use_default_weights=False)
        runners[mode] = OursRunner(model, cfg, batches, Settings(net=args.net))
    times: dict[str, list[float]] = {mode: [] for mode in runners}
    for i in range(args.repeats + 3):
        for mode, runner in runners.items():
            seconds = runner.train_step()
            if i >= 3:  # warm-up steps are not counted
                times[mode].append(seconds)
    align = statistics.median(times["align"])
    print(f"{args.net}, batch {args.bs}, {torch.get_num_threads()} threads, median of {args.repeats} steps")
    for mode, values in times.items():
        median = statistics.median(values)
        print(f"{mode:8s} {median:.3f} s/step  {median / align:.2f}x align")


if __name__ == "__main__":
    main()
