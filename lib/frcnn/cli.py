"""What the scripts share: their common flags, the checkpoint they name, logging, and error reporting."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Callable

import torch
from easydict import EasyDict

from .config import ConfigError, build_config, large_scale_file
from .data.datasets.factory import dataset_spec
from .modeling.backbones import NETS, WeightFileError
from .runs.checkpoint import CheckpointError, find_checkpoint, latest_checkpoint
from .utils.errors import InputError, file_being_read

log = logging.getLogger("frcnn")


def str2bool(text: str) -> bool:
    """A true boolean for flags like --r: true/false, yes/no, 1/0, on/off."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "t", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "f", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false); got {text!r}")


def count(text: str) -> int:
    """A whole number >= 0 for flags like --keep_checkpoints."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0; got {text!r}")
    return value


def score_or_auto(text: str) -> float | str:
    """A score threshold flag: a number in [0, 1], or `auto` (each class's chosen threshold)."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a score between 0 and 1, or auto; got {text!r}")
    return value


def overlap_threshold(text: str) -> float:
    """An IoU threshold flag: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected an IoU between 0 and 1; got {text!r}")
    return value


def add_bool_flag(parser: argparse.ArgumentParser, *names: str, help: str, dest: str | None = None) -> None:
    """A flag that means true alone (`--r`) and takes an optional value (`--r false`)."""
    parser.add_argument(*names, dest=dest, type=str2bool, nargs="?", const=True, default=False, help=help)


def add_model_flags(parser: argparse.ArgumentParser, loading: bool = False) -> None:
    """--dataset, --net and the config flags; `loading` for scripts that load a checkpoint, where
    --net names the checkpoint folder and, when given, must match the checkpoint."""
    if loading:
        help_text = "dataset name or YAML (default: the checkpoint's; names the checkpoint folder)"
        parser.add_argument("--dataset", default=None, help=help_text)
    else:
        parser.add_argument("--dataset", default="shapes", help="dataset name or YAML (names the checkpoint folder)")
    if loading:
        parser.add_argument(
            "--net", default=None, choices=NETS, help="backbone (default: the checkpoint's; folder models/tiny/...)"
        )
    else:
        parser.add_argument("--net", default="tiny", choices=NETS, help="backbone network")
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="extra config file (YAML)")
    parser.add_argument(
        "--set",
        dest="set_cfgs",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="config overrides, e.g. --set TEST.SCALES [800]",
    )
    add_bool_flag(parser, "--cuda", help="run on the GPU")
    add_bool_flag(parser, "--ls", help="large scale: cfgs/large_scale.yml or cfgs/<net>_ls.yml (COCO 800/1200)")
    add_bool_flag(parser, "--cag", help="class-agnostic box regression")
    parser.add_argument("--data_dir", default="data", help="where datasets live (default: data)")


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load_dir", default="models", help="folder of saved models (default: models)")
    parser.add_argument("--checksession", type=int, default=1, help="session of the checkpoint to load")
    parser.add_argument("--checkepoch", type=int, default=None, help="epoch of the checkpoint (default: the newest)")
    parser.add_argument(
        "--checkpoint", type=int, default=None, help="step of the checkpoint (default: the epoch's last)"
    )
    parser.add_argument("--load_name", default=None, help="a checkpoint file, instead of the four flags above")


def loading_parser(description: str, mgpus_help: str) -> argparse.ArgumentParser:
    """The parser of a script that loads a trained detector: the model and checkpoint flags, and
    the original's --mGPUs and --parallel_type (accepted; loading_settings says they are unneeded)."""
    parser = argparse.ArgumentParser(description=description)
    add_model_flags(parser, loading=True)
    add_checkpoint_flags(parser)
    add_bool_flag(parser, "--mGPUs", help=mgpus_help)
    add_parallel_type_flag(parser)
    return parser


def loading_settings(args: argparse.Namespace, cfgs_dir: Path) -> tuple[list[str], list[str]]:
    """checkpoint_settings, after checking --cuda and noting --parallel_type."""
    check_cuda(args)
    note_parallel_type(args)
    return checkpoint_settings(args, cfgs_dir)


def resolve_checkpoint(args: argparse.Namespace) -> Path:
    """The checkpoint the flags name. Without --dataset (as the original's demo command line has
    none), every dataset folder under <load_dir>/<net>/ is searched, and one match is taken."""
    if args.load_name:
        return Path(args.load_name)
    net = args.net or "tiny"
    if args.dataset is not None:
        return _checkpoint_in(args, net, args.dataset)
    found = {}
    for folder in sorted(p for p in (Path(args.load_dir) / net).glob("*") if p.is_dir()):
        try:
            found[folder.name] = _checkpoint_in(args, net, folder.name)
        except CheckpointError:
            pass
    if len(found) != 1:
        where = f"{len(found)} dataset folders ({', '.join(found)})" if found else "no dataset folder"
        raise CheckpointError(
            f"{where} under {Path(args.load_dir) / net} hold(s) the checkpoint named by --checksession/--checkepoch/"
            "--checkpoint; name one with --dataset, or pass --load_name"
        )
    name, path = next(iter(found.items()))
    log.info("found %s (the dataset folder %s; --dataset picks another)", path, name)
    return path


def _checkpoint_in(args: argparse.Namespace, net: str, dataset: str) -> Path:
    if args.checkepoch is None:
        path = latest_checkpoint(args.load_dir, net, dataset, args.checksession)
        if path is None:
            folder = Path(args.load_dir) / net / Path(dataset).stem
            raise CheckpointError(
                f"no checkpoint of session {args.checksession} under {folder}; "
                "train one with trainval_net.py or pass --load_name"
            )
        return path
    return find_checkpoint(args.load_dir, net, dataset, args.checksession, args.checkepoch, args.checkpoint)


def config_from_args(args: argparse.Namespace, cfgs_dir: Path) -> EasyDict:
    """The run's configuration from add_model_flags' flags (config.build_config's merge order)."""
    if args.dataset is None:
        raise ValueError("--dataset is needed here (the dataset name or YAML file)")
    spec = dataset_spec(args.dataset, args.data_dir)
    return build_config(
        args.net or "tiny",
        cfgs_dir,
        spec.profile,
        args.cfg_file,
        args.set_cfgs,
        args.ls,
        args.cag,
        profile_source=spec.source,
    )


def check_cuda(args: argparse.Namespace) -> None:
    """--cuda on a machine where PyTorch sees no CUDA GPU: one clear line, not a traceback.
    (trainval_net.py's --mGPUs says the same through distributed.launch_per_gpu.)"""
    if args.cuda and not torch.cuda.is_available():
        raise ValueError("--cuda: PyTorch sees no CUDA GPU on this machine; drop --cuda to run on the CPU")


def checkpoint_settings(args: argparse.Namespace, cfgs_dir: Path) -> tuple[list[str], list[str]]:
    """The config files and --set pairs a loaded checkpoint's config takes from add_model_flags'
    flags: --ls's file (test-time scales), --cfg, then --cag and --set. Settings that would change
    the model itself (--cag on a class-specific checkpoint) are refused by load_detector."""
    files = [str(large_scale_file(cfgs_dir, args.net))] if args.ls else []
    files += [args.cfg_file] if args.cfg_file else []
    return files, (["CLASS_AGNOSTIC", "True"] if args.cag else []) + list(args.set_cfgs)


def add_parallel_type_flag(parser: argparse.ArgumentParser) -> None:
    """The original's --parallel_type (its DataParallel variants): accepted, and said to be unneeded."""
    parser.add_argument("--parallel_type", type=int, choices=(0, 1), default=None, help=argparse.SUPPRESS)


def note_parallel_type(args: argparse.Namespace) -> None:
    if getattr(args, "parallel_type", None) is not None:
        log.info("--parallel_type is not needed: several GPUs run DistributedDataParallel (start with torchrun)")


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout, force=True
    )


