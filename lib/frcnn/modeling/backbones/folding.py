"""Frozen batch norms folded into the convolutions in front of them.

A FrozenBatchNorm2d after a convolution is a fixed affine map per channel, y = x * s + t with
s = weight / sqrt(running_var + eps) and t = bias - running_mean * s (torchvision's own formula):
a multiply and an add over the whole activation, which took about a third of mobilenet_v2's CPU
inference in a profile (the convolutions, half). Folded, the convolution computes with weight * s
and bias * s + t, and the norm hands its input on unchanged: the same arithmetic in one pass.

The norm keeps its buffers, so state_dict keys, weight files and checkpoints are as before, and
the convolution reads the norm's buffers at every call, so loading weights or moving the model
needs nothing more. Gradients reach the convolution's weight through the product. The results
equal the unfolded ones up to float rounding. Folding swaps the two modules' classes in place
(the parameters, buffers and hooks stay where they are); `unfold_frozen_norms` swaps them back.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d


class FoldedConv2d(nn.Conv2d):
    """A Conv2d followed by the FrozenBatchNorm2d in `self.folded_norm[0]`, in one convolution."""

    folded_norm: tuple[FrozenBatchNorm2d]  # a tuple: the norm stays a child of its own parent only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.folded_norm[0]
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
        shift = norm.bias - norm.running_mean * scale
        if self.bias is not None:
            shift = shift + self.bias * scale
        return self._conv_forward(x, self.weight * scale.reshape(-1, 1, 1, 1), shift)


class FoldedNorm(FrozenBatchNorm2d):
    """A FrozenBatchNorm2d whose map the convolution before it applies."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fold_frozen_norms(module: nn.Module) -> int:
    """Fold every FrozenBatchNorm2d that directly follows a Conv2d: the next child of an
    nn.Sequential, or convK -> bnK children of one module (ResNet's blocks). Returns how many."""
    folded = 0
    for conv, norm in _conv_norm_pairs(module):
        if type(conv) is nn.Conv2d and type(norm) is FrozenBatchNorm2d and conv.out_channels == len(norm.weight):
            conv.__class__, norm.__class__ = FoldedConv2d, FoldedNorm
            conv.folded_norm = (norm,)
            folded += 1
    return folded


def unfold_frozen_norms(module: nn.Module) -> None:
    """Undo fold_frozen_norms (for a comparison with the unfolded model)."""
    for child in module.modules():
        if type(child) is FoldedConv2d:
            child.__class__ = nn.Conv2d
            del child.folded_norm
        elif type(child) is FoldedNorm:
            child.__class__ = FrozenBatchNorm2d


def _conv_norm_pairs(module: nn.Module) -> Iterator[tuple[nn.Module, nn.Module]]:
    """(conv, norm) candidates: neighbours in a Sequential, or children named convK and bnK."""
    for parent in module.modules():
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            ordered = list(children.values())
            yield from zip(ordered, ordered[1:])
            continue
        for name, child in children.items():
            norm = children.get("bn" + name.removeprefix("conv")) if name.startswith("conv") else None
            if norm is not None:
                yield child, norm
