"""The configuration: one nested dict of defaults, merged from YAML files and `--set` pairs.

Merge order (later wins, `build_config`), the same for training, testing and the demo:
    defaults below -> the dataset's profile (anchor scales, image scales) -> cfgs/<net>.yml
    -> cfgs/large_scale.yml with --ls -> --cfg FILE -> --set KEY VALUE ...
A checkpoint stores the merged result, so test_net.py and demo.py rebuild exactly the trained model.

Values from files use yaml.safe_load and `--set` values are parsed as Python literals
(ast.literal_eval), never evaluated. A key that does not exist, or a value whose type does not
match the default, is an error rather than a silently ignored typo.
"""

from __future__ import annotations

import ast
import copy
import difflib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from easydict import EasyDict

from .utils.files import read_yaml

# The cfgs/ folder of a source checkout (pip install -e .), where each net's settings live.
DEFAULT_CFGS_DIR = Path(__file__).resolve().parents[2] / "cfgs"


def default_config() -> EasyDict:
    """A fresh copy of the defaults (Ren et al. / py-faster-rcnn values, see shared REFERENCE)."""
    cfg = EasyDict()
    cfg.TRAIN = _train_defaults()
    cfg.TEST = _test_defaults()
    cfg.RESNET = EasyDict(FIXED_BLOCKS=1)
    cfg.VGG = EasyDict(FIXED_LAYERS=10)  # conv1_1 .. conv2_2 (10 modules of torchvision's vgg16.features)
    cfg.MOBILENET = EasyDict(FIXED_LAYERS=4)  # stem and the stride-4 blocks
    # The small net trained from scratch (`--net tiny`): widths of its stem and three stages, the
    # width of its two fully connected head layers, and its normalisation (group or batch).
    cfg.TINY = EasyDict(CHANNELS=[32, 64, 128, 192], HEAD_DIM=512, NORM="batch")
    # Anchors over the stride-16 feature map: sizes FEAT_STRIDE x ANCHOR_SCALES, ratios h/w.
    # ANCHOR_SCALES may be `auto` (AUTO): the trainer then chooses scales and ratios from the
    # training boxes before building the model (autofit/anchors.py) and stores the numbers.
    cfg.FEAT_STRIDE = 16
    cfg.ANCHOR_SCALES = [8, 16, 32]
    cfg.ANCHOR_RATIOS = [0.5, 1, 2]
    # Pyramid nets (FPN): anchor sides in pixels, one list per level (torchvision's anchors); when
    # set, FEAT_STRIDE and ANCHOR_SCALES are unused.
    cfg.ANCHOR_SIZES = []
    # Large images in tiles (data/tiling.py), set per dataset by `tiles:` in its YAML: with SIZE > 0
    # training images larger than a tile are cut at load into SIZE x SIZE tiles overlapping by
    # OVERLAP x SIZE pixels; a box cut by a tile's edge keeps its visible part (difficult when less
    # than half of it is inside); EMPTY_SHARE of the tiles without objects are kept. test_net.py,
    # demo.py and the Python API then detect whole images in the same tiles (inference/slicing.py).
    # SIZE `auto` (AUTO, the default of dataset YAML data): chosen from the data (autofit/tiles.py).
    # SHIFT > 0 moves each training tile's window at every load by up to SHIFT x SIZE pixels along
    # each axis, its objects cut again (data/tiling.py TileShift); 0 trains on the fixed grid. 0.4:
    # ahead of the fixed grid on held-out aerial scenes (docs/your_data.md, Large images).
    cfg.TILES = EasyDict(SIZE=0, OVERLAP=0.2, EMPTY_SHARE=0.25, SHIFT=0.4)
    cfg.RPN_CHANNELS = 512
    cfg.RPN_CONV_DEPTH = 1  # 3x3 convolutions of the RPN head (2 in torchvision's v2 detector)
    cfg.RPN_SCORE_THRESH = 0.0  # lowest objectness probability of a proposal
    # Box conventions, input resizing and the like (modeling/conventions.py): original | torchvision.
    cfg.CONVENTION = "original"
    # RoI feature extraction: pool | align | crop | deform (deformable RoI pooling, whose offset
    # layer learns at 0.01x the learning rate), output POOLING_SIZE x POOLING_SIZE.
    cfg.POOLING_MODE = "align"
    cfg.POOLING_SIZE = 7
    # RoIAlign samples per bin (0: adaptive, ceil(bin size), as the original; deform: 0 means 2)
    # and half-pixel offset (align only).
    cfg.ROI_ALIGN_SAMPLING_RATIO = 0
    cfg.ROI_ALIGN_ALIGNED = False
    # Class-agnostic box regression (--cag): one set of 4 deltas for all classes.
    cfg.CLASS_AGNOSTIC = False
    # Backbone in channels-last memory layout: faster for the tiny net on CPU, slower for VGG16
    # training on CPU (docs/training.md, Speed and memory), so off by default and on in cfgs/tiny.yml.
    cfg.CHANNELS_LAST = False
    # Pretrained weight format: auto (from the file name), torchvision or caffe.
    cfg.PRETRAINED_FORMAT = "auto"
    # Set by the trainer when a backbone starts without pretrained weights: the FPN nets then use
    # trainable BatchNorm and freeze nothing, as torchvision builds its detectors without weights.
    cfg.BACKBONE_FROM_SCRATCH = False
    # Vocabulary version of --dataset vg (data/genome/<version>/objects_vocab.txt).
    cfg.VG_VERSION = "1600-400-20"
    cfg.RNG_SEED = 3
    return cfg


