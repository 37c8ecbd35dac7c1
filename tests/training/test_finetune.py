"""trainval_net.py --pretrained FILE where FILE holds a whole detector: fine-tuning on new classes."""

from __future__ import annotations

import pytest
import torch
from conftest import CFGS, SMALL_NET
from torchvision.models import detection

from frcnn.config import build_config
from frcnn.convert import LoadContext
from frcnn.data.datasets.factory import dataset_spec
from frcnn.modeling import build_model
from frcnn.runs.checkpoint import load_checkpoint
from frcnn.training.build import TrainOptions, train
from frcnn.training.finetune import init_from_detector, read_detector_file

SOURCE_CLASSES = ("circle", "square", "triangle", "star")
TARGET_CLASSES = ("cross", "square", "ring", "circle")  # two shared, two new


def subset(tmp_path, root, classes) -> str:
    """A dataset YAML over the shapes files that keeps only `classes` (other objects are dropped)."""
    path = tmp_path / f"{'_'.join(classes)}.yaml"
    path.write_text(f"format: voc\nroot: {root}\ntrain: trainval\ntest: test\nclasses: {list(classes)}\n")
    return str(path)


def run(tmp_path, data, name, dataset, net="tiny", settings=(), **kw):
    cfg = build_config(net, CFGS, dataset_spec(dataset, data).profile, set_cfgs=[*SMALL_NET, *settings])
    options = TrainOptions(
        dataset=dataset, net=net, batch_size=4, epochs=1, save_dir=str(tmp_path / name), data_dir=str(data), **kw
    )
    return train(options, cfg)


def test_fine_tuning_loads_every_layer_and_keeps_the_rows_of_shared_classes(small_shapes_root, tmp_path, caplog):
    data = small_shapes_root.parent
    source = run(
        tmp_path,
        data,
        "source",
        subset(tmp_path, small_shapes_root, SOURCE_CLASSES),
        settings=["ANCHOR_SCALES", "[2, 4]"],
    )
    detector = read_detector_file(source, LoadContext(net="tiny"))
    target = ("__background__", *TARGET_CLASSES)
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=SMALL_NET)
    cfg.ANCHOR_SCALES = [2, 4]
    model, _ = build_model(cfg, "tiny", len(target), use_default_weights=False)
    kept = init_from_detector(model, detector, target)
    assert kept == ["__background__", "square", "circle"]
    old, new = detector["model"], model.state_dict()
    for key, value in old.items():
        if not key.startswith("roi_heads.predictor"):
            assert torch.equal(new[key], value), key
    w_old, w_new = old["roi_heads.predictor.cls_score.weight"], new["roi_heads.predictor.cls_score.weight"]
    assert torch.equal(w_new[2], w_old[2]) and torch.equal(w_new[4], w_old[1])  # square, circle
    assert torch.equal(w_new[0], w_old[0])  # background
    b_old, b_new = old["roi_heads.predictor.bbox_pred.weight"], new["roi_heads.predictor.bbox_pred.weight"]
    assert torch.equal(b_new[8:12], b_old[8:12]) and torch.equal(b_new[16:20], b_old[4:8])
    assert not torch.equal(w_new[1], w_old[1])  # cross is new

    # Through trainval_net's path: the detector's anchors are kept though the target's config differs.
    with caplog.at_level("INFO", logger="frcnn"):
        tuned = run(
            tmp_path, data, "tuned", subset(tmp_path, small_shapes_root, TARGET_CLASSES), pretrained=str(source)
        )
    state = load_checkpoint(tuned)
    assert state["config"]["ANCHOR_SCALES"] == [2, 4] and tuple(state["classes"]) == target
    assert any("class layers kept for square, circle, new for cross, ring" in r.getMessage() for r in caplog.records)


def test_a_torchvision_detector_fine_tunes_on_new_classes(small_shapes_root, tmp_path):
    torch.manual_seed(0)
    coco = detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=91)
    torch.save(coco.state_dict(), tmp_path / "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth")
    settings = ["TRAIN.SCALES", "[128]", "TEST.SCALES", "[128]"]
    pretrained = str(tmp_path / "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth")
    tuned = run(tmp_path, small_shapes_root.parent, "tv", "shapes", "mobilenet_v3_fpn", settings, pretrained=pretrained)
    state = load_checkpoint(tuned)
    assert state["model"]["roi_heads.predictor.cls_score.weight"].shape[0] == 8  # 7 shapes + background
    before = coco.state_dict()["backbone.body.0.0.weight"]
    assert torch.equal(state["model"]["backbone.base.body.0.0.weight"], before)  # frozen stem: loaded, unchanged


def test_a_detector_of_another_net_is_named(small_shapes_root, tmp_path):
    torch.manual_seed(0)
    coco = detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=91)
    torch.save(coco.state_dict(), tmp_path / "coco.pth")
    with pytest.raises(ValueError, match="holds a torchvision mobilenet_v3_fpn detector"):
        run(tmp_path, small_shapes_root.parent, "x", "shapes", pretrained=str(tmp_path / "coco.pth"))
