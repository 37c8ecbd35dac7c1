import pytest
import torch

from frcnn.config import default_config, merge_dict
from frcnn.data.datasets.factory import SHAPES_PROFILE
from frcnn.data.loader import collate
from frcnn.modeling import build_model
from frcnn.structures.batch import Sample


def small_cfg(**overrides):
    cfg = default_config()
    merge_dict(cfg, SHAPES_PROFILE)
    merge_dict(cfg, {"TINY": {"CHANNELS": [8, 16, 16, 32], "HEAD_DIM": 32}, "RPN_CHANNELS": 32})
    merge_dict(cfg, {"ANCHOR_SCALES": [1, 1.41, 2, 2.83, 4, 5.66, 8]})  # fixed: `auto` needs training data
    merge_dict(cfg, overrides)
    return cfg


def sample(h, w, boxes, labels, seed):
    g = torch.Generator().manual_seed(seed)
    return Sample(
        image=torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g),
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long),
        scale=1.0,
        index=seed,
    )


def three_images():
    many = [[x, y, x + 12, y + 9] for x in range(0, 150, 15) for y in range(0, 100, 20)]  # 50 boxes: no cap
    return collate(
        [
            sample(120, 160, many, [1 + i % 7 for i in range(len(many))], 0),
            sample(200, 100, [], [], 1),  # no objects: trains as background only
            sample(90, 90, [[10, 10, 60, 80]], [3], 2),
        ]
    )