def _short_schedule_defaults() -> dict:
    """TRAIN keys of budget runs' recipe and of the weight average."""
    return dict(
        # The short-schedule recipe of --budget runs, where --o / --lr do not say otherwise: a
        # cosine over a few thousand steps, where the original's SGD at 0.001 (set for 70k-step
        # schedules) barely trains the RPN and SGD at 0.01 leaves the box classifier at its prior
        # (docs/training.md, "Train for a wall-clock budget"). Warm-up over BUDGET_WARMUP_ITERS, at most a tenth.
        BUDGET_OPTIMIZER="adam",
        BUDGET_LEARNING_RATE=0.0003,
        BUDGET_WARMUP_ITERS=100,
        # EMA_DECAY > 0: a moving average of the weights is saved and evaluated (training/ema.py),
        # its decay ramped up over about EMA_WARMUP steps.
        EMA_DECAY=0.0,
        EMA_WARMUP=100,
    )


def _train_defaults() -> EasyDict:
    """TRAIN: the optimiser, schedule, input, augmentation and sampling of training."""
    return EasyDict(
        # Optimiser: SGD, momentum 0.9, weight decay 5e-4 except on biases, doubled bias LR.
        LEARNING_RATE=0.001,
        MOMENTUM=0.9,
        WEIGHT_DECAY=0.0005,
        DOUBLE_BIAS=True,
        BIAS_DECAY=False,
        # Gradient clipping by global norm; 0 disables it.
        CLIP_GRAD_NORM=0.0,
        # Update large parameters during backward, freeing each gradient as soon as it is used
        # (less peak memory, same result; training/optim.py StepInBackward). Off by itself where
        # clipping, float16 loss scaling or several processes need every gradient first.
        STEP_IN_BACKWARD=True,
        # Recompute the per-RoI head's activations in backward instead of keeping them (activation
        # checkpointing): less peak memory for a second head forward per step; most worth it where
        # the head is a conv stage run on every sampled RoI (mobilenet_v2, the ResNets' layer4).
        RECOMPUTE_HEAD=False,
        # Learning-rate schedule: "step" (x --lr_decay_gamma every --lr_decay_step epochs) or
        # "cosine" (from the base LR down to 0 over the run's iterations).
        LR_SCHEDULE="step",
        # Linear warm-up over this many iterations from WARMUP_FACTOR x LR; 0 disables it.
        WARMUP_ITERS=0,
        WARMUP_FACTOR=0.1,
        **_short_schedule_defaults(),
        # Input: shorter side is one of SCALES (one picked per batch), longer side capped at MAX_SIZE.
        # `auto`: TEST.SCALES, or larger where the training boxes are small (autofit/scale.py).
        SCALES=[600],
        MAX_SIZE=1000,
        USE_FLIPPED=True,
        # Augmentation with torchvision.transforms.v2, applied in order (data/augment.py): any of
        # photometric, zoom_out, iou_crop, hflip. Empty: the original's flip-only training.
        AUGMENT=[],
        # Objects marked difficult are left out of training (they still count as "ignore" at test).
        USE_DIFFICULT=False,
        # Difficult objects as ignore regions, anchors and RoIs over them neither fg nor bg
        # (modeling/sampling.py), not left out: off, not ahead on held-out scenes (docs/your_data.md).
        IGNORE_DIFFICULT=False,
        # Aspect-ratio grouping: images are sorted by log(w/h) + uniform(-J, J) noise each epoch.
        ASPECT_JITTER=0.1,
        # RoI sampling for the detection head.
        BATCH_SIZE=128,
        FG_FRACTION=0.25,
        FG_THRESH=0.5,
        BG_THRESH_HI=0.5,
        BG_THRESH_LO=0.1,
        BBOX_NORMALIZE_MEANS=[0.0, 0.0, 0.0, 0.0],
        BBOX_NORMALIZE_STDS=[0.1, 0.1, 0.2, 0.2],
        # Anchor labelling and sampling for the RPN.
        RPN_POSITIVE_OVERLAP=0.7,
        RPN_NEGATIVE_OVERLAP=0.3,
        RPN_FG_FRACTION=0.5,
        RPN_BATCHSIZE=256,
        # Proposals kept for the head during training.
        RPN_NMS_THRESH=0.7,
        RPN_PRE_NMS_TOP_N=12000,
        RPN_POST_NMS_TOP_N=2000,
        RPN_MIN_SIZE=8.0,
    )


