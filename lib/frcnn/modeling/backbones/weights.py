"""Finding, reading and checking pretrained backbone weights.

Where weights come from, in order: the file given by `--pretrained PATH`; the original's Caffe
conversions in data/pretrained_model/ (vgg16_caffe.pth, resnet101_caffe.pth); torchvision's file in
the torch hub cache (where `torchvision.models.vgg16(weights="DEFAULT")` downloads it). Nothing is
downloaded here. Files are read with torch.load(weights_only=True): a file that needs to run code
to load is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ...utils.safe_load import UnreadableFileError, UnsafeFileError, safe_torch_load

# torchvision's ImageNet weight files, as its weight enums name them.
TORCHVISION_FILES = {
    "vgg16": ["vgg16-397923af.pth"],
    "res50": ["resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"],
    "res101": ["resnet101-63fe2227.pth"],
    "res152": ["resnet152-394f9c45.pth"],
    "mobilenet_v2": ["mobilenet_v2-b0353104.pth"],
}
# The original's Caffe-converted files (data/pretrained_model/).
CAFFE_FILES = {
    "vgg16": "vgg16_caffe.pth",
    "res50": "resnet50_caffe.pth",
    "res101": "resnet101_caffe.pth",
    "res152": "resnet152_caffe.pth",
}
# Keys of torchvision's classifiers, which detection never uses: a file may lack them.
UNUSED_PREFIXES = {
    "vgg16": ("classifier.6.",),
    "res50": ("fc.",),
    "res101": ("fc.",),
    "res152": ("fc.",),
    "mobilenet_v2": ("classifier.",),
}


class WeightFileError(ValueError):
    """A weight file that cannot be read, or does not fit the chosen network."""


def find_weights(net: str, data_dir: str | Path = "data") -> Path | None:
    """The first existing default weight file for `net`, or None."""
    candidates = []
    if net in CAFFE_FILES:
        candidates.append(Path(data_dir) / "pretrained_model" / CAFFE_FILES[net])
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    candidates += [hub / name for name in TORCHVISION_FILES.get(net, [])]
    return next((c for c in candidates if c.is_file()), None)


def weight_format(path: Path, configured: str = "auto") -> str:
    """'caffe' or 'torchvision': as configured, or from the file name when 'auto'."""
    if configured not in ("auto", "caffe", "torchvision"):
        raise ValueError(f"PRETRAINED_FORMAT must be auto, caffe or torchvision; got {configured!r}")
    if configured != "auto":
        return configured
    return "caffe" if "caffe" in path.name.lower() else "torchvision"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file, unwrapped from {'state_dict': ...} / {'model': ...} and without
    DataParallel's 'module.' prefix."""
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {path}")
    try:
        data = safe_torch_load(path)
    except (UnsafeFileError, UnreadableFileError) as e:
        raise WeightFileError(str(e)) from None
    for key in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightFileError(f"{path}: expected a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in data.items()}


def check_fit(model: nn.Module, weights: Mapping[str, torch.Tensor], net: str, path: Path) -> dict[str, torch.Tensor]:
    """The weights `model` will load, after checking every key and shape it needs is there.

    Raises WeightFileError naming the missing, unexpected and mis-shaped keys.
    """
    expected = model.state_dict()
    unused = UNUSED_PREFIXES.get(net, ())
    weights = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in weights and not k.startswith(unused)]
    unexpected = [k for k in weights if k not in expected]
    wrong_shape = [
        f"{k} (file {tuple(weights[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in weights and weights[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        lines = [f"{path} does not fit --net {net}:"]
        for title, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", wrong_shape),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                lines.append(f"  {title}: {shown}")
        raise WeightFileError("\n".join(lines))
    return {k: v for k, v in weights.items() if k in expected}
