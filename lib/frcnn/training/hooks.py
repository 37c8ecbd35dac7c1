"""The jobs around the training loop, one class each (loop.Hook: the moments a hook sees)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from ..data.validate import check_dataset
from ..inference.evaluator import evaluate_detector, evaluation_split
from ..inference.torch_detector import Detector
from ..runs import distributed
from ..runs.checkpoint import checkpoint_dir, load_checkpoint, prune_checkpoints
from .loop import Hook, Trainer, unwrap

log = logging.getLogger("frcnn.train")


class LRSchedule(Hook):
    """Sets the learning rate of every step from the trainer's schedule (warm-up, decay)."""

    def before_step(self, t: Trainer) -> None:
        t.lr = t.schedule.apply(t.optimizer, t.epoch, t.iteration)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class LossWatch(Hook):
    """Keeps each step's loss terms on the device and reads them back only when asked
    (t.read_losses(): every disp_interval steps, and before every checkpoint). A non-finite loss
    found then stops every process with the step, the loss terms and the images of the first bad
    batch, before any checkpoint of the damaged weights is written."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.steps: list[tuple[int, list[int]]] = []  # (step, roidb indices of its batch)
        self.values: list[torch.Tensor] = []

    def before_train(self, t: Trainer) -> None:
        t.read_losses = self.read
        self.roidb = t.roidb

    def after_step(self, t: Trainer) -> None:
        self.names = list(t.losses)
        self.values.append(torch.stack([v.detach().float() for v in t.losses.values()]))
        self.steps.append((t.step, t.batch.indices))

    def read(self) -> dict[str, float]:
        """Mean of each term since the last read, and their sum as "loss" ({} if no step since).
        Raises NonFiniteLossError, in every process, if any process saw a non-finite loss."""
        error = None
        means: dict[str, float] = {}
        if self.values:
            values = torch.stack(self.values).cpu().numpy()
            bad = ~np.isfinite(values).all(axis=1)
            if bad.any():
                first = int(np.argmax(bad))
                step, indices = self.steps[first]
                images = [f"{self.roidb[i].id}" + (" (flipped)" if self.roidb[i].flipped else "") for i in indices]
                terms = ", ".join(f"{n}={v:.4g}" for n, v in zip(self.names, values[first]))
                error = (
                    f"non-finite loss at step {step}: {terms}; images of the batch: {', '.join(images)}. "
                    "No checkpoint was written after the last good one; try a lower --lr, or check these images."
                )
            else:
                means = dict(zip(self.names, values.mean(axis=0).tolist()))
                means["loss"] = float(values.sum(axis=1).mean())
        self.values, self.steps = [], []
        error = distributed.first_message(error)
        if error:
            raise NonFiniteLossError(error)
        return means


class ProgressLog(Hook):
    """Progress of the epoch: on a terminal a progress bar (loss terms, lr, images/s), elsewhere
    (a log file) a plain log line every disp_interval steps; a metrics record every
    disp_interval steps; and the epoch's log line."""

    def before_epoch(self, t: Trainer) -> None:
        self.images, self.padded, self.shown = 0, 0.0, {}
        self.started = time.perf_counter()
        self.plain = not sys.stderr.isatty()
        self.bar = tqdm(
            total=t.steps_per_epoch,
            initial=t.start_step,
            desc=f"epoch {t.epoch}/{t.opts.epochs}",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=self.plain or not t.world.is_main,
        )

    def rate(self, t: Trainer) -> float:
        return self.images * t.world.world_size / max(time.perf_counter() - self.started, 1e-9)

    def after_step(self, t: Trainer) -> None:
        self.images += len(t.batch.indices)
        self.padded += t.batch.padded_fraction * len(t.batch.indices)
        if t.step % t.opts.disp_interval == 0 or t.step == t.steps_per_epoch:
            self.shown = t.read_losses() or self.shown
            terms = " ".join(f"{k}={v:.3f}" for k, v in self.shown.items())
            self.bar.set_postfix_str(f"{terms} lr={t.lr:.2g} {self.rate(t):.1f} img/s")
            if self.plain:
                where = f"epoch {t.epoch} step {t.step}/{t.steps_per_epoch}"
                log.info("%s: %s lr=%.2g %.1f img/s", where, terms, t.lr, self.rate(t))
            t.metrics.write("train", t, {**self.shown, "lr": t.lr, "images_per_s": self.rate(t)})
        self.bar.update(1)

    def after_epoch(self, t: Trainer) -> None:
        self.bar.close()
        self.shown = t.read_losses() or self.shown
        log.info(
            "epoch %d: %s, lr %.3g, %.1f img/s, padding %.1f%% of batch pixels",
            t.epoch,
            " ".join(f"{k} {v:.4f}" for k, v in self.shown.items()),
            t.schedule.lr(t.epoch, t.iteration),
            self.rate(t),
            100.0 * self.padded / max(self.images, 1),
        )

    def after_train(self, t: Trainer) -> None:
        if getattr(self, "bar", None) is not None:
            self.bar.close()  # also when the run stopped on an error


