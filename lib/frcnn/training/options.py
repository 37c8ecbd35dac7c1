"""What a training run is asked to do: trainval_net.py's flags as one value."""

from __future__ import annotations

from dataclasses import dataclass

BUDGET_KEEPS = 2


@dataclass
class TrainOptions:
    """trainval_net.py's flags (see its --help)."""

    dataset: str = "shapes"
    net: str = "tiny"
    batch_size: int = 1
    num_workers: int = 0
    lr: float | None = None
    lr_decay_step: int = 5
    lr_decay_gamma: float = 0.1
    epochs: int = 20
    start_epoch: int = 1
    optimizer: str | None = None  # sgd, or with a budget TRAIN.BUDGET_OPTIMIZER
    session: int = 1
    resume: bool = False
    checksession: int | None = None  # None: the session being trained
    checkepoch: int = 1
    checkpoint: int = 0
    save_dir: str = "models"
    data_dir: str = "data"
    disp_interval: int = 100
    checkpoint_interval: int = 0
    keep_checkpoints: int | None = None  # None: every one, or the last 2 with a budget
    eval_interval: int = 0
    accum: int = 1
    use_tfb: bool = False
    pretrained: str | None = None
    device: str = "cpu"
    seed: int | None = None
    amp: bool = False
    compile: bool = False
    strict: bool = False
    budget: float | None = None  # seconds (--budget 25m): planned from measured steps, budget.py

    def checkpoints_kept(self) -> int:
        """How many of the session's newest checkpoints stay (0: all). A budget run on a small
        dataset ends an epoch every few steps; keeping each would fill gigabytes (hundreds of
        checkpoints of a 25-minute run), so such runs keep the last two unless asked."""
        if self.keep_checkpoints is not None:
            return self.keep_checkpoints
        return BUDGET_KEEPS if self.budget else 0
