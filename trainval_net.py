"""Train a Faster R-CNN: python trainval_net.py --dataset shapes --net tiny --bs 4 --epochs 8

Checkpoints go to <save_dir>/<net>/<dataset>/faster_rcnn_<session>_<epoch>_<step>.pth.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from functools import partial
from pathlib import Path

from frcnn.cli import add_bool_flag, add_model_flags, check_cuda, config_from_args, count, run_main
from frcnn.runs.distributed import LostProcessError, launch_per_gpu
from frcnn.training.budget import parse_budget
from frcnn.training.build import TrainOptions, train
from frcnn.training.hooks import NonFiniteLossError

CFGS_DIR = Path(__file__).resolve().parent / "cfgs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a Faster R-CNN network")
    add_model_flags(p)
    p.add_argument(
        "--bs", dest="batch_size", type=int, default=1, help="batch size (images per step, all processes together)"
    )
    p.add_argument("--nw", dest="num_workers", type=int, default=0, help="data loading worker processes")
    p.add_argument("--lr", type=float, default=None, help="starting learning rate (default: TRAIN.LEARNING_RATE)")
    p.add_argument("--lr_decay_step", type=int, default=5, help="epochs between learning rate decays")
    p.add_argument("--lr_decay_gamma", type=float, default=0.1, help="learning rate decay factor")
    p.add_argument("--epochs", type=int, default=20, help="last epoch to train")
    p.add_argument("--budget", type=parse_budget, default=None, help="train for this long instead (25m, 2h)")
    p.add_argument("--start_epoch", type=int, default=1, help="first epoch (without --r)")
    p.add_argument("--o", dest="optimizer", default=None, choices=("sgd", "adam"), help="optimiser (default: sgd)")
    p.add_argument("--session", "--s", dest="session", type=int, default=1, help="session (names checkpoints)")
    add_bool_flag(p, "--r", "--resume", dest="resume", help="resume from a checkpoint: --r, --r true or --r false")
    p.add_argument("--checksession", type=int, default=None, help="session to resume (default: --session)")
    p.add_argument("--checkepoch", type=int, default=1, help="epoch to resume (with --checkpoint)")
    p.add_argument(
        "--checkpoint", type=int, default=0, help="step to resume; 0 resumes the session's newest checkpoint"
    )
    p.add_argument("--save_dir", default="models", help="where checkpoints go")
    p.add_argument("--disp_interval", type=int, default=100, help="steps between loss displays")
    p.add_argument("--checkpoint_interval", type=int, default=0, help="also save every N steps (0: epoch ends only)")
    p.add_argument("--keep_checkpoints", type=count, default=None, help="keep N newest (all; 2 with --budget)")
    p.add_argument("--pretrained", default=None, help="backbone weights, or a whole detector to fine-tune")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: RNG_SEED)")
    add_bool_flag(
        p, "--mGPUs", help="one process per visible GPU (DistributedDataParallel); under torchrun no flag is needed"
    )
    add_bool_flag(
        p, "--amp", help="mixed precision: bfloat16 autocast where supported, else float16 with gradient scaling"
    )
    p.add_argument("--accum", type=int, default=1, help="split each batch into K parts run one by one (less memory)")
    p.add_argument("--eval_interval", type=int, default=0, help="evaluate every N epochs, keep the best (0: never)")
    add_bool_flag(p, "--use_tfb", help="also write TensorBoard event files (tensorboard --logdir <save_dir>/...)")
    add_bool_flag(p, "--compile", help="torch.compile the model (docs/training.md: where it pays off)")
    add_bool_flag(p, "--strict", help="stop on any unusable image or annotation instead of skipping it")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    check_cuda(args)
    cfg = config_from_args(args, CFGS_DIR)
    device = "cuda" if args.cuda or args.mGPUs else "cpu"
    opts = TrainOptions(
        **{f.name: getattr(args, f.name) for f in fields(TrainOptions) if f.name != "device"}, device=device
    )
    if args.mGPUs:
        launch_per_gpu(partial(train, opts, cfg))
    else:
        train(opts, cfg)


if __name__ == "__main__":
    run_main(main, user_errors=(NonFiniteLossError, LostProcessError))
