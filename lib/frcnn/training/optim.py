"""Optimiser and learning-rate schedule, as the original set them up.

SGD with momentum; weight decay on weights only; biases at twice the learning rate
(TRAIN.DOUBLE_BIAS) and without decay (unless TRAIN.BIAS_DECAY); normalisation scales without decay.
The learning rate is multiplied by gamma every `decay_step` epochs: epochs 1..decay_step at the
base rate, the next decay_step epochs at base x gamma, and so on (the original decayed one epoch
late, when epoch % (decay_step + 1) == 0).
"""

from __future__ import annotations

import logging
import math
import weakref
from dataclasses import asdict, dataclass
from functools import partial

import torch
from easydict import EasyDict
from torch import nn

from ..runs.checkpoint import CheckpointError
from .options import TrainOptions

log = logging.getLogger(__name__)


def build_optimizer(model: nn.Module, cfg: EasyDict, kind: str, lr: float) -> torch.optim.Optimizer:
    """SGD (kind 'sgd') or Adam ('adam') over the trainable parameters, in groups: weights,
    normalisation scales and biases, each split by the `lr_mult` attribute of the module a
    parameter belongs to (deformable pooling's offset layer learns at 0.01x). Each group's
    `lr_mult` scales the scheduled LR."""
    module_mult = {id(p): float(m.lr_mult) for m in model.modules() if hasattr(m, "lr_mult") for p in m.parameters()}
    t = cfg.TRAIN
    kinds = {
        "weights": (t.WEIGHT_DECAY, 1.0),
        "norms": (0.0, 1.0),
        "biases": (t.WEIGHT_DECAY if t.BIAS_DECAY else 0.0, 2.0 if t.DOUBLE_BIAS else 1.0),
    }
    grouped: dict[tuple[str, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind_of = "biases" if name.rsplit(".", 1)[-1] == "bias" else "norms" if p.dim() == 1 else "weights"
        grouped.setdefault((kind_of, module_mult.get(id(p), 1.0)), []).append(p)
    order = list(kinds)
    groups = [
        {"params": params, "weight_decay": kinds[k][0], "lr_mult": kinds[k][1] * mult}
        for (k, mult), params in sorted(grouped.items(), key=lambda item: (item[0][1] != 1.0, order.index(item[0][0])))
    ]
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    # The fused kernels update each tensor in one pass: no temporary copy of the gradient for weight
    # decay (411 MB for VGG16's fc6), measured 0.4 -> 0.1 s per SGD step for VGG16 on a 2-core CPU.
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=t.MOMENTUM, fused=True)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, fused=True)
    raise ValueError(f"--o must be sgd or adam; got {kind!r}")


class StepInBackward:
    """Update each large parameter as soon as backward has accumulated its gradient, then free
    that gradient, so the large gradients never all exist at once.

    VGG16 holds 550 MB of gradients, 411 MB of them fc6's; updating in backward lowered its peak
    training memory at 600 px from 1585 to 1171 MiB on CPU (docs/training.md, Speed and memory). The
    arithmetic is the optimizer's own, applied one parameter at a time (the fused SGD and Adam
    kernels work elementwise, so the result equals a single optimizer.step()), and the state stays in
    `optimizer`: its state_dict, checkpoints and resume are unchanged. Use it exactly as before:
    zero_grad, backward, optimizer.step(); that step then updates the small parameters (biases,
    norms), whose gradients are still there, and skips the others, which have none. Each hook costs
    about 0.1 ms of Python, so tensors under `min_numel` elements are left to that step.

    It cannot be used where an update needs every gradient first: clipping by global norm,
    float16 loss scaling (a gradient scaler checks all gradients for inf before any update), and
    DistributedDataParallel (gradients are averaged across processes after accumulation);
    `unusable_because` says which applies. Keep the object as long as the training runs: the
    hooks hold it weakly, and without it the update goes back to optimizer.step().
    """

    def __init__(self, optimizer: torch.optim.Optimizer, min_numel: int = 2**20) -> None:
        self.optimizer = optimizer
        # Per hooked parameter: a one-parameter optimizer of the same kind and its group's index.
        # At each call it borrows the main optimizer's current group settings and state, which
        # the learning-rate schedule and load_state_dict (a resume) replace.
        self._singles: list[tuple[torch.optim.Optimizer, int]] = []
        # The hooks hold this object weakly: a hook lives inside its parameter, out of the garbage
        # collector's sight, so a strong reference would keep model and optimizer alive forever.
        # Once this object is dropped the hooks do nothing and optimizer.step() updates everything.
        this = weakref.ref(self)
        for index, group in enumerate(optimizer.param_groups):
            for p in group["params"]:
                if p.numel() >= min_numel:
                    p.register_post_accumulate_grad_hook(partial(_step_in_backward, this, len(self._singles)))
                    self._singles.append((type(optimizer)([dict(group, params=[p])]), index))

    def __len__(self) -> int:
        """How many parameters are updated in backward."""
        return len(self._singles)

    def step(self, slot: int, p: torch.Tensor) -> None:
        """Update hooked parameter number `slot` (p) from its gradient, then free the gradient."""
        single, group_index = self._singles[slot]
        single.state = self.optimizer.state
        group = self.optimizer.param_groups[group_index]
        single.param_groups[0].update((k, v) for k, v in group.items() if k != "params")
        single.step()
        p.grad = None

    @staticmethod
    def unusable_because(
        clip_grad_norm: float, scaling_gradients: bool, distributed: bool, accumulating: bool = False
    ) -> str | None:
        """None if updates can run in backward, else why not."""
        if accumulating:
            return "--accum adds several backward passes' gradients before each update"
        if clip_grad_norm > 0:
            return "gradient clipping (TRAIN.CLIP_GRAD_NORM) needs every gradient first"
        if scaling_gradients:
            return "float16 loss scaling checks every gradient for inf first"
        if distributed:
            return "gradients are averaged across processes after backward"
        return None