@pytest.mark.parametrize("mode", ["pool", "align", "crop", "deform"])
def test_training_step_three_sizes_one_without_boxes(mode):
    torch.manual_seed(0)
    model, _ = build_model(small_cfg(POOLING_MODE=mode), "tiny", num_classes=8)
    model.train()
    batch = three_images()
    assert batch.images.shape == (3, 3, 224, 160)
    losses = model(batch.images, batch.image_sizes, batch.image_scales, batch.targets)
    assert set(losses) == {"rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["rcnn_box"] > 0 and losses["rpn_box"] > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first_conv = model.backbone.base[0][0].weight.grad
    assert first_conv.abs().sum() > 0


def test_batch_without_any_boxes_trains_as_background():
    model, _ = build_model(small_cfg(), "tiny", num_classes=8)
    model.train()
    batch = collate([sample(64, 80, [], [], 1), sample(80, 64, [], [], 2)])
    losses = model(batch.images, batch.image_sizes, batch.image_scales, batch.targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["rpn_box"] == 0 and losses["rcnn_box"] == 0 and losses["rcnn_cls"] > 0
    sum(losses.values()).backward()


def test_an_ignore_region_on_an_object_changes_nothing_and_elsewhere_changes_the_losses():
    # Over an object every anchor and RoI that reaches the region's background thresholds is already
    # not background (RPN 0.3, head FG_THRESH = BG_THRESH_HI 0.5), so the losses stay; over the
    # background it takes candidates out of the sample.
    torch.manual_seed(0)
    model, _ = build_model(small_cfg(), "tiny", num_classes=8)
    model.train()
    batch = collate([sample(96, 128, [[10, 10, 49, 59], [70, 20, 109, 69]], [2, 5], 3)])

    def losses(regions: list[list[float]]) -> dict[str, torch.Tensor]:
        targets = [{**batch.targets[0], "ignore": torch.tensor(regions).reshape(-1, 4)}]
        with torch.no_grad():
            return model(batch.images, batch.image_sizes, batch.image_scales, targets)

    plain = losses([])
    assert all(torch.equal(plain[k], v) for k, v in losses([[10, 10, 49, 59]]).items())
    moved = losses([[0, 60, 127, 95]])
    assert moved["rpn_cls"] != plain["rpn_cls"] and moved["rcnn_cls"] != plain["rcnn_cls"]
    assert torch.equal(moved["rpn_box"], plain["rpn_box"])  # the foreground anchors stay


def test_normalize_zeroes_padding_and_follows_pixel_format():
    from frcnn.modeling.backbones.base import CAFFE_PIXELS
    from frcnn.modeling.faster_rcnn import FasterRCNN

    model, _ = build_model(small_cfg(), "tiny", num_classes=8)
    caffe = FasterRCNN(model.backbone, model.rpn, model.roi_heads, CAFFE_PIXELS)
    images = torch.zeros(2, 3, 4, 5, dtype=torch.uint8)
    images[:, 0], images[:, 1], images[:, 2] = 200, 100, 50  # RGB
    out = caffe.normalize(images, torch.tensor([[4, 5], [2, 3]]))
    # BGR order minus the Caffe means, no scaling
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([50 - 102.9801, 100 - 115.9465, 200 - 122.7717]))
    assert (out[1, :, 2:, :] == 0).all() and (out[1, :, :, 3:] == 0).all()
    assert (out[1, :, :2, :3] != 0).all()


def test_inference_returns_per_image_detections_in_original_pixels():
    torch.manual_seed(0)
    model, _ = build_model(small_cfg(TEST={"SCORE_THRESH": 0.0}), "tiny", num_classes=8)
    model.eval()
    batch = three_images()
    with torch.no_grad():
        out = model(batch.images, batch.image_sizes, torch.tensor([1.0, 2.0, 0.5]))
    assert len(out) == 3
    for det, (h, w), scale in zip(out, batch.image_sizes.tolist(), [1.0, 2.0, 0.5]):
        assert set(det) == {"boxes", "scores", "labels"}
        assert 0 < len(det["boxes"]) <= 100
        assert (det["labels"] >= 1).all() and (det["labels"] < 8).all()
        assert (det["boxes"][:, 2] <= (w - 1) / scale + 1e-3).all() and (
            det["boxes"][:, 3] <= (h - 1) / scale + 1e-3
        ).all()
        assert torch.all(det["scores"][:-1] >= det["scores"][1:])


def agnostic_and_replicated_models(**overrides):
    """A class-agnostic model and a class-specific one whose 8 per-class deltas are all copies of the
    agnostic model's 4: the same network, so the two must train and detect alike."""
    torch.manual_seed(0)
    agnostic, _ = build_model(small_cfg(CLASS_AGNOSTIC=True, **overrides), "tiny", num_classes=8)
    specific, _ = build_model(small_cfg(CLASS_AGNOSTIC=False, **overrides), "tiny", num_classes=8)
    state = agnostic.state_dict()
    state["roi_heads.predictor.bbox_pred.weight"] = state["roi_heads.predictor.bbox_pred.weight"].repeat(8, 1)
    state["roi_heads.predictor.bbox_pred.bias"] = state["roi_heads.predictor.bbox_pred.bias"].repeat(8)
    specific.load_state_dict(state)
    return agnostic, specific


def test_class_agnostic_training_uses_one_box_per_roi():
    agnostic, specific = agnostic_and_replicated_models()
    heads = agnostic.roi_heads
    assert heads.predictor.bbox_pred.out_features == 4
    batch = three_images()

    # The box loss is smooth L1 (beta 1) of the RoI's single 4 deltas against its target,
    # over foreground RoIs, with the sampling weights (computed here from what reaches _losses).
    seen = {}
    real_losses = heads._losses

    def record_losses(cls_logits, deltas, labels, targets, weights):
        seen.update(deltas=deltas, labels=labels, targets=targets, weights=weights)
        return real_losses(cls_logits, deltas, labels, targets, weights)

    heads._losses = record_losses
    agnostic.train()
    specific.train()
    losses = agnostic(batch.images, batch.image_sizes, batch.image_scales, batch.targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert seen["deltas"].shape == (seen["labels"].numel(), 4)
    fg = seen["labels"] > 0
    assert fg.any()
    diff = (seen["deltas"].detach().float() - seen["targets"]).abs()
    per_coord = torch.where(diff < 1.0, 0.5 * diff**2, diff - 0.5)
    expected_box = (per_coord.sum(1) * seen["weights"] * fg).sum()
    assert losses["rcnn_box"].item() == pytest.approx(expected_box.item(), rel=1e-5)
    assert losses["rcnn_box"] > 0
    # ... and it is what a class-specific head with the same deltas for every class computes.
    replicated = specific(batch.images, batch.image_sizes, batch.image_scales, batch.targets)
    for key in losses:
        assert replicated[key].item() == pytest.approx(losses[key].item(), rel=1e-5), key


def test_class_agnostic_detection_uses_one_box_per_roi():
    """Every class's box for a RoI is the same one decoded box."""
    agnostic, specific = agnostic_and_replicated_models(TEST={"SCORE_THRESH": 0.0})
    heads = agnostic.roi_heads
    batch = three_images()
    decoded = []
    real_decode = heads.box_coder.decode

    def record_decode(deltas, references):
        out = real_decode(deltas, references)
        decoded.append(out)
        return out

    heads.box_coder.decode = record_decode
    agnostic.eval()
    specific.eval()
    with torch.no_grad():
        out = agnostic(batch.images, batch.image_sizes, batch.image_scales)
        out_replicated = specific(batch.images, batch.image_sizes, batch.image_scales)
    (boxes,) = decoded
    assert boxes.shape[1:] == (8, 4)
    assert torch.equal(boxes, boxes[:, :1].expand_as(boxes))
    for det, det_replicated in zip(out, out_replicated):
        assert len(det["boxes"]) > 0
        assert torch.equal(det["labels"], det_replicated["labels"])
        assert torch.allclose(det["scores"], det_replicated["scores"], atol=1e-6)
        assert torch.allclose(det["boxes"], det_replicated["boxes"], atol=1e-4)
    # so with score threshold 0 one box is detected under several labels: the classes of its RoI share it
    first = out[0]
    per_box = {}
    for box, label in zip(first["boxes"].tolist(), first["labels"].tolist()):
        per_box.setdefault(tuple(box), set()).add(label)
    assert max(len(labels) for labels in per_box.values()) > 1


@pytest.mark.parametrize("mode", ["align", "deform"])
def test_mixed_precision_keeps_box_maths_and_losses_in_float32(mode):
    torch.manual_seed(0)
    model, _ = build_model(small_cfg(POOLING_MODE=mode), "tiny", num_classes=8)
    model.train()
    batch = three_images()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(batch.images, batch.image_sizes, batch.image_scales, batch.targets)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch.images, batch.image_sizes, batch.image_scales)
    assert all(d["boxes"].dtype == torch.float32 and d["scores"].dtype == torch.float32 for d in out)


def test_cpu_inference_runs_the_backbone_channels_last_with_the_same_detections():
    torch.manual_seed(0)
    model, _ = build_model(small_cfg(TEST={"SCORE_THRESH": 0.0}), "tiny", num_classes=8)
    layouts = []
    model.backbone.register_forward_pre_hook(
        lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    batch = three_images()
    model.train()
    model(batch.images, batch.image_sizes, None, [dict(boxes=t["boxes"], labels=t["labels"]) for t in batch.targets])
    model.eval()
    with torch.no_grad():
        nhwc = model(batch.images, batch.image_sizes)
        model.channels_last_cpu_inference = False
        nchw = model(batch.images, batch.image_sizes)
    assert layouts == [False, True, False]  # training keeps NCHW (faster backward on CPU)
    for a, b in zip(nhwc, nchw):
        assert torch.allclose(a["scores"], b["scores"], atol=1e-5) and torch.allclose(a["boxes"], b["boxes"], atol=1e-3)


@pytest.mark.parametrize("net", ["vgg16", "res50", "mobilenet_v2", "tiny"])
def test_deform_pooling_works_with_every_backbone(net):
    """A training step reaches the offset layer (learning at 0.01x), and detection runs."""
    from frcnn.training.optim import build_optimizer

    torch.manual_seed(0)
    cfg = small_cfg(POOLING_MODE="deform", TRAIN={"SCALES": [96], "BATCH_SIZE": 16})
    model, _ = build_model(cfg, net, num_classes=8, use_default_weights=False)
    offset_fc = model.roi_heads.pooler.deform.offset_fc
    optimizer = build_optimizer(model, cfg, "sgd", 0.1)
    mults = {id(p): g["lr_mult"] for g in optimizer.param_groups for p in g["params"]}
    assert mults[id(offset_fc.weight)] == 0.01 and mults[id(offset_fc.bias)] == 0.01 * 2  # DOUBLE_BIAS
    model.train()
    batch = collate([sample(96, 128, [[10, 10, 60, 80], [40, 20, 100, 90]], [3, 5], 0)])
    sum(model(batch.images, batch.image_sizes, batch.image_scales, batch.targets).values()).backward()
    assert offset_fc.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        (det,) = model(batch.images, batch.image_sizes, batch.image_scales)
    assert det["boxes"].shape[1] == 4 and model.roi_heads.pooler.deform.last_offsets is not None


def saved_bytes(model, batch) -> tuple[dict, int]:
    """The training losses of `model` on `batch`, and the bytes of the distinct storages autograd
    keeps for backward meanwhile."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        losses = model(batch.images, batch.image_sizes, batch.image_scales, batch.targets)
    return losses, sum(storages.values())


def test_recomputing_the_head_gives_the_same_losses_and_gradients_and_keeps_less():
    """TRAIN.RECOMPUTE_HEAD: mobilenet_v2's head (its last stages, run on every RoI) recomputed in
    backward: identical losses and gradients, and autograd keeps less for backward."""
    batch = collate([sample(96, 128, [[10, 10, 60, 80], [40, 20, 100, 90]], [3, 5], 0)])
    results = []
    for recompute in (False, True):
        torch.manual_seed(0)
        cfg = small_cfg(TRAIN={"SCALES": [96], "BATCH_SIZE": 32, "RECOMPUTE_HEAD": recompute})
        model, _ = build_model(cfg, "mobilenet_v2", num_classes=8, use_default_weights=False)
        model.train()
        losses, kept = saved_bytes(model, batch)
        sum(losses.values()).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        results.append((losses, grads, kept))
    (plain, plain_grads, plain_kept), (again, again_grads, again_kept) = results
    assert all(torch.equal(plain[k], again[k]) for k in plain)
    assert all(torch.allclose(plain_grads[n], again_grads[n], rtol=1e-5, atol=1e-7) for n in plain_grads)
    assert again_kept < 0.25 * plain_kept  # 50 -> 8 MiB here: the head dominates at 96 px
