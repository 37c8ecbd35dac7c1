"""--budget: the run's length planned from measured step times, on a clock the test drives."""

from __future__ import annotations

import logging
import math
import types

import pytest
import torch
from conftest import CFGS, SMALL_NET

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.runs.checkpoint import CheckpointError, load_checkpoint
from frcnn.training import budget
from frcnn.training.build import TrainOptions, build_trainer
from frcnn.training.loop import Hook
from frcnn.training.optim import optimiser_recipe
from frcnn.training.resume import saved_optimizer_kind


@pytest.mark.parametrize(
    "text, seconds", [("25m", 1500), ("2h", 7200), ("90s", 90), ("1h30m", 5400), ("10", 600), ("0.5h", 1800)]
)
def test_budgets_are_read_as_durations(text, seconds):
    assert budget.parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["abc", "5x", "0m", "m", "25 m 3"])
def test_a_budget_that_is_no_duration_is_refused(text):
    with pytest.raises(ValueError, match="give a duration such as 25m"):
        budget.parse_budget(text)


@pytest.mark.parametrize("text", ["0", "0.0", "0s", "0h0m", "9" * 400, "367d", "9000h"])
def test_a_budget_of_nothing_or_of_more_than_a_year_is_refused(text):
    """0 and 0.0 were 0 s; 400 digits were inf, and an OverflowError later in the run."""
    with pytest.raises(budget.BudgetError, match="give a duration such as 25m"):
        budget.parse_budget(text)


def test_the_command_line_shows_the_budgets_own_message(capsys):
    """argparse said "invalid parse_budget value: '0'" for a ValueError; it prints an
    ArgumentTypeError's own message."""
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("trainval_net", ROOT / "trainval_net.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as info:
        script.parse_args(["--budget", "0"])
    assert info.value.code == 2
    assert "--budget '0': give a duration such as 25m, 2h, 90s or 1h30m" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.parse_args(["--keep_checkpoints", "-1"])
    assert "--keep_checkpoints: expected a whole number >= 0; got '-1'" in capsys.readouterr().err
    assert script.parse_args(["--budget", "5m"]).keep_checkpoints is None  # 2 with a budget: TrainOptions


class Clock(Hook):
    """Stands in for time.perf_counter in budget.py: each step takes `step_seconds(iteration)`."""

    def __init__(self, step_seconds) -> None:
        self.now, self.step_seconds = 0.0, step_seconds

    def before_step(self, t) -> None:
        self.now += self.step_seconds(t.iteration)


def budgeted_run(small_shapes_root, tmp_path, monkeypatch, seconds: float, step_seconds):
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=SMALL_NET)
    opts = TrainOptions(
        batch_size=4, epochs=99, save_dir=str(tmp_path), data_dir=str(small_shapes_root.parent), budget=seconds
    )
    clock = Clock(step_seconds)
    monkeypatch.setattr(budget, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    t = build_trainer(opts, cfg)
    t.hooks.insert(0, clock)
    return t, t.train()


def test_the_run_is_planned_from_the_measured_steps_and_ends_at_the_plan(
    small_shapes_root, tmp_path, monkeypatch, caplog
):
    # 12 steps an epoch, 1 s each: planned after the first epoch (12 s) with 40 - 12 - 1.2 (3%
    # kept) = 26.8 s left: 26 more steps, to step 38 = epoch 4 step 2.
    with caplog.at_level(logging.INFO, logger="frcnn.train"):
        t, last = budgeted_run(small_shapes_root, tmp_path, monkeypatch, 40, lambda i: 1.0)
    planned = (
        "budget 0m40s: 1.00 s per step (median of 10) -> 26 more steps (3.17 epochs of 12 steps in all, to epoch 4)"
    )
    assert planned in caplog.text
    assert "budget 0m40s: trained 38 steps (3.17 epochs) in 0m38s" in caplog.text
    assert last.name == "faster_rcnn_1_4_2.pth" and t.iteration == 38
    # a budget run keeps its two newest checkpoints, not one per epoch
    assert sorted(p.name for p in last.parent.glob("*.pth")) == ["faster_rcnn_1_3_12.pth", "faster_rcnn_1_4_2.pth"]
    assert (t.schedule.kind, t.schedule.total_iters) == ("cosine", 38)
    assert load_checkpoint(last)["iteration"] == 38 and load_checkpoint(last)["optimizer_kind"] == "adam"
    elapsed = [r["elapsed_s"] for r in t.metrics.records()]  # the x axis of AP-against-minutes curves
    assert elapsed and elapsed == sorted(elapsed) and elapsed[0] >= 0
    # resumed without --budget, the run keeps the Adam it was trained with (its state fits no SGD)
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=SMALL_NET)
    resumed = build_trainer(TrainOptions(**{**vars(t.opts), "budget": None, "resume": True, "epochs": 5}), cfg)
    assert isinstance(resumed.optimizer, torch.optim.Adam) and resumed.iteration == 38
    # the last step's learning rate: the cosine's value one step before its zero, at the planned end
    assert t.lr == t.schedule.lr(4, 37) < 0.002 * t.schedule.base_lr
    assert t.schedule.lr(2, 19) == pytest.approx(0.5 * t.schedule.base_lr * (1 + math.cos(math.pi * 19 / 38)))


