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
from .base import BackboneSpec


class WeightFileError(ValueError):
    """A weight file that cannot be read, or does not fit the chosen network."""


def find_weights(spec: BackboneSpec, data_dir: str | Path = "data") -> Path | None:
    """The first existing default weight file of a backbone, or None."""
    candidates = []
    if spec.caffe_file:
        candidates.append(Path(data_dir) / "pretrained_model" / spec.caffe_file)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    candidates += [hub / name for name in spec.torchvision_files]
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


def check_fit(
    model: nn.Module, weights: Mapping[str, torch.Tensor], spec: BackboneSpec, path: Path
) -> dict[str, torch.Tensor]:
    """The weights `model` will load, after checking every key and shape it needs is there
    (keys under spec.unused_prefixes may be missing).

    Raises WeightFileError naming the missing, unexpected and mis-shaped keys.
    """
    net = spec.name
    expected = model.state_dict()
    unused = spec.unused_prefixes
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
