"""--budget 25m: train for a wall-clock budget instead of an epoch count.

The first steps are timed; from their median the run plans how many steps fit in the budget,
less a reserve for checkpoints and the evaluations --eval_interval asks for, and lays the
learning-rate schedule over exactly those steps: the configured warm-up (at most a tenth of
them), then a cosine decay to zero at the last planned step (a step schedule counted in epochs
means nothing for a run whose length is known only once it runs). The run stops at the planned
step, or earlier when the time left would not cover the reserve (in one process only: the
processes of a distributed run stop together at rank 0's planned step), and then saves its
checkpoint (and evaluates) as at an epoch's end; the log says how many epochs that made.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import statistics
import time

import torch

from .hooks import PeriodicEvaluation
from .loop import Hook, Trainer

log = logging.getLogger("frcnn.train")

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
RESERVE_SHARE = 0.03  # of the budget, kept for checkpoint writing and the last steps' variance
EVAL_COST = 0.5  # an image's evaluation costs about this share of its training step
WARMUP_SHARE = 0.1  # the configured warm-up, but at most this share of the planned steps
REPLAN_UNTIL = 0.5  # re-plan at epoch ends until this share of the planned steps is done
REPLAN_TOLERANCE = 0.02  # ... when the new plan differs by more than this share


MAX_BUDGET = 366 * 24 * 3600.0  # a year: a longer budget is a typo (and later arithmetic overflows)


class BudgetError(ValueError, argparse.ArgumentTypeError):
    """A --budget that is no duration. An ArgumentTypeError too, so argparse prints this message
    rather than its own "invalid parse_budget value"."""


def parse_budget(text: str) -> float:
    """'25m', '2h', '90s', '1h30m' -> seconds (a bare number is minutes); more than zero and at
    most a year, else BudgetError."""
    text = text.strip().lower()
    refused = BudgetError(
        f"--budget {text[:40]!r}: give a duration such as 25m, 2h, 90s or 1h30m (more than 0, at most a year)"
    )
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text) * 60.0
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([smh])", text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise refused
        seconds = sum(float(n) * UNITS[u] for n, u in parts)
    if not 0 < seconds <= MAX_BUDGET:  # a 400-digit number is inf, which this refuses too
        raise refused
    return seconds


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _from_main(value: int, t: Trainer) -> int:
    """Rank 0's value in every process (each measures its own step time)."""
    if not t.world.distributed:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return int(box[0])


class WallClockBudget(Hook):
    """Plans the run's length from measured step times and stops it inside the budget.

    Args:
        seconds: the budget, from the start of training (model built, data loaded).
        timed_steps: steps timed before planning (the first `skip` are left out: allocator and
            cache warm-up make them slow).
    """

    def __init__(self, seconds: float, timed_steps: int = 10, skip: int = 2) -> None:
        self.seconds, self.timed_steps, self.skip = seconds, timed_steps, skip
        self.durations: list[float] = []
        self.planned: int | None = None

    def before_train(self, t: Trainer) -> None:
        self.started = self.last = time.perf_counter()
        self.first_iteration = t.iteration
        self.configured_warmup = t.schedule.warmup_iters
        t.opts.epochs = t.epoch  # extended once the step time is known

    def after_step(self, t: Trainer) -> None:
        now = time.perf_counter()
        if t.iteration - self.first_iteration > self.skip:
            self.durations.append(now - self.last)
        self.last = now
        if self.planned is None and (len(self.durations) >= self.timed_steps or t.step == t.steps_per_epoch):
            self.plan(t)
        # Processes of one run stop together: there, only at the planned step (rank 0's plan).
        late = not t.world.distributed and self.time_left() < self.reserve(t)
        if self.planned is not None and (t.iteration >= self.planned or late):
            t.stopping = True
            t.opts.epochs = t.epoch  # this epoch is the last: its end saves (and evaluates)

    def time_left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)

    def step_time(self) -> float:
        return statistics.median(self.durations) if self.durations else time.perf_counter() - self.started

    def reserve(self, t: Trainer, evaluations: int = 1) -> float:
        """Seconds kept for checkpoints and `evaluations` evaluations (with --eval_interval)."""
        kept = RESERVE_SHARE * self.seconds
        for hook in t.hooks:
            if isinstance(hook, PeriodicEvaluation):
                per_image = self.step_time() / t.opts.batch_size * EVAL_COST
                kept += evaluations * per_image * len(hook.records) / t.world.world_size
        return kept

    def steps_that_fit(self, t: Trainer, step: float) -> int:
        """Steps of `step` seconds that fit in the time left, less the reserve (the evaluations
        --eval_interval will make included), the same number in every process."""
        steps = max(int((self.time_left() - self.reserve(t)) / step), 0)
        interval = next((h.interval for h in t.hooks if isinstance(h, PeriodicEvaluation)), 0)
        if interval:  # one evaluation per `interval` epochs and one at the end
            evaluations = 1 + (t.step + steps) // (t.steps_per_epoch * interval)
            steps = max(int((self.time_left() - self.reserve(t, evaluations)) / step), 0)
        return _from_main(steps, t)

    def plan(self, t: Trainer, step: float | None = None, timed: int | None = None) -> None:
        """Lay the cosine schedule over the steps that fit at `step` seconds a step (default: the
        median of the steps timed so far)."""
        step, timed = step or self.step_time(), timed or len(self.durations)
        steps = self.steps_that_fit(t, step)
        self.planned = t.iteration + steps
        t.opts.epochs = t.epoch + max(math.ceil((t.step + steps) / t.steps_per_epoch) - 1, 0)
        epochs = (self.planned - self.first_iteration) / t.steps_per_epoch  # in this run
        t.schedule.kind, t.schedule.total_iters = "cosine", self.planned
        t.schedule.warmup_iters = min(self.configured_warmup, int(WARMUP_SHARE * self.planned))
        log.info(
            "budget %s: %.2f s per step (median of %d) -> %d more steps (%.2f epochs of %d steps in all, to epoch %d); "
            "learning rate: warm-up over %d steps, then cosine to 0 at step %d; %s kept for checkpoints and evaluation",
            format_duration(self.seconds),
            step,
            timed,
            steps,
            epochs,
            t.steps_per_epoch,
            t.opts.epochs,
            t.schedule.warmup_iters,
            self.planned,
            format_duration(self.reserve(t)),
        )

    def after_epoch(self, t: Trainer) -> None:
        """Plan again from the last epoch's step time while less than REPLAN_UNTIL of the plan is
        done: the first steps timed are often slower than the run settles to (here 1.41 s against
        1.2 s), and a plan made once ended a 5-minute run 48 s early. Later changes would move the
        learning rate where it is already small, and late slow-downs are the stop rule's to catch."""
        if self.planned is None or t.stopping or t.opts.epochs <= t.epoch:
            return
        done, planned = t.iteration - self.first_iteration, self.planned - self.first_iteration
        recent = self.durations[-max(self.timed_steps, t.steps_per_epoch) :]
        if done >= REPLAN_UNTIL * planned or len(recent) < self.timed_steps:
            return
        step = statistics.median(recent)
        if abs(self.steps_that_fit(t, step) + t.iteration - self.planned) > REPLAN_TOLERANCE * planned:
            self.plan(t, step, len(recent))

    def after_train(self, t: Trainer) -> None:
        done = t.iteration - self.first_iteration
        log.info(
            "budget %s: trained %d steps (%.2f epochs) in %s",
            format_duration(self.seconds),
            done,
            done / max(t.steps_per_epoch, 1),
            format_duration(time.perf_counter() - self.started),
        )
