"""Evaluate a trained Faster R-CNN: python test_net.py --dataset shapes --net tiny

Prints `AP for <class> = 0.XXXX` per class and, last, `Mean AP = 0.XXXX` (VOC metrics: mean AP at
IoU 0.5, or --iou; coco: AP at IoU .50:.95). Detections (COCO results JSON), the AP table (text, JSON) and
precision/recall curves go to <output_dir>/<net>/<dataset>/<checkpoint name>/.
With --detections FILE, a saved results file is evaluated instead of running a model.
Started by torchrun (e.g. torchrun --nproc_per_node 4 test_net.py ...), the processes share the
images and rank 0 gathers the detections and evaluates.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from frcnn.cli import (
    add_bool_flag,
    config_from_args,
    loading_parser,
    loading_settings,
    overlap_threshold,
    resolve_checkpoint,
    run_main,
)
from frcnn.evaluation.evaluate import METRICS
from frcnn.evaluation.report import report_lines
from frcnn.inference.evaluator import EvalOptions, evaluate_checkpoint, evaluate_results_file

CFGS_DIR = Path(__file__).resolve().parent / "cfgs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = loading_parser(
        "Evaluate a Faster R-CNN network", "accepted for compatibility; to use several processes, start with torchrun"
    )
    add_bool_flag(p, "--vis", help="also save the test images with their detections drawn")
    p.add_argument("--metric", choices=METRICS, help="default: voc07 for VOC 2007, coco for COCO-format data, else voc")
    p.add_argument(
        "--iou",
        type=overlap_threshold,
        default=0.5,
        help="VOC metrics: the least IoU of a true positive (default 0.5, the devkit's; coco averages .50:.95)",
    )
    p.add_argument("--detections", default=None, help="evaluate this COCO results JSON instead of running a model")
    p.add_argument("--output_dir", default="output", help="where results go (default: output)")
    p.add_argument("--bs", dest="batch_size", type=int, default=1, help="images per inference batch")
    p.add_argument("--nw", dest="num_workers", type=int, default=0, help="data loading worker processes")
    p.add_argument(
        "--tile", type=int, default=None, help="detect whole images in tiles this large (default: the model's; 0: none)"
    )
    p.add_argument("--overlap", type=float, default=None, help="tiles' overlap, a share of --tile (default 0.2)")
    p.add_argument("--tta", default=None, help="test-time augmentation: flip, scales=480,600,800, or flip,scales=...")
    p.add_argument(
        "--threshold_rule",
        default=None,
        help="first choose a score threshold per class on the val split (f1, or precision=0.9) and write "
        "them into the checkpoint, for threshold='auto' and demo.py --thresh auto",
    )
    add_bool_flag(p, "--strict", help="stop on any unusable test image or annotation instead of skipping it")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    cfg_files, set_cfgs = loading_settings(args, CFGS_DIR)
    names = {f.name for f in fields(EvalOptions)} - {"cfg_files", "set_cfgs"}
    opts = EvalOptions(**{n: getattr(args, n) for n in names}, cfg_files=cfg_files, set_cfgs=set_cfgs)
    if args.detections:
        vg_version = config_from_args(args, CFGS_DIR).VG_VERSION
        evaluation = evaluate_results_file(Path(args.detections), opts, vg_version)
    else:
        evaluation = evaluate_checkpoint(resolve_checkpoint(args), opts)
    if evaluation is not None:  # None in the processes other than rank 0
        print("\n".join(report_lines(evaluation)))


if __name__ == "__main__":
    run_main(main)
