"""The original faster-rcnn.pytorch's detector files (convert/original.py), built here in its exact
key layout (its vgg16.py / resnet.py / rpn.py modules, random weights) and read as checkpoints."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from frcnn.convert import LoadContext, as_checkpoint, original
from frcnn.data.datasets.pascal_voc import VOC_CLASSES
from frcnn.inference.torch_detector import detect_images, load_detector

CAFFE_MEANS_BGR = torch.tensor([102.9801, 115.9465, 122.7717]).view(1, 3, 1, 1)
# Small inputs and few RoIs: the tests run in seconds on a CPU.
SMALL = ["TEST.SCALES", "[96]", "TEST.MAX_SIZE", "160", "TEST.RPN_PRE_NMS_TOP_N", "200", "TEST.RPN_POST_NMS_TOP_N", "8"]


def add_original_heads(model: nn.Module, din: int, dout: int, classes: int, anchors: int, agnostic: bool) -> None:
    """The original's _RPN (RPN_Conv 512 wide, 2A scores, 4A deltas) and RCNN_cls_score / RCNN_bbox_pred."""
    rpn = nn.Module()
    rpn.RPN_Conv = nn.Conv2d(din, 512, 3, 1, 1)
    rpn.RPN_cls_score = nn.Conv2d(512, 2 * anchors, 1, 1, 0)
    rpn.RPN_bbox_pred = nn.Conv2d(512, 4 * anchors, 1, 1, 0)
    model.RCNN_rpn = rpn
    model.RCNN_cls_score = nn.Linear(dout, classes)
    model.RCNN_bbox_pred = nn.Linear(dout, 4 if agnostic else 4 * classes)
    for layer in (rpn.RPN_cls_score, rpn.RPN_bbox_pred, model.RCNN_cls_score, model.RCNN_bbox_pred):
        nn.init.normal_(layer.bias)  # zero biases would hide a bias put in the wrong place


def original_vgg16(classes: int = 21, anchors: int = 9, agnostic: bool = False) -> nn.Module:
    """lib/model/faster_rcnn/vgg16.py: features without the last max pool, classifier without its last layer."""
    vgg = torchvision.models.vgg16()
    model = nn.Module()
    model.RCNN_base = nn.Sequential(*list(vgg.features._modules.values())[:-1])
    model.RCNN_top = nn.Sequential(*list(vgg.classifier._modules.values())[:-1])
    add_original_heads(model, 512, 4096, classes, anchors, agnostic)
    return model.eval()