def _test_defaults() -> EasyDict:
    """TEST: the input, proposals and post-processing of inference."""
    return EasyDict(
        SCALES=[600],
        MAX_SIZE=1000,
        NMS=0.3,
        SCORE_THRESH=0.05,
        # A score threshold per class index (0, the background, unused), chosen on held-out images
        # by test_net.py --threshold_rule (evaluation/thresholds.py) and used by threshold="auto";
        # empty: none chosen.
        CLASS_THRESHOLDS=[],
        MAX_PER_IMAGE=100,
        RPN_NMS_THRESH=0.7,
        RPN_PRE_NMS_TOP_N=6000,
        RPN_POST_NMS_TOP_N=300,
        RPN_MIN_SIZE=16.0,
        # Inference on CPU feeds the backbone channels-last input (weights stay as they are):
        # oneDNN then skips a layout conversion per convolution. Measured 13-15% faster backbones
        # (vgg16, res50, mobilenet_v2) on a 2-core CPU. Training is unaffected: there NHWC made
        # VGG16's backward 2.3x slower.
        CHANNELS_LAST_CPU=True,
    )


class ConfigError(ValueError):
    """A config file that cannot be read or merged; the message is one line and names the file.
    (The data, checkpoint and model readers raise utils.errors.InputError; this module imports
    nothing of the package, so its error is its own, and cli.run_main treats both alike.)"""


