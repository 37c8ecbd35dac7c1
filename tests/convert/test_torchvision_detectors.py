"""torchvision's Faster R-CNN files, loaded here, give torchvision's detections.

The fixtures are randomly initialised torchvision detectors whose BatchNorm statistics, RPN and
classifier weights are set so that they make confident, varied detections (torchvision itself
computes the expected output); the real COCO files cannot be downloaded here and are not needed.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision.models import detection
from torchvision.models._meta import _COCO_CATEGORIES

from frcnn.convert.torchvision_detectors import rename_key
from frcnn.data.datasets.coco import COCO_91_CATEGORIES
from frcnn.inference.torch_detector import detect_images, load_detector
from frcnn.structures import BoxMode

SMALL = {"min_size": 352, "max_size": 512}  # torchvision's own resize, at a scale CPU tests afford
BUILDERS = {
    "fasterrcnn_resnet50_fpn": (detection.fasterrcnn_resnet50_fpn, "res50_fpn", SMALL),
    "fasterrcnn_resnet50_fpn_v2": (detection.fasterrcnn_resnet50_fpn_v2, "res50_fpn_v2", SMALL),
    "fasterrcnn_mobilenet_v3_large_fpn": (detection.fasterrcnn_mobilenet_v3_large_fpn, "mobilenet_v3_fpn", SMALL),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (detection.fasterrcnn_mobilenet_v3_large_320_fpn, "mobilenet_v3_fpn", {}),
}


RPN_LOGIT_GAIN = 100.0
SPREAD, CONFIDENT = 2.5, 0.03  # the fixtures' class logits: spread, and the share of RoIs not background


def calibrate_batchnorm(model: torch.nn.Module, probes: list) -> None:
    """BatchNorm's running statistics measured on the probe pictures, as training sets them
    (random statistics leave a random MobileNet's features the same everywhere), and its affine
    parameters drawn at random."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the probes
        norm.weight.data.uniform_(0.8, 1.2)
        norm.bias.data.normal_(0, 0.1)
        norm.train()
    for picture in probes:
        torchvision_detections(model, picture)
    for norm in norms:
        norm.eval()


def confident_detector(
    builder, num_classes: int, seed: int, probes: list, confident: float = CONFIDENT, **kwargs
) -> torch.nn.Module:
    """A torchvision detector with random weights that detects confidently: BatchNorm statistics
    measured on the probes, RPN deltas damped (proposals near their anchors) and objectness spread out,
    and a classifier whose
    logits over the RoIs of the test pictures have spread SPREAD around per-class offsets, with
    background ahead on all but a few of them."""
    torch.manual_seed(seed)
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs).eval()
    calibrate_batchnorm(model, probes)
    model.rpn.head.bbox_pred.weight.data.mul_(0.05)
    # Objectness logits of std 0.01 at initialisation would put every anchor near probability 0.5,
    # where a rounding difference reorders NMS; spread them out.
    model.rpn.head.cls_logits.weight.data.mul_(RPN_LOGIT_GAIN)
    model.roi_heads.box_predictor.bbox_pred.weight.data.normal_(0, 1e-4)
    features = []
    hook = model.roi_heads.box_head.register_forward_hook(lambda mod, inp, out: features.append(out))
    for picture in probes:
        torchvision_detections(model, picture)
    hook.remove()
    probe = torch.cat(features)
    mean, std = probe.mean(0), probe.std(0) + 1e-3
    cls = model.roi_heads.box_predictor.cls_score
    weight = torch.randn_like(cls.weight) / std / probe.shape[1] ** 0.5 * SPREAD
    offsets = torch.linspace(0.5, -0.5, num_classes)
    logits = (probe - mean) @ weight.T + offsets
    # Background leads by as much as the best class beats it on all but `confident` of the probe RoIs.
    lead = logits[:, 1:].max(dim=1).values - logits[:, 0]
    offsets[0] += torch.quantile(lead, 1 - confident)
    cls.weight.data.copy_(weight)
    cls.bias.data.copy_(-weight @ mean + offsets)
    return model


