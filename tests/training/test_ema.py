"""TRAIN.EMA_DECAY: the weight average, by hand on one parameter, and through a run and its resume."""

from __future__ import annotations

import math
import types

import pytest
import torch
from conftest import CFGS, SMALL_NET

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.runs.checkpoint import load_checkpoint
from frcnn.training.build import TrainOptions, build_trainer
from frcnn.training.ema import WeightAverage


class OneWeight(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def test_the_average_follows_the_ramped_decay_by_hand():
    # warmup 1/ln 2 makes exp(-n / warmup) = 2^-n: d_1 = 0.5 * (1 - 1/2) = 0.25, d_2 = 0.5 * (1 - 1/4) = 0.375
    model = OneWeight()
    t = types.SimpleNamespace(model=model, device=torch.device("cpu"), resumed_average=None)
    average = WeightAverage(0.5, 1 / math.log(2))
    average.before_train(t)
    assert t.weight_average is average
    with torch.no_grad():
        model.w.fill_(4.0)
        model.count.fill_(1)
    average.after_step(t)  # 0.25 * 0 + 0.75 * 4 = 3
    assert average.average["w"].item() == pytest.approx(3.0) and average.average["count"].item() == 1
    with torch.no_grad():
        model.w.fill_(8.0)
    average.after_step(t)  # 0.375 * 3 + 0.625 * 8 = 6.125
    assert average.average["w"].item() == pytest.approx(6.125)
    with average.applied(model):
        assert model.w.item() == pytest.approx(6.125)
    assert model.w.item() == 8.0  # the trained weight is back after the block


@pytest.mark.parametrize(("decay", "warmup"), [(0.0, 10), (1.0, 10), (0.9, 0)])
def test_settings_outside_the_range_are_refused(decay, warmup):
    with pytest.raises(ValueError, match="TRAIN.EMA_DECAY"):
        WeightAverage(decay, warmup)


def test_a_run_saves_the_average_and_resumes_from_the_trained_weights(small_shapes_root, tmp_path):
    settings = [*SMALL_NET, "TRAIN.EMA_DECAY", "0.9", "TRAIN.EMA_WARMUP", "2"]
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=settings)
    opts = TrainOptions(batch_size=4, epochs=1, save_dir=str(tmp_path), data_dir=str(small_shapes_root.parent))
    t = build_trainer(opts, cfg)
    state = load_checkpoint(t.train())
    average, trained = state["model"], state["trained_model"]
    assert state["average_updates"] == t.iteration > 0
    assert {k: v.shape for k, v in average.items()} == {k: v.shape for k, v in trained.items()}
    assert any(not torch.equal(average[k], trained[k]) for k in average if average[k].is_floating_point())
    assert all(torch.equal(v, t.model.state_dict()[k]) for k, v in trained.items())

    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=settings)
    resumed = build_trainer(TrainOptions(**{**vars(opts), "resume": True, "epochs": 2}), cfg)
    resumed.call("before_train")
    assert all(torch.equal(v, resumed.model.state_dict()[k]) for k, v in trained.items())
    assert resumed.weight_average.updates == t.iteration
    assert all(torch.equal(v, resumed.weight_average.average[k]) for k, v in average.items())