def test_steps_slower_than_measured_stop_the_run_inside_the_budget(small_shapes_root, tmp_path, monkeypatch):
    # Planned for 1 s steps to step 38; from step 13 they take 3 s: after k of them 40 - (12 + 3k)
    # < 1.2 first at k = 9, so the run ends at step 21 (epoch 2, step 9) and saves there.
    t, last = budgeted_run(small_shapes_root, tmp_path, monkeypatch, 40, lambda i: 1.0 if i < 12 else 3.0)
    assert last.name == "faster_rcnn_1_2_9.pth" and t.iteration == 21


def test_the_plan_follows_steps_that_settle_faster_than_the_first_ones(
    small_shapes_root, tmp_path, monkeypatch, caplog
):
    # First epoch 1.5 s a step, then 1 s. Planned at step 12 (18 s gone): (80 - 18 - 2.4) / 1.5 ->
    # 39 more, to step 51. At epoch 2's end (30 s, less than half the plan done) the last epoch's
    # 1 s steps re-plan it: (80 - 30 - 2.4) / 1 -> 47 more, to step 71 = epoch 6 step 11, instead
    # of stopping at step 51 with 20 s of the budget unused.
    with caplog.at_level(logging.INFO, logger="frcnn.train"):
        t, last = budgeted_run(small_shapes_root, tmp_path, monkeypatch, 80, lambda i: 1.5 if i < 12 else 1.0)
    assert "1.50 s per step (median of 10) -> 39 more steps" in caplog.text
    assert "1.00 s per step (median of 12) -> 47 more steps" in caplog.text
    assert last.name == "faster_rcnn_1_6_11.pth" and t.iteration == 71
    assert (t.schedule.kind, t.schedule.total_iters) == ("cosine", 71)


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({}, ("sgd", 0.001, 0)),  # no budget: the original's recipe
        ({"budget": 60.0}, ("adam", 0.0003, 100)),  # the short-schedule recipe
        ({"budget": 60.0, "optimizer": "sgd"}, ("sgd", 0.001, 100)),  # --o sgd: its configured rate
        ({"budget": 60.0, "lr": 0.0005}, ("adam", 0.0005, 100)),
        ({"optimizer": "adam", "lr": 0.002}, ("adam", 0.002, 0)),
        ({"budget": 60.0, "resumed": "sgd"}, ("sgd", 0.001, 100)),  # --r keeps the checkpoint's optimiser
        ({"resumed": "adam"}, ("adam", 0.001, 0)),
    ],
)
def test_a_budget_run_takes_the_short_schedule_recipe_unless_told_otherwise(flags, expected):
    cfg = build_config("mobilenet_v2", CFGS)
    resumed = flags.pop("resumed", None)
    assert optimiser_recipe(TrainOptions(**flags), cfg, resumed) == expected


def test_resuming_with_another_optimiser_is_a_clear_error_and_old_checkpoints_tell_theirs():
    with pytest.raises(CheckpointError, match="trained with adam, not --o sgd"):
        optimiser_recipe(TrainOptions(optimizer="sgd"), build_config("tiny", CFGS), "adam")
    weight = torch.nn.Parameter(torch.ones(2))
    for kind, optimizer in (("adam", torch.optim.Adam([weight])), ("sgd", torch.optim.SGD([weight], 0.1, 0.9))):
        weight.grad = torch.ones(2)
        optimizer.step()
        assert saved_optimizer_kind({"optimizer": optimizer.state_dict()}) == kind  # from before the key
    assert saved_optimizer_kind({"optimizer_kind": "adam", "optimizer": {"state": {}}}) == "adam"