def _number(key: str, value: Any) -> Any:
    """`value` if it is a finite number (not a bool), else a ValueError naming the key."""
    try:
        finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise ValueError(f"config key {key} wants a finite number; got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    """A value from a file, quoted on one line and shortened."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


# Keys that size the model or its input: more than zero (a whole number where "int"), as the
# builders take them; a value that passes the type check alone would fail them with a TypeError
# or a negative tensor dimension (a checkpoint's or an exported graph's config is read here too).
POSITIVE = {
    "FEAT_STRIDE": "int",
    "POOLING_SIZE": "int",
    "RPN_CHANNELS": "int",
    "RPN_CONV_DEPTH": "int",
    "TINY.HEAD_DIM": "int",
    "TINY.CHANNELS": "int",
    "ANCHOR_SCALES": "number",
    "ANCHOR_RATIOS": "number",
    "TRAIN.SCALES": "int",
    "TEST.SCALES": "int",
    "TRAIN.MAX_SIZE": "int",
    "TEST.MAX_SIZE": "int",
}


LARGEST = 1e6  # no layer width, image side or anchor scale of a working model comes near it


def _check_positive(key: str, value: Any) -> Any:
    """`value` (a number or a list of them) if each is more than zero and at most LARGEST, and
    whole where POSITIVE says "int" (then made an int); else a ValueError naming the key."""
    kind = POSITIVE.get(key)
    if kind is None or value == AUTO:
        return value
    items = value if isinstance(value, list) else [value]
    wholes = kind != "int" or all(float(v).is_integer() for v in items)
    if not items or not wholes or not all(0 < v <= LARGEST for v in items):
        wanted = "whole numbers" if kind == "int" else "numbers"
        raise ValueError(f"config key {key} wants {wanted} more than 0 and at most {LARGEST:g}; got {_shown(value)}")
    if kind == "int":
        return [int(v) for v in value] if isinstance(value, list) else int(value)
    return value


def _check_anchor_sizes(key: str, value: list) -> list:
    """ANCHOR_SIZES: empty, or one non-empty list of positive sizes per pyramid level."""
    for level in value:
        if not (isinstance(level, list) and level and all(_number(key, v) > 0 for v in level)):
            raise ValueError(f"config key {key} wants lists of sizes more than 0, one per level; got {_shown(value)}")
    return value


def _check_and_convert(key: str, value: Any, default: Any) -> Any:
    """Make `value` fit the type of `default` (and POSITIVE's ranges), or raise a ValueError that
    names the key."""
    value = _convert(key, value, default)
    if key == "ANCHOR_SIZES":
        return _check_anchor_sizes(key, value)
    if key == "TEST.CLASS_THRESHOLDS" and not all(0.0 <= _number(key, v) <= 1.0 for v in value):
        raise ValueError(f"config key {key} wants scores between 0 and 1, one per class; got {_shown(value)}")
    return _check_positive(key, value)


def _convert(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise ValueError(f"config key {key} is a section; got {_shown(value)}")
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"config key {key} wants true/false; got {_shown(value)}")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config key {key} wants a number; got {_shown(value)}")
        _number(key, value)
        if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"config key {key} wants a whole number; got {_shown(value)}")
        return type(default)(value)
    if isinstance(default, (list, tuple)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {key} wants a list; got {_shown(value)}")
        if default and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in default):
            for item in value:  # a list of numbers by default (scales, ratios, widths) holds numbers
                _number(key, item)
        return list(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"config key {key} wants a string; got {_shown(value)}")
    return value


# Keys of the original's config that have no meaning here (its own bookkeeping, or choices this
# project makes otherwise): its cfgs/*.yml files carry them, so they are accepted with a warning.
ORIGINAL_ONLY_KEYS = frozenset(
    {
        "EXP_DIR",
        "CROP_RESIZE_WITH_MAX_POOL",
        "PIXEL_MEANS",
        "EPS",
        "ROOT_DIR",
        "DATA_DIR",
        "MATLAB",
        "USE_GPU_NMS",
        "GPU_ID",
        "CUDA",
        "MAX_NUM_GT_BOXES",
        "DEDUP_BOXES",
        "RESNET.MAX_POOL",
        "MOBILENET.REGU_DEPTH",
        "MOBILENET.DEPTH_MULTIPLIER",
        "TRAIN.HAS_RPN",
        "TRAIN.PROPOSAL_METHOD",
        "TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED",
        "TRAIN.BBOX_NORMALIZE_TARGETS",
        "TRAIN.DISPLAY",
        "TRAIN.TRIM_HEIGHT",
        "TRAIN.TRIM_WIDTH",
        "TRAIN.SNAPSHOT_ITERS",
        "TRAIN.SNAPSHOT_KEPT",
        "TRAIN.SNAPSHOT_PREFIX",
        "TRAIN.SUMMARY_INTERVAL",
        "TRAIN.BBOX_REG",
        "TRAIN.BBOX_THRESH",
        "TRAIN.BBOX_INSIDE_WEIGHTS",
        "TRAIN.RPN_CLOBBER_POSITIVES",
        "TRAIN.RPN_POSITIVE_WEIGHT",
        "TRAIN.RPN_BBOX_INSIDE_WEIGHTS",
        "TRAIN.ASPECT_GROUPING",
        "TRAIN.USE_ALL_GT",
        "TRAIN.BN_TRAIN",
        "TRAIN.IMS_PER_BATCH",
        "TRAIN.GAMMA",
        "TRAIN.STEPSIZE",
        "TRAIN.USE_GT",
        "TEST.HAS_RPN",
        "TEST.PROPOSAL_METHOD",
        "TEST.MODE",
        "TEST.RPN_TOP_N",
        "TEST.SVM",
        "TEST.BBOX_REG",
    }
)
log = logging.getLogger("frcnn")


