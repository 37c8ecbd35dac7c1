import json
import math
from pathlib import Path

import pytest
import torch
from conftest import CFGS, SMALL_NET

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.runs.checkpoint import load_checkpoint
from frcnn.training.build import TrainOptions, train

SMALL = SMALL_NET


def options(data_dir: Path, save_dir: Path, **kw) -> TrainOptions:
    base = dict(
        dataset="shapes",
        net="tiny",
        batch_size=4,
        epochs=2,
        lr_decay_step=1,
        save_dir=str(save_dir),
        data_dir=str(data_dir),
        disp_interval=5,
        lr=0.01,
    )
    base.update(kw)
    return TrainOptions(**base)


@pytest.fixture()
def cfg(small_shapes_root):
    return build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=SMALL)


def test_resume_continues_where_it_stopped(small_shapes_root, cfg, tmp_path):
    data_dir = small_shapes_root.parent
    straight = train(options(data_dir, tmp_path / "a"), cfg)
    # 24 images + flips = 48, batch 4: 12 steps per epoch; checkpoints every 5 steps
    assert straight.name == "faster_rcnn_1_2_12.pth"

    first = train(options(data_dir, tmp_path / "b", epochs=1, checkpoint_interval=5), cfg)
    saved = sorted(p.name for p in first.parent.glob("*.pth"))
    assert saved == ["faster_rcnn_1_1_10.pth", "faster_rcnn_1_1_12.pth", "faster_rcnn_1_1_5.pth"]
    mid = load_checkpoint(first.parent / "faster_rcnn_1_1_5.pth")
    assert (mid["epoch"], mid["step"], mid["iteration"]) == (1, 5, 5)
    assert mid["optimizer"]["state"], "momentum buffers are saved"

    # resume from the mid-epoch checkpoint (step 5 of epoch 1) and finish epoch 2
    (first.parent / "faster_rcnn_1_1_10.pth").unlink()
    (first.parent / "faster_rcnn_1_1_12.pth").unlink()
    resumed = train(options(data_dir, tmp_path / "b", resume=True, checksession=1), cfg)
    assert resumed.name == "faster_rcnn_1_2_12.pth"
    a, b = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    end = load_checkpoint(resumed)
    assert end["iteration"] == 24 and end["schedule"]["base_lr"] == 0.01


def test_augmented_training_resumes_to_the_same_parameters(small_shapes_root, tmp_path):
    """The augmentation draws from each image's seed: a run resumed mid-epoch ends where a
    straight run ends."""
    augmented = [*SMALL, "TRAIN.AUGMENT", "['photometric', 'zoom_out', 'iou_crop', 'hflip']"]
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=augmented)
    data_dir = small_shapes_root.parent
    straight = train(options(data_dir, tmp_path / "a"), cfg)
    first = train(options(data_dir, tmp_path / "b", epochs=1, checkpoint_interval=7), cfg)
    (first.parent / first.name).unlink()  # resume from step 7 of epoch 1
    resumed = train(options(data_dir, tmp_path / "b", resume=True), cfg)
    a, b = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_accumulating_over_parts_of_the_batch_equals_the_whole_batch(small_shapes_root, tmp_path, caplog):
    """--accum 2 and 3 (parts of 2 and 1-2 images) end where one pass over each batch of 4 ends
    (GroupNorm: statistics per image, so splitting the batch changes nothing)."""
    settings = [*SMALL, "TINY.NORM", "group"]
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=settings)
    data_dir = small_shapes_root.parent
    whole = load_checkpoint(train(options(data_dir, tmp_path / "a", epochs=1), cfg))
    for accum in (2, 3):
        with caplog.at_level("INFO", logger="frcnn"):
            parts = load_checkpoint(train(options(data_dir, tmp_path / f"p{accum}", epochs=1, accum=accum), cfg))
        for key in whole["model"]:
            assert torch.allclose(whole["model"][key], parts["model"][key], atol=2e-5), (accum, key)
    assert any("--accum adds several backward passes" in r.getMessage() for r in caplog.records)