def original_resnet50(classes: int = 21, anchors: int = 9, agnostic: bool = False) -> nn.Module:
    """lib/model/faster_rcnn/resnet.py: Caffe ResNet (stride on each stage's first 1x1 conv, max
    pool kernel 3, stride 2, padding 0, ceil mode), RCNN_base conv1..layer3, RCNN_top layer4."""
    net = torchvision.models.resnet50()
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
    for stage in (net.layer2, net.layer3, net.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    model = nn.Module()
    model.RCNN_base = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
    model.RCNN_top = nn.Sequential(net.layer4)
    add_original_heads(model, 1024, 2048, classes, anchors, agnostic)
    return model.eval()


def original_features(model: nn.Module, rgb: torch.Tensor) -> torch.Tensor:
    """What the original computed: BGR minus the Caffe pixel means through RCNN_base."""
    return model.RCNN_base(rgb.float().flip(1) - CAFFE_MEANS_BGR)


def our_features(model: nn.Module, rgb: torch.Tensor) -> torch.Tensor:
    """This project's stride-16 features of an unpadded batch (the backbone gives one level)."""
    features = model.backbone(model.normalize(rgb, torch.tensor([list(rgb.shape[-2:])] * rgb.shape[0])))
    return features[0] if isinstance(features, (list, tuple)) else features


def original_rpn_foreground(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """rpn.py: reshape the 2A scores to (N, 2, A*H, W), softmax over the 2, foreground = channels
    A..2A-1 (proposal_layer.py), ordered (y, x, anchor) as its proposal layer flattens them."""
    hidden = F.relu(model.RCNN_rpn.RPN_Conv(features))
    scores = model.RCNN_rpn.RPN_cls_score(hidden)
    n, c, h, w = scores.shape
    prob = F.softmax(scores.view(n, 2, (c // 2) * h, w), dim=1).view(n, c, h, w)
    return prob[:, c // 2 :].permute(0, 2, 3, 1).reshape(n, -1)


def original_head(model: nn.Module, pooled: torch.Tensor, vgg: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """faster_rcnn.py's _head_to_tail, then the class softmax and the box deltas."""
    fc7 = model.RCNN_top(pooled.flatten(1)) if vgg else model.RCNN_top(pooled).mean(3).mean(2)
    return F.softmax(model.RCNN_cls_score(fc7), dim=1), model.RCNN_bbox_pred(fc7)


def save_original(model: nn.Module, path: Path, pooling_mode: str, agnostic: bool) -> Path:
    """The dict the original's trainval_net.py saved (BatchNorm's num_batches_tracked included)."""
    state = {"session": 1, "epoch": 6, "model": model.state_dict(), "optimizer": {}}
    torch.save({**state, "pooling_mode": pooling_mode, "class_agnostic": agnostic}, path)
    return path


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    torch.manual_seed(0)
    model = original_vgg16()
    folder = tmp_path_factory.mktemp("models")
    path = save_original(model, folder / "faster_rcnn_1_6_10021.pth", "align", False)
    detector = load_detector(path, overrides=SMALL, net="vgg16", dataset="pascal_voc", data_dir=folder)
    return model, detector


@pytest.fixture(scope="module")
def res50_original():
    torch.manual_seed(1)
    return original_resnet50()


# VGG16: the names each of the original's keys must land under (written out, not derived).
VGG16_NAMES = {
    **{f"RCNN_base.{i}.": f"backbone.base.{i}." for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)},
    "RCNN_top.0.": "roi_heads.box_head.1.",
    "RCNN_top.3.": "roi_heads.box_head.4.",
    "RCNN_rpn.RPN_Conv.": "rpn.head.conv.",
    "RCNN_rpn.RPN_bbox_pred.": "rpn.head.deltas.",
    "RCNN_cls_score.": "roi_heads.predictor.cls_score.",
    "RCNN_bbox_pred.": "roi_heads.predictor.bbox_pred.",
}


def test_vgg16_file_loads_with_every_weight_in_place(vgg16_file):
    model, detector = vgg16_file
    ours = detector.model.state_dict()
    theirs = model.state_dict()
    checked = 0
    for key, value in theirs.items():
        prefix = next((p for p in VGG16_NAMES if key.startswith(p)), None)
        if prefix is None:
            continue
        target = ours[VGG16_NAMES[prefix] + key[len(prefix) :]]
        assert torch.equal(target, value), key
        checked += 1
    assert checked == len(theirs) - 2  # all but the RPN scores, checked next
    a = 9
    w, b = theirs["RCNN_rpn.RPN_cls_score.weight"], theirs["RCNN_rpn.RPN_cls_score.bias"]
    assert torch.allclose(ours["rpn.head.objectness.weight"], w[a:] - w[:a])
    assert torch.allclose(ours["rpn.head.objectness.bias"], b[a:] - b[:a])
    assert detector.model.channel_order == "BGR"  # fed as the original fed it
    means = [102.9801, 115.9465, 122.7717]
    assert torch.allclose(ours["pixel_mean"].flatten(), torch.tensor(means))
    assert torch.equal(ours["pixel_std"].flatten(), torch.ones(3))


def test_vgg16_file_takes_classes_and_settings_from_dataset_and_file(vgg16_file):
    _, detector = vgg16_file
    assert detector.classes == ("__background__", *VOC_CLASSES)
    assert detector.classes[1] == "aeroplane" and detector.classes[20] == "tvmonitor" and len(detector.classes) == 21
    assert detector.net == "vgg16" and detector.dataset == "pascal_voc"
    assert detector.cfg.POOLING_MODE == "align" and detector.cfg.CLASS_AGNOSTIC is False
    assert detector.cfg.TRAIN.BBOX_NORMALIZE_STDS == [0.1, 0.1, 0.2, 0.2]
    assert detector.cfg.ANCHOR_SCALES == [8, 16, 32]
    assert detector.cfg.TEST.SCALES == [96]  # the --set pairs apply on top
    assert detector.cfg.TEST.RPN_MIN_SIZE == 0  # the original never filtered small proposals
    assert detector.cfg.PRETRAINED_FORMAT == "caffe"


def test_vgg16_computes_what_the_original_computed(vgg16_file):
    model, detector = vgg16_file
    ours = detector.model
    torch.manual_seed(2)
    image = torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        features = our_features(ours, image)
        expected = original_features(model, image)
        assert features.shape == expected.shape == (1, 512, 4, 6)
        assert torch.allclose(features, expected, rtol=1e-4, atol=1e-3)
        logits, _ = ours.rpn.head(expected)
        foreground = original_rpn_foreground(model, expected)
        assert torch.allclose(torch.sigmoid(logits), foreground, atol=1e-6)
        assert foreground.max() - foreground.min() > 0.5  # probabilities that differ: a real comparison
        pooled = torch.randn(3, 512, 7, 7)
        scores, deltas = ours.roi_heads.predictor(ours.roi_heads.box_head(pooled))
        want_scores, want_deltas = original_head(model, pooled, vgg=True)
        assert torch.allclose(F.softmax(scores, 1), want_scores, atol=1e-6)
        assert torch.allclose(deltas, want_deltas, atol=1e-5)
    (det,) = detect_images(detector, [np.full((120, 90, 3), 200, np.uint8)])
    assert det["boxes"].shape[1] == 4 and ((det["labels"] >= 1) & (det["labels"] <= 20)).all()
    assert (det["boxes"][:, 2] <= 90).all() and (det["boxes"][:, 3] <= 120).all()


def test_res50_caffe_file_computes_what_the_original_computed(tmp_path):
    torch.manual_seed(4)
    res50_original = original_resnet50(agnostic=True)
    path = save_original(res50_original, tmp_path / "faster_rcnn_1_10_625.pth", "crop", True)
    detector = load_detector(path, overrides=SMALL, net="res50", dataset="pascal_voc", data_dir=tmp_path)
    assert detector.cfg.POOLING_MODE == "crop" and detector.cfg.CLASS_AGNOSTIC is True
    ours = detector.model
    stage = ours.backbone.base[2][0]
    assert stage.conv1.stride == (2, 2) and stage.conv2.stride == (1, 1)  # the Caffe layout
    torch.manual_seed(3)
    image = torch.randint(0, 256, (1, 3, 83, 117), dtype=torch.uint8)  # odd sizes: max pool rounding shows
    with torch.no_grad():
        features = our_features(ours, image)
        expected = original_features(res50_original, image)
        assert features.shape == expected.shape
        assert (features - expected).abs().max() < 1e-5 * expected.abs().max()  # float rounding only
        unsaturated = expected / expected.abs().max()  # random weights give huge features; the RPN saturates on them
        logits, _ = ours.rpn.head(unsaturated)
        foreground = original_rpn_foreground(res50_original, unsaturated)
        assert torch.allclose(torch.sigmoid(logits), foreground, atol=1e-6)
        assert foreground.max() - foreground.min() > 0.5
        pooled = torch.randn(2, 1024, 7, 7)
        scores, deltas = ours.roi_heads.predictor(ours.roi_heads.box_head(pooled))
        want_scores, want_deltas = original_head(res50_original, pooled, vgg=False)
        assert deltas.shape == (2, 4)
        assert torch.allclose(F.softmax(scores, 1), want_scores, atol=1e-6)
        assert torch.allclose(deltas, want_deltas, atol=1e-5)
    (det,) = detect_images(detector, [np.full((90, 120, 3), 128, np.uint8)])
    assert det["boxes"].shape[1] == 4 and len(det["scores"]) == len(det["labels"])
    assert ((det["labels"] >= 1) & (det["labels"] <= 20)).all()


def convert(
    state: dict, net: str | None = "res50", dataset: str | None = "pascal_voc", data_dir: Path = Path("nowhere")
):
    return as_checkpoint(state, Path("models/faster_rcnn_1_6_100.pth"), LoadContext(net, dataset, data_dir))


def original_state(model: nn.Module, **heads: torch.Tensor) -> dict:
    return {"model": {**model.state_dict(), **heads}, "pooling_mode": "align", "class_agnostic": False}


def test_file_of_the_original_is_recognised(res50_original):
    assert original.recognises({"model": res50_original.state_dict()})
    assert original.recognises({"model": {f"module.{k}": v for k, v in res50_original.state_dict().items()}})
    assert not original.recognises({"model": {"backbone.body.conv1.weight": torch.zeros(1)}})
    assert not original.recognises(res50_original.state_dict())


def test_missing_unexpected_and_misshapen_keys_are_named(res50_original):
    state = original_state(res50_original)
    del state["model"]["RCNN_base.6.2.conv2.weight"]
    state["model"]["RCNN_extra.weight"] = torch.zeros(3)
    state["model"]["RCNN_rpn.RPN_Conv.bias"] = torch.zeros(256)
    with pytest.raises(original.OriginalCheckpointError) as info:
        convert(state)
    message = str(info.value)
    assert "missing keys: RCNN_base.6.2.conv2.weight" in message
    assert "unexpected keys: RCNN_extra.weight" in message
    assert "shape mismatches: RCNN_rpn.RPN_Conv.bias (file (256,), model (512,))" in message


def test_another_backbone_is_named_as_such(res50_original):
    with pytest.raises(original.OriginalCheckpointError) as info:
        convert(original_state(res50_original), net="res101")
    message = str(info.value)
    assert "missing keys: RCNN_base.6.6.conv1.weight" in message and "is --net res101 the backbone" in message
    with pytest.raises(original.OriginalCheckpointError, match="RCNN_base.0.weight"):
        convert(original_state(res50_original), net="vgg16")


def test_net_must_be_named(res50_original):
    with pytest.raises(ValueError, match="does not say its backbone: name it with --net"):
        convert(original_state(res50_original), net=None)
    with pytest.raises(ValueError, match="--net tiny is not one of them"):
        convert(original_state(res50_original), net="tiny")


def test_class_count_mismatch_is_reported(res50_original):
    coco_heads = {
        "RCNN_cls_score.weight": torch.zeros(81, 2048),
        "RCNN_cls_score.bias": torch.zeros(81),
        "RCNN_bbox_pred.weight": torch.zeros(324, 2048),
        "RCNN_bbox_pred.bias": torch.zeros(324),
    }
    with pytest.raises(original.ClassCountError) as info:
        convert(original_state(res50_original, **coco_heads))
    assert "trained on 80 classes" in str(info.value) and "--dataset pascal_voc has 20" in str(info.value)


def res50_heads(anchors: int, classes: int) -> dict:
    """The original's RPN and box-predictor tensors of a ResNet for `anchors` anchors per cell and
    `classes` classes (background included)."""
    return {
        "RCNN_rpn.RPN_cls_score.weight": torch.randn(2 * anchors, 512, 1, 1),
        "RCNN_rpn.RPN_cls_score.bias": torch.randn(2 * anchors),
        "RCNN_rpn.RPN_bbox_pred.weight": torch.randn(4 * anchors, 512, 1, 1),
        "RCNN_rpn.RPN_bbox_pred.bias": torch.randn(4 * anchors),
        "RCNN_cls_score.weight": torch.randn(classes, 2048),
        "RCNN_cls_score.bias": torch.randn(classes),
        "RCNN_bbox_pred.weight": torch.randn(4 * classes, 2048),
        "RCNN_bbox_pred.bias": torch.randn(4 * classes),
    }


def test_coco_file_takes_coco_names_and_four_anchor_scales(res50_original, tmp_path):
    """COCO's 80 names in category-id order (no annotation file here), anchors [4, 8, 16, 32]."""
    a = 12
    heads = res50_heads(a, 81)
    state = original_state(res50_original, **heads)
    checkpoint = convert(state, dataset="coco", data_dir=tmp_path)
    classes = checkpoint["classes"]
    assert len(classes) == 81 and classes[:4] == ("__background__", "person", "bicycle", "car")
    assert classes[-1] == "toothbrush" and "N/A" not in classes
    assert checkpoint["config"]["ANCHOR_SCALES"] == [4, 8, 16, 32] and checkpoint["dataset"] == "coco"
    w = heads["RCNN_rpn.RPN_cls_score.weight"]
    assert torch.allclose(checkpoint["model"]["rpn.head.objectness.weight"], w[a:] - w[:a])
    state["model"].update({k: v[:21] for k, v in heads.items() if k.startswith("RCNN_cls_score")})
    state["model"].update({k: v[:84] for k, v in heads.items() if k.startswith("RCNN_bbox_pred")})
    with pytest.raises(original.OriginalCheckpointError, match="the file has 12 anchors per cell, .* give 9"):
        convert(state, dataset="pascal_voc")  # VOC's anchors are [8, 16, 32]: 9 per cell


def test_visual_genome_classes_come_from_its_vocabulary(res50_original, tmp_path):
    vocab = tmp_path / "genome" / "1600-400-20" / "objects_vocab.txt"
    vocab.parent.mkdir(parents=True)
    vocab.write_text("man,men\nshirt\ntree,trees\n")
    a = 12
    heads = res50_heads(a, 4)
    checkpoint = convert(original_state(res50_original, **heads), dataset="vg", data_dir=tmp_path)
    assert checkpoint["classes"] == ("__background__", "man", "shirt", "tree")


def test_dataset_defaults_to_the_folder_the_file_is_in(res50_original):
    state = original_state(res50_original)
    context = LoadContext(net="res50", dataset=None)
    assert as_checkpoint(state, Path("models/res50/pascal_voc_0712/f.pth"), context)["dataset"] == "pascal_voc_0712"
    assert as_checkpoint(state, Path("elsewhere/f.pth"), context)["dataset"] == "pascal_voc"  # the original's default


def test_class_agnostic_flag_comes_from_the_box_layer_when_the_file_has_none(res50_original):
    heads = {"RCNN_bbox_pred.weight": torch.zeros(4, 2048), "RCNN_bbox_pred.bias": torch.zeros(4)}
    state = original_state(res50_original, **heads)
    del state["class_agnostic"], state["pooling_mode"]
    checkpoint = convert(state)
    assert checkpoint["config"]["CLASS_AGNOSTIC"] is True
    assert checkpoint["model"]["roi_heads.predictor.bbox_pred.weight"].shape == (4, 2048)
    state["class_agnostic"] = False  # a flag that contradicts the layer: the layer's shape is named
    with pytest.raises(original.OriginalCheckpointError, match=r"RCNN_bbox_pred.weight \(file \(4, 2048\)"):
        convert(state)