def _step_in_backward(owner: weakref.ref, slot: int, p: torch.Tensor) -> None:
    step_in_backward = owner()
    if step_in_backward is not None:
        step_in_backward.step(slot, p)


def step_in_backward_if_usable(
    optimizer: torch.optim.Optimizer,
    cfg: EasyDict,
    scaling_gradients: bool,
    distributed: bool,
    accumulating: bool = False,
) -> StepInBackward | None:
    """StepInBackward(optimizer) where TRAIN.STEP_IN_BACKWARD asks for it and the run allows it."""
    if not cfg.TRAIN.STEP_IN_BACKWARD:
        return None
    why_not = StepInBackward.unusable_because(cfg.TRAIN.CLIP_GRAD_NORM, scaling_gradients, distributed, accumulating)
    if why_not:
        log.info("parameters are updated after backward, not during it: %s", why_not)
        return None
    return StepInBackward(optimizer)


@dataclass
class StepSchedule:
    """LR at (epoch, iteration), times a linear warm-up from warmup_factor to 1 over the first
    warmup_iters iterations of the run:
    - "step": base x gamma^((epoch - 1) // decay_step);
    - "cosine": base x (1 + cos(pi x iteration / total_iters)) / 2, from base to 0 at the end.

    base_lr: the starting learning rate (--lr).
    decay_step: epochs between decays (--lr_decay_step; step only).
    gamma: decay factor (--lr_decay_gamma; step only).
    warmup_iters, warmup_factor: TRAIN.WARMUP_ITERS, TRAIN.WARMUP_FACTOR.
    kind: "step" or "cosine" (TRAIN.LR_SCHEDULE).
    total_iters: the run's iterations, epochs x steps per epoch (cosine only).
    """

    base_lr: float
    decay_step: int
    gamma: float
    warmup_iters: int = 0
    warmup_factor: float = 0.1
    kind: str = "step"
    total_iters: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("step", "cosine"):
            raise ValueError(f"TRAIN.LR_SCHEDULE must be step or cosine; got {self.kind!r}")

    def lr(self, epoch: int, iteration: int) -> float:
        if self.kind == "cosine":
            progress = min(iteration / max(self.total_iters, 1), 1.0)
            lr = self.base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
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


def optimiser_recipe(opts: TrainOptions, cfg: EasyDict, resumed_kind: str | None = None) -> tuple[str, float, int]:
    """(optimiser, learning rate, warm-up iterations): --o and --lr where given; else a resumed
    run's optimiser (`resumed_kind`; its learning rate comes back with the schedule), a --budget
    run's short-schedule recipe (TRAIN.BUDGET_*), or SGD at TRAIN.LEARNING_RATE. Budget runs warm
    up over at least BUDGET_WARMUP_ITERS (the budget caps it at a tenth of the planned steps)."""
    t = cfg.TRAIN
    if resumed_kind and opts.optimizer and opts.optimizer != resumed_kind:
        raise CheckpointError(f"--r: the checkpoint was trained with {resumed_kind}, not --o {opts.optimizer}")
    if opts.budget is None:
        kind = opts.optimizer or resumed_kind or "sgd"
        return kind, t.LEARNING_RATE if opts.lr is None else opts.lr, t.WARMUP_ITERS
    kind = opts.optimizer or resumed_kind or t.BUDGET_OPTIMIZER
    recipe_lr = t.BUDGET_LEARNING_RATE if kind == t.BUDGET_OPTIMIZER else t.LEARNING_RATE
    lr = recipe_lr if opts.lr is None else opts.lr
    log.info("budget run: %s at learning rate %g (--o and --lr choose others)", kind, lr)
    return kind, lr, max(t.WARMUP_ITERS, t.BUDGET_WARMUP_ITERS)