def test_resume_without_checkpoint_is_a_clear_error(small_shapes_root, cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint of session 1"):
        train(options(small_shapes_root.parent, tmp_path / "none", resume=True), cfg)


def test_learning_rate_decays_every_step_epochs():
    from frcnn.training.optim import StepSchedule

    s = StepSchedule(base_lr=0.01, decay_step=5, gamma=0.1)
    assert [s.lr(e, 10_000) for e in (1, 5, 6, 10, 11)] == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001])
    warm = StepSchedule(base_lr=0.01, decay_step=5, gamma=0.1, warmup_iters=10, warmup_factor=0.1)
    assert warm.lr(1, 0) == pytest.approx(0.001) and warm.lr(1, 5) == pytest.approx(0.0055) and warm.lr(1, 10) == 0.01


def test_cosine_schedule_goes_from_base_to_zero_over_the_run(small_shapes_root, tmp_path):
    from frcnn.training.optim import StepSchedule

    s = StepSchedule(0.02, 5, 0.1, kind="cosine", total_iters=100)
    assert [s.lr(1, i) for i in (0, 25, 50, 75, 100, 120)] == pytest.approx([0.02, 0.01707107, 0.01, 0.00292893, 0, 0])
    warm = StepSchedule(0.02, 5, 0.1, warmup_iters=10, warmup_factor=0.1, kind="cosine", total_iters=100)
    assert warm.lr(1, 0) == pytest.approx(0.002) and warm.lr(1, 10) == pytest.approx(
        0.02 * 0.5 * (1 + math.cos(0.1 * math.pi))
    )
    with pytest.raises(ValueError, match="LR_SCHEDULE must be step or cosine"):
        StepSchedule(0.02, 5, 0.1, kind="linear")
    cosine = build_config(
        "tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=[*SMALL, "TRAIN.LR_SCHEDULE", "cosine"]
    )
    last = train(options(small_shapes_root.parent, tmp_path, disp_interval=1, lr_decay_step=1), cosine)
    lrs = [json.loads(line)["lr"] for line in (last.parent / "metrics.jsonl").read_text().splitlines()]
    # 2 epochs of 12 steps; the LR of step i (iteration i - 1), no warm-up in cfgs/tiny.yml beyond 100
    expected = [0.01 * 0.5 * (1 + math.cos(math.pi * i / 24)) * (0.1 + 0.9 * i / 100) for i in range(24)]
    assert lrs == pytest.approx(expected)
    assert load_checkpoint(last)["schedule"]["total_iters"] == 24


def test_biases_get_double_lr_and_no_decay(cfg):
    from frcnn.modeling import build_model
    from frcnn.training.optim import build_optimizer

    cfg.ANCHOR_SCALES = [2, 4, 8]  # the shapes profile's `auto` is resolved by the trainer, from the data
    model, _ = build_model(cfg, "tiny", 8)
    opt = build_optimizer(model, cfg, "sgd", 0.01)
    by_mult = {g["lr_mult"]: g for g in opt.param_groups if g["weight_decay"] == 0}
    bias_group = by_mult[2.0]
    assert bias_group["lr"] == 0.02
    assert all(p.dim() == 1 for p in bias_group["params"])
    weights = [g for g in opt.param_groups if g["weight_decay"] > 0][0]
    assert all(p.dim() > 1 for p in weights["params"])


def test_sgd_step_applies_decay_to_weights_and_double_lr_to_biases(cfg):
    from frcnn.training.optim import build_optimizer

    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0]]))
        layer.bias.fill_(0.5)
    opt = build_optimizer(layer, cfg, "sgd", 0.1)
    assert all(g["fused"] for g in opt.param_groups)  # one pass per tensor, no weight-decay temporaries
    layer.weight.grad = torch.tensor([[0.2, 0.4]])
    layer.bias.grad = torch.tensor([1.0])
    opt.step()
    decay = cfg.TRAIN.WEIGHT_DECAY
    expected = torch.tensor([[1.0 - 0.1 * (0.2 + decay * 1.0), -2.0 - 0.1 * (0.4 - decay * 2.0)]])
    assert torch.allclose(layer.weight, expected) and torch.allclose(layer.bias, torch.tensor([0.5 - 0.2 * 1.0]))