def without_original_only(data: Mapping[str, Any], source: str, prefix: str = "") -> dict:
    """`data` less the keys in ORIGINAL_ONLY_KEYS, with one warning line naming those found."""
    dropped: list[str] = []

    def keep(mapping: Mapping[str, Any], prefix: str) -> dict:
        out = {}
        for key, value in mapping.items():
            full = f"{prefix}{key}"
            if full in ORIGINAL_ONLY_KEYS:
                dropped.append(full)
            else:
                out[key] = keep(value, full + ".") if isinstance(value, Mapping) else value
        return out

    kept = keep(data, prefix)
    if dropped:
        log.warning("%s: keys of the original's config that mean nothing here, ignored: %s", source, ", ".join(dropped))
    return kept


# `ANCHOR_SCALES: auto`, `TRAIN.SCALES: auto` and `TILES.SIZE: auto`: chosen from the training
# data by the trainer (autofit/anchors.py, scale.py, tiles.py), which writes the numbers back, so
# a checkpoint never holds `auto`. Each key's value, `auto` aside: a list of numbers, or a number.
AUTO = "auto"
AUTO_KEYS = {"ANCHOR_SCALES": [0], "TRAIN.SCALES": [0], "TILES.SIZE": 0}


def _check_auto_key(key: str, value: Any) -> Any:
    """A key of AUTO_KEYS takes `auto` or what AUTO_KEYS says, whichever it holds now (the type
    check against the current value would refuse a number after `auto` and `auto` after a number)."""
    if value == AUTO:
        return value
    wanted = "a list of numbers" if isinstance(AUTO_KEYS[key], list) else "a number"
    if isinstance(value, str):
        raise ValueError(f"config key {key} wants {wanted} or {AUTO}; got {_shown(value)}")
    return _check_and_convert(key, value, AUTO_KEYS[key])