def image(height: int, width: int, seed: int) -> np.ndarray:
    """Random blobs of several sizes plus pixel noise, uint8 RGB: no two places look alike, so
    no two anchors tie in score (a tie would leave NMS's choice to rounding)."""
    rng = np.random.default_rng(seed)
    picture = np.zeros((height, width, 3), np.float32)
    for cell in (64, 16, 4):
        small = rng.normal(0, 60, (3, height // cell + 2, width // cell + 2)).astype(np.float32)
        big = torch.nn.functional.interpolate(torch.from_numpy(small)[None], (height, width), mode="bilinear")
        picture += big[0].permute(1, 2, 0).numpy()
    return np.clip(picture + 128 + rng.normal(0, 8, picture.shape), 0, 255).astype(np.uint8)


def pictures(min_size: int) -> list[np.ndarray]:
    """Three sizes and aspect ratios that the model resizes by 2, 1 and 1/2 (exact in binary) to
    sides that are multiples of 32: no padding, whose identical features would tie anchors' scores.
    Each is drawn at the model's input size and then resized, so all three look alike to it."""
    out = []
    for seed, (factor, extra) in enumerate(((2, 64), (1, 64), (0.5, 96))):
        drawn = image(min_size, min_size + extra, seed)
        size = (round((min_size + extra) / factor), round(min_size / factor))
        out.append(cv2.resize(drawn, size, interpolation=cv2.INTER_LINEAR))
    return out


PICTURES = pictures(352)


def torchvision_detections(model, picture: np.ndarray) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model([torch.from_numpy(picture).permute(2, 0, 1).float() / 255])[0]


def assert_same_confident_detections(
    ours: dict, theirs: dict, threshold: float = 0.5, margin: float = 1e-3, flips: int = 1
) -> int:
    """The detections scoring >= threshold equal one to one: label, corners within 0.5 px, score
    within 1e-3 (a detection scoring within `margin` of the threshold may be on either side of it
    in the other list). Returns their count.

    Up to `flips` of an image's detections may lack their match in each direction: on some CPUs
    rounding decides a near-tie before the head the other way, and one detection comes from a
    different proposal (seen on a 2-core AMD EPYC with torch 2.14.1: one of 65 confident
    detections, 31 px apart, with no counterpart; the code of before this check's change and
    after it alike)."""
    our_boxes = BoxMode.convert(ours["boxes"], BoxMode.XYXY, BoxMode.XYXY_EXCLUSIVE)
    mine = (our_boxes, ours["scores"], ours["labels"])
    other = (theirs["boxes"].numpy(), theirs["scores"].numpy(), theirs["labels"].numpy())
    for (boxes, scores, labels), (boxes_b, scores_b, labels_b) in ((mine, other), (other, mine)):
        unmatched = []
        for box, score, label in zip(boxes, scores, labels):
            if score < threshold + margin:
                continue
            close = (np.abs(boxes_b - box).max(axis=1) <= 0.5) & (np.abs(scores_b - score) <= 1e-3)
            if not np.any(close & (labels_b == label)):
                unmatched.append(f"{box} {score} {label}")
        assert len(unmatched) <= flips, f"no match for {unmatched}"
    assert abs(int((ours["scores"] >= threshold).sum()) - int((theirs["scores"] >= threshold).sum())) <= flips
    return int((ours["scores"] >= threshold).sum())


def test_coco_categories_are_torchvisions():
    assert COCO_91_CATEGORIES == tuple(_COCO_CATEGORIES)
    assert COCO_91_CATEGORIES[1] == "person" and COCO_91_CATEGORIES[90] == "toothbrush"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_detections_equal_torchvisions(name, tmp_path):
    builder, net, kwargs = BUILDERS[name]
    test_pictures = pictures(320 if "320" in name else 352)
    coco = "320" in name  # one of the four as a 91-class COCO model, whose scores spread over more classes
    model = confident_detector(builder, 91 if coco else 5, 1, test_pictures, 0.15 if coco else CONFIDENT, **kwargs)
    path = tmp_path / f"{name}_coco.pth"
    torch.save(model.state_dict(), path)
    overrides = [] if "320" in name else ["TEST.SCALES", "[352]", "TEST.MAX_SIZE", "512"]
    detector = load_detector(path, overrides=overrides)
    assert detector.net == net
    if "320" in name:
        assert detector.classes == COCO_91_CATEGORIES and detector.cfg.TEST.RPN_POST_NMS_TOP_N == 150
    counts = []
    for picture in test_pictures:
        ours = detect_images(detector, [picture])[0]
        counts.append(assert_same_confident_detections(ours, torchvision_detections(model, picture)))
    assert sum(counts) >= 5 and sorted(counts)[1] >= 1, counts  # the fixture detects something worth comparing
    labels = np.concatenate([out["labels"][out["scores"] >= 0.5] for out in detect_images(detector, test_pictures)])
    assert len(set(labels.tolist())) >= 2  # varied labels, not one class everywhere


def old_layout(state: dict) -> dict:
    """The key layout of torchvision before 0.13 (no Conv2dNormActivation wrappers)."""
    renamed = {}
    for key, value in state.items():
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        for block in ("inner_blocks", "layer_blocks"):
            key = key.replace(f"fpn.{block}.", f"fpn.{block}#").replace(f"{block}#", f"{block}.")
        renamed[key.replace(".0.weight", ".weight").replace(".0.bias", ".bias") if "fpn." in key else key] = value
    return renamed


def test_old_key_layout_and_wrapped_files_load_the_same(tmp_path):
    model = confident_detector(detection.fasterrcnn_resnet50_fpn, 5, 1, PICTURES, **SMALL)
    state = model.state_dict()
    old = old_layout(state)
    assert "rpn.head.conv.weight" in old and "backbone.fpn.inner_blocks.0.weight" in old
    old = {k: v for k, v in old.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    torch.save({"model": state, "epoch": 3}, tmp_path / "wrapped.pth")
    picture = PICTURES[0]
    overrides = ["TEST.SCALES", "[352]", "TEST.MAX_SIZE", "512"]
    expected = torchvision_detections(model, picture)
    for name in ("old.pth", "wrapped.pth"):
        ours = detect_images(load_detector(tmp_path / name, overrides=overrides), [picture])[0]
        assert assert_same_confident_detections(ours, expected) >= 1


def test_keys_map_to_this_projects_model():
    assert rename_key("rpn.head.conv.0.0.weight") == "rpn.head.conv.weight"
    assert rename_key("rpn.head.conv.1.0.bias") == "rpn.head.extra_convs.0.bias"
    assert rename_key("rpn.head.cls_logits.weight") == "rpn.head.objectness.weight"
    assert rename_key("backbone.fpn.inner_blocks.2.weight") == "backbone.base.fpn.inner_blocks.2.0.weight"
    assert rename_key("roi_heads.box_predictor.bbox_pred.bias") == "roi_heads.predictor.bbox_pred.bias"


def test_a_file_of_another_kind_is_refused_with_what_it_holds(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a detector file this project reads"):
        load_detector(tmp_path / "other.pth")


def test_a_state_dict_with_keys_of_mixed_types_is_refused_in_one_line(tmp_path):
    """sorted() of int and str keys was a TypeError ("'<' not supported") with a traceback."""
    from frcnn.convert import UnknownCheckpointError

    torch.save({1: torch.zeros(1), "conv.weight": torch.zeros(1), (2, 3): 4}, tmp_path / "mixed.pth")
    with pytest.raises(UnknownCheckpointError, match="not a detector file this project reads") as info:
        load_detector(tmp_path / "mixed.pth")
    assert "keys ['conv.weight', (2, 3), 1]" in str(info.value) and "\n" not in str(info.value)
    # torchvision's layout with a key of another type among its own is not torchvision's
    torch.save(
        {"roi_heads.box_predictor.cls_score.weight": torch.zeros(3, 4), "rpn.head.x": 1, 5: 1}, tmp_path / "t.pth"
    )
    with pytest.raises(UnknownCheckpointError, match="not a detector file this project reads"):
        load_detector(tmp_path / "t.pth")


def test_a_coco_detector_is_evaluated_on_coco_data_by_category_id(tmp_path):
    """The 91 labels of a torchvision COCO detector are category ids: on COCO-format data they
    are matched to its categories by id (here 1, 3, 18 for person, car, dog), not by position."""
    import json

    from conftest import shapes_samples, write_coco

    from frcnn.inference.evaluator import EvalOptions, evaluate_checkpoint

    samples = [
        (img, [("dog" if i % 2 else "car", box, d) for _, box, d in objs])
        for i, (img, objs) in enumerate(shapes_samples(4))
    ]
    write_coco(tmp_path / "ann.json", tmp_path / "images", samples, {"person": 1, "car": 3, "dog": 18})
    yaml_file = tmp_path / "coco.yaml"
    yaml_file.write_text(
        "format: coco\ntrain: {images: images, annotations: ann.json}\ntest: {images: images, annotations: ann.json}\n"
    )
    torch.manual_seed(0)
    model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    model.roi_heads.box_predictor.cls_score.bias.data[[18, 90]] = 8.0  # it says "dog" or "toothbrush"
    torch.save(model.state_dict(), tmp_path / "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth")
    options = EvalOptions(dataset=str(yaml_file), output_dir=str(tmp_path / "out"), data_dir=str(tmp_path))
    evaluation = evaluate_checkpoint(tmp_path / "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth", options)
    assert evaluation is not None and evaluation.class_names == ("person", "car", "dog")
    results = json.loads(next((tmp_path / "out").rglob("detections.json")).read_text())
    assert results and {r["category_id"] for r in results} == {18}  # toothbrush is not in the data
