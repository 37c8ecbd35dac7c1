"""What a training run leaves to look at, in its checkpoint folder (<save_dir>/<net>/<dataset>/):

- metrics.jsonl: one JSON object per logged step ("kind": "train": loss terms, lr, images/s) and
  per evaluation ("kind": "eval": the metric, seconds), each with epoch, step, iteration and
  elapsed_s (wall-clock seconds since this process started training, evaluations included: the
  x axis of an AP-against-minutes curve; a resumed run counts from 0 again);
- curves.png: the losses and the evaluation metric against the iteration, redrawn after each
  evaluation and at the end;
- with --use_tfb, TensorBoard event files under tensorboard/session_<session>/ (the same figures).
Session 1 writes metrics.jsonl and curves.png; session N > 1 writes N_metrics.jsonl and N_curves.png,
so that sessions sharing a folder keep their own. A resumed run keeps the records up to the
checkpoint it resumed from and appends after them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .loop import Hook, Trainer

log = logging.getLogger("frcnn.train")
LOSS_TERMS = ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box", "loss")


class MetricsLog(Hook):
    """Args:
    run_dir: the run's checkpoint folder.
    session: the training session (names the files when it is not 1).
    main: whether this process writes (rank 0); the others do nothing.
    use_tfb: also write TensorBoard event files.
    resumed_at: the iteration a resumed run continues from (records after it are dropped); 0
        starts the files afresh.
    """

    def __init__(self, run_dir: Path, session: int, main: bool, use_tfb: bool = False, resumed_at: int = 0) -> None:
        prefix = "" if session == 1 else f"{session}_"
        self.path = run_dir / f"{prefix}metrics.jsonl"
        self.curves = run_dir / f"{prefix}curves.png"
        self.main = main
        self.tensorboard = None
        self.started = time.perf_counter()
        if not main:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in self.records() if r.get("iteration", 0) <= resumed_at] if resumed_at else []
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        if use_tfb:
            from torch.utils.tensorboard import SummaryWriter

            folder = run_dir / "tensorboard" / f"session_{session}"
            self.tensorboard = SummaryWriter(str(folder), purge_step=resumed_at or None)
            log.info("TensorBoard event files in %s: open them with  tensorboard --logdir %s", folder, folder.parent)

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def write(self, kind: str, t: Trainer, values: dict[str, float | str]) -> None:
        """One record of `kind` ("train" or "eval") at the trainer's current position."""
        if not self.main:
            return
        elapsed = round(time.perf_counter() - self.started, 1)
        record = {"kind": kind, "epoch": t.epoch, "step": t.step, "iteration": t.iteration, "elapsed_s": elapsed}
        record.update(values)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    tag = f"{kind}/{values['metric']}" if name == "value" else f"{kind}/{name}"
                    self.tensorboard.add_scalar(tag, value, t.iteration)
            self.tensorboard.flush()

    def before_train(self, t: Trainer) -> None:
        self.started = time.perf_counter()
        if self.main:
            log.info("metrics in %s, curves in %s", self.path, self.curves)

    def after_train(self, t: Trainer) -> None:
        if self.main:
            self.plot()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def plot(self) -> None:
        """curves.png: loss terms (and, once there are evaluations, the metric) against the iteration."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        records = self.records()
        train = [r for r in records if r["kind"] == "train"]
        evals = [r for r in records if r["kind"] == "eval"]
        fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6, 4), squeeze=False)
        left = axes[0, 0]
        for term in LOSS_TERMS:
            points = [(r["iteration"], r[term]) for r in train if term in r]
            if points:
                left.plot(*zip(*points), label=term, lw=2.0 if term == "loss" else 1.2)
        left.set(xlabel="iteration", ylabel="loss", title="training losses")
        if train:
            left.set_yscale("log")
            left.legend(fontsize=8)
        left.grid(alpha=0.3)
        if evals:  # the metric beside the losses
            right, name = axes[0, 1], evals[-1]["metric"]
            right.plot([r["iteration"] for r in evals], [r["value"] for r in evals], "o-")
            right.set(title=f"evaluation ({name}) on {evals[-1]['split']}", ylabel=name, xlabel="iteration")
            right.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.curves, dpi=90)
        plt.close(fig)