def merge_dict(cfg: EasyDict, overrides: Mapping[str, Any], prefix: str = "") -> None:
    """Merge `overrides` into `cfg` in place; unknown keys and wrong types raise ValueError."""
    for key, value in overrides.items():
        full = f"{prefix}{key}"
        if key not in cfg:
            close = difflib.get_close_matches(str(key), [str(k) for k in cfg], n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            shown = full if full.isprintable() and len(full) <= 80 else _shown(full)
            raise ValueError(f"unknown config key {shown}{hint}")
        if full in AUTO_KEYS:
            cfg[key] = _check_auto_key(full, value)
            continue
        value = _check_and_convert(full, value, cfg[key])
        if isinstance(cfg[key], Mapping):
            merge_dict(cfg[key], value, prefix=full + ".")
        else:
            cfg[key] = value


# A config file may name another that it builds on (`_BASE_: res50.yml`, relative to its own
# folder); the base is merged first, so the file only says what differs.
BASE_KEY = "_BASE_"


def merge_file(cfg: EasyDict, path: str | Path, _seen: tuple[Path, ...] = ()) -> None:
    """Merge a YAML file (read with yaml.safe_load) into `cfg`, after the file it names as _BASE_.
    Raises ConfigError, naming the file, for one that is missing, unreadable or not a config."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: {BASE_KEY} files name each other in a loop")
    data = _read_yaml(path)
    base = data.get(BASE_KEY)
    if base is not None:
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"{path}: {BASE_KEY} must name a config file; got {_shown(base)}")
        base_path = path.parent / base
        if not _is_file(base_path):
            raise ConfigError(f"{path}: its {BASE_KEY} {_shown(base)} is not a file ({base_path})")
        try:
            merge_file(cfg, base_path, (*_seen, path.resolve()))
        except ConfigError as e:  # a base's error says which file names it as its base
            raise ConfigError(f"{e} (the {BASE_KEY} of {path})") from None
    try:
        merge_dict(cfg, without_original_only({k: v for k, v in data.items() if k != BASE_KEY}, str(path)))
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name the file system cannot hold (a NUL, an unpaired surrogate)
        return False


def _read_yaml(path: Path) -> Mapping:
    """A config file's mapping; ConfigError, naming the file, for anything else."""
    if not _is_file(path):
        what = "is a folder, not a config file" if path.is_dir() else "not found"
        raise ConfigError(f"config file {path} {what}")
    data = read_yaml(Path(path), ConfigError, "a plain YAML config") or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys to values")
    return data


def large_scale_file(cfgs_dir: str | Path, net: str | None) -> Path:
    """--ls's config file: cfgs_dir/<net>_ls.yml if there is one, else cfgs_dir/large_scale.yml."""
    own = Path(cfgs_dir) / f"{net}_ls.yml"
    path = own if net and own.is_file() else Path(cfgs_dir) / "large_scale.yml"
    if not path.is_file():
        raise FileNotFoundError(f"--ls needs {path}")
    return path


def build_config(
    net: str,
    cfgs_dir: str | Path,
    profile: Mapping[str, Any] | None = None,
    cfg_file: str | Path | None = None,
    set_cfgs: Sequence[str] = (),
    large_scale: bool = False,
    class_agnostic: bool = False,
    profile_source: str | Path | None = None,
) -> EasyDict:
    """The merged configuration of a run; later sources win:
    defaults -> `profile` (the dataset's, data/datasets/factory.py) -> cfgs_dir/<net>.yml ->
    the large-scale file (large_scale: cfgs_dir/<net>_ls.yml if there is one, else large_scale.yml)
    -> cfg_file -> class_agnostic -> set_cfgs (KEY VALUE pairs). profile_source: the file the
    profile came from (a dataset YAML's `config:`), named by its errors."""
    cfgs_dir = Path(cfgs_dir)
    cfg = default_config()
    try:
        merge_dict(cfg, profile or {})
    except ValueError as e:
        if profile_source is None:
            raise
        raise ConfigError(f"{profile_source}: config: {e}") from None
    net_file = cfgs_dir / f"{net}.yml"
    if net_file.is_file():
        merge_file(cfg, net_file)
    if large_scale:
        merge_file(cfg, large_scale_file(cfgs_dir, net))
    if cfg_file:
        merge_file(cfg, cfg_file)
    if class_agnostic:
        cfg.CLASS_AGNOSTIC = True
    merge_pairs(cfg, set_cfgs)
    return cfg


def parse_literal(text: str) -> Any:
    """A `--set` value: a Python literal (number, list, bool) if it parses as one, else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def merge_pairs(cfg: EasyDict, pairs: Iterable[str]) -> None:
    """Merge `--set` pairs: KEY VALUE KEY VALUE ..., KEY dotted (TRAIN.SCALES)."""
    pairs = list(pairs)
    if len(pairs) % 2:
        raise ValueError(f"--set takes KEY VALUE pairs; got an odd number of words: {pairs}")
    for key, text in zip(pairs[0::2], pairs[1::2]):
        *sections, leaf = key.split(".")
        nested: dict = {leaf: parse_literal(text)}
        for section in reversed(sections):
            nested = {section: nested}
        merge_dict(cfg, without_original_only(nested, "--set"))


def to_plain(cfg: Mapping) -> dict:
    """A plain nested dict (no EasyDict), safe to store in a checkpoint or JSON."""
    return {k: to_plain(v) if isinstance(v, Mapping) else copy.deepcopy(v) for k, v in cfg.items()}


def from_plain(data: Mapping) -> EasyDict:
    """Rebuild a config from a stored plain dict on top of today's defaults (new keys keep defaults)."""
    cfg = default_config()
    merge_dict(cfg, _known_only(cfg, data))
    return cfg


def _known_only(cfg: Mapping, data: Mapping) -> dict:
    out = {}
    for k, v in data.items():
        if k in cfg:
            out[k] = _known_only(cfg[k], v) if isinstance(cfg[k], Mapping) and isinstance(v, Mapping) else v
    return out