class Checkpointer(Hook):
    """faster_rcnn_<session>_<epoch>_<step>.pth every checkpoint_interval steps and at each
    epoch's end, after reading the losses back (never a checkpoint of unchecked weights); at
    epoch ends, only the newest opts.checkpoints_kept() of the session stay (`best` always does)."""

    def after_step(self, t: Trainer) -> None:
        interval = t.opts.checkpoint_interval
        if interval and t.step % interval == 0 and t.step < t.steps_per_epoch:
            t.read_losses()
            t.last_saved = t.save(f"{t.epoch}_{t.step}") or t.last_saved

    def after_epoch(self, t: Trainer) -> None:
        t.read_losses()
        saved = t.save(f"{t.epoch}_{t.step}")
        if saved is None:
            return
        t.last_saved = saved
        log.info("saved %s", saved)
        keep, o = t.opts.checkpoints_kept(), t.opts
        if keep:
            for path in prune_checkpoints(o.save_dir, o.net, o.dataset, o.session, keep):
                log.debug("removed %s (--keep_checkpoints %d)", path, keep)


class PeriodicEvaluation(Hook):
    """--eval_interval N: evaluate with the dataset's metric every N epochs and after the last,
    on its val split (else the test split, with a warning), across processes; log it apart from
    the training time, record it, redraw the curves, and keep faster_rcnn_<session>_best.pth."""

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.best: float | None = None

    def before_train(self, t: Trainer) -> None:
        self.dataset, is_val = evaluation_split(t.opts.dataset, t.opts.data_dir, t.cfg.VG_VERSION)
        d = self.dataset  # checked once; every evaluation detects on the images that passed
        self.records = check_dataset(
            d.name, d.records, d.issues, d.num_classes, t.opts.data_dir, None, main=t.world.is_main
        ).kept
        if not is_val:
            log.warning(
                "evaluating on the test split %s during training: choosing the best checkpoint by it is "
                "optimistic about the test result; name a val split in the dataset YAML to avoid it",
                self.dataset.name,
            )
        self.best = previous_best(t) if t.opts.resume else None

    def after_epoch(self, t: Trainer) -> None:
        if t.epoch % self.interval and t.epoch != t.opts.epochs:
            return
        started = time.perf_counter()
        model = unwrap(t.model)
        model.eval()
        average = t.weight_average.applied(model) if t.weight_average else contextlib.nullcontext()
        with average:
            detector = Detector(model, t.cfg, t.classes, t.opts.net, None, t.device)
            evaluation = evaluate_detector(detector, self.dataset, self.records, t.world, t.opts.batch_size)
        model.train()
        if evaluation is None:  # not rank 0
            return
        value, seconds = float(evaluation.mean_ap), time.perf_counter() - started
        log.info(
            "evaluation after epoch %d: %s %.4f on %s (%d images), %.1f s (not counted in training's img/s)",
            t.epoch,
            evaluation.metric,
            value,
            self.dataset.name,
            len(self.records),
            seconds,
        )
        record = {"value": value, "seconds": seconds, "metric": evaluation.metric, "split": self.dataset.name}
        t.metrics.write("eval", t, record)
        t.metrics.plot()
        if self.best is None or value > self.best:
            self.best = value
            saved = t.save("best", best={**record, "epoch": t.epoch})
            log.info("best so far (%s %.4f): %s", evaluation.metric, value, saved)


def previous_best(t: Trainer) -> float | None:
    """The metric of the session's best checkpoint, when a resumed run has one."""
    path = checkpoint_dir(t.opts.save_dir, t.opts.net, t.opts.dataset) / f"faster_rcnn_{t.opts.session}_best.pth"
    if not path.is_file():
        return None
    return float(load_checkpoint(path).get("best", {}).get("value", float("-inf")))
