"""Updating parameters during backward: the same arithmetic as a step after it, with each large
gradient freed as soon as it is used."""

import copy
import gc
import weakref

import pytest
import torch
from torch import nn

from frcnn.config import default_config
from frcnn.training.optim import StepInBackward, StepSchedule, build_optimizer, step_in_backward_if_usable


def small_model() -> nn.Module:
    """With min_numel=100, six hooked parameters in all three groups of build_optimizer (weights,
    norm scales, biases: the biases' learning rate is doubled) and two small biases left to step()."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 40), nn.ReLU(), nn.Linear(40, 120), nn.BatchNorm1d(120), nn.ReLU(), nn.Linear(120, 4)
    )


def train_steps(
    model: nn.Module, kind: str, in_backward: bool, steps: int, resume_at: int | None = None
) -> tuple[nn.Module, dict]:
    """`steps` steps on fixed random batches, the learning rate changing each step; with resume_at,
    the optimizer is rebuilt there from its state_dict, as a resumed run would."""
    cfg = default_config()
    optimizer = build_optimizer(model, cfg, kind, 0.05)
    hooks = StepInBackward(optimizer, min_numel=100) if in_backward else None
    schedule = StepSchedule(0.05, decay_step=1, gamma=0.5)
    data = torch.Generator().manual_seed(1)
    for step in range(steps):
        if step == resume_at:
            saved = copy.deepcopy(optimizer.state_dict())
            optimizer.load_state_dict(saved)  # replaces param_groups and state, as a resume does
        schedule.apply(optimizer, epoch=1 + step, iteration=step)
        x, y = torch.randn(8, 6, generator=data), torch.randn(8, 4, generator=data)
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if hooks:
            large = [p for p in model.parameters() if p.numel() >= 100]
            assert len(hooks) == len(large) == 6
            assert all(p.grad is None for p in large), "used gradients are freed in backward"
            assert all(p.grad is not None for p in model.parameters() if p.numel() < 100), "small ones wait for step()"
        optimizer.step()
    return model, optimizer.state_dict()


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_updating_in_backward_equals_stepping_after_it(kind):
    after, after_state = train_steps(small_model(), kind, in_backward=False, steps=4)
    during, during_state = train_steps(small_model(), kind, in_backward=True, steps=4)
    for a, b in zip(after.parameters(), during.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(next(after.parameters()), next(small_model().parameters())), "the steps moved the weights"
    assert_same_state(after_state, during_state)  # the state lives in the main optimizer, as checkpoints need
    assert [g["lr"] for g in after_state["param_groups"]] == [g["lr"] for g in during_state["param_groups"]]


def assert_same_state(a: dict, b: dict) -> None:
    assert a["state"].keys() == b["state"].keys()
    for index, state in a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["state"][index][name]), (index, name)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_updating_in_backward_follows_a_resumed_optimizer(kind):
    straight, straight_state = train_steps(small_model(), kind, in_backward=True, steps=4)
    resumed, resumed_state = train_steps(small_model(), kind, in_backward=True, steps=4, resume_at=2)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert_same_state(straight_state, resumed_state)  # what the next checkpoint would hold


def test_model_and_optimizer_are_freed_and_a_dropped_updater_falls_back_to_step():
    model = small_model()
    optimizer = build_optimizer(model, default_config(), "sgd", 0.1)
    hooks = StepInBackward(optimizer, min_numel=100)
    del hooks  # the hooks now do nothing: backward keeps every gradient and step() uses them
    model(torch.randn(8, 6)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    before = model[2].weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model[2].weight)

    hooks = StepInBackward(optimizer, min_numel=100)
    weight, owner = weakref.ref(model[2].weight), weakref.ref(optimizer)
    del model, optimizer, hooks
    gc.collect()
    assert weight() is None and owner() is None, "hooks inside the parameters must not keep them alive"


def test_it_is_left_off_where_an_update_needs_every_gradient(caplog):
    model = small_model()
    cfg = default_config()
    optimizer = build_optimizer(model, cfg, "sgd", 0.1)
    assert StepInBackward.unusable_because(0.0, False, False) is None
    assert "clipping" in StepInBackward.unusable_because(10.0, False, False)
    assert "loss scaling" in StepInBackward.unusable_because(0.0, True, False)
    assert "processes" in StepInBackward.unusable_because(0.0, False, True)
    cfg.TRAIN.CLIP_GRAD_NORM = 10.0
    with caplog.at_level("INFO", logger="frcnn"):
        assert step_in_backward_if_usable(optimizer, cfg, scaling_gradients=False, distributed=False) is None
    assert any("after backward" in r.getMessage() and "clipping" in r.getMessage() for r in caplog.records)
    cfg.TRAIN.CLIP_GRAD_NORM = 0.0
    cfg.TRAIN.STEP_IN_BACKWARD = False
    assert step_in_backward_if_usable(optimizer, cfg, scaling_gradients=False, distributed=False) is None
    cfg.TRAIN.STEP_IN_BACKWARD = True
    assert step_in_backward_if_usable(optimizer, cfg, scaling_gradients=False, distributed=False) is not None