def test_compile_keeps_parameter_names_so_checkpoints_stay_interchangeable(cfg):
    from frcnn.modeling import build_model
    from frcnn.training.build import compile_convolutions

    cfg.ANCHOR_SCALES = [2, 4, 8]  # the shapes profile's `auto` is resolved by the trainer, from the data
    model, _ = build_model(cfg, "tiny", 8)
    names = list(model.state_dict())
    compile_convolutions(model, torch.device("cpu"))
    assert list(model.state_dict()) == names
    assert model.backbone._compiled_call_impl is not None and model.roi_heads.box_head._compiled_call_impl is not None
    assert model.rpn._compiled_call_impl is None  # data-dependent shapes stay eager


def test_amp_training_on_cpu_uses_bfloat16_and_stays_finite(small_shapes_root, cfg, tmp_path, caplog):
    from frcnn.training.amp import Precision

    assert Precision.for_device(torch.device("cpu"), True).dtype == torch.bfloat16
    assert Precision.for_device(torch.device("cpu"), False).dtype is None
    with caplog.at_level("INFO", logger="frcnn"):
        path = train(options(small_shapes_root.parent, tmp_path, epochs=1, amp=True, optimizer="adam", lr=0.001), cfg)
    assert any("bfloat16 autocast on cpu" in r.getMessage() for r in caplog.records)
    state = load_checkpoint(path)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_training_with_updates_in_backward_matches_updates_after_it(small_shapes_root, tmp_path, caplog, monkeypatch):
    """fc6 at 1568 x 700 is over the 2**20-element line, so it is updated during backward."""
    from frcnn.training.optim import StepInBackward

    updates_in_backward = []
    original_step = StepInBackward.step
    monkeypatch.setattr(
        StepInBackward, "step", lambda self, slot, p: updates_in_backward.append(slot) or original_step(self, slot, p)
    )
    wide_head = SMALL + ["TINY.HEAD_DIM", "700"]
    finals = {}
    for in_backward in (True, False):
        settings = wide_head + ["TRAIN.STEP_IN_BACKWARD", str(in_backward)]
        cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=settings)
        with caplog.at_level("INFO", logger="frcnn"):
            path = train(options(small_shapes_root.parent, tmp_path / str(in_backward), epochs=1), cfg)
        finals[in_backward] = load_checkpoint(path)
    assert any("1 large parameters are updated during backward" in r.getMessage() for r in caplog.records)
    assert updates_in_backward == [0] * 12, "fc6 updated in backward at each of the 12 steps (48 images, batch 4)"
    during, after = finals[True], finals[False]
    for key, value in after["model"].items():
        assert torch.equal(value, during["model"][key]), key
    momentum = [s["momentum_buffer"] for s in during["optimizer"]["state"].values()]
    assert len(momentum) == len(after["optimizer"]["state"]) and all(m.abs().sum() > 0 for m in momentum)


def test_a_run_summarises_its_training_boxes(small_shapes_root, cfg, tmp_path, caplog):
    import json

    with caplog.at_level("INFO", logger="frcnn"):
        train(options(small_shapes_root.parent, tmp_path, epochs=1), cfg)
    run_dir = tmp_path / "tiny" / "shapes"
    stats = json.loads((run_dir / "box_stats.json").read_text())
    assert stats["images"] == 24 and stats["boxes"] > 24  # each image once, flipped copies not counted
    assert len(stats["quantiles"]["side"]) == 5 and (run_dir / "box_stats.png").is_file()
    assert any("training boxes at the training scale" in r.getMessage() for r in caplog.records)