# Input that cannot be used (InputError: data, checkpoints, exported models, detections files;
# ConfigError: config files), a bad flag (ValueError) or a missing file: the user's to fix.
USER_ERRORS: tuple[type[Exception], ...] = (
    InputError,
    ConfigError,
    ValueError,
    FileNotFoundError,
    CheckpointError,
    WeightFileError,
)


def run_main(main: Callable[[], object], user_errors: tuple[type[Exception], ...] = ()) -> None:
    """Run a script's main; a user error prints one line and exits with status 2, no traceback
    (set FRCNN_DEBUG=1 to see it). Any other exception is a bug: its traceback is printed and,
    when it escaped a reader, a last line names the file being read (exit status 1)."""
    setup_logging()
    try:
        main()
    except USER_ERRORS + user_errors as e:
        if os.environ.get("FRCNN_DEBUG"):
            raise
        print(f"error: {user_message(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        where = file_being_read(e)
        if where is None:
            raise
        traceback.print_exc()
        print(
            f"error: unexpected {type(e).__name__} while reading {where} (a bug: the traceback is above)",
            file=sys.stderr,
        )
        sys.exit(1)


def user_message(error: Exception) -> str:
    """The one line printed for a user error: its message, with the file being read when the
    message does not name it (a ValueError from a library, inside a reader)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    message = " ".join(lines[:1] + ["; ".join(lines[1:])]).strip()  # "...: a; b" for a listed message
    where = file_being_read(error)
    return f"{message} (while reading {where})" if where and where not in message else message
