"""Feature pyramid nets: built as torchvision builds them, and trainable with every pooling mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CFGS
from torchvision.models import detection
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchors
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import LevelMapper

from frcnn.config import build_config
from frcnn.convert.torchvision_detectors import rename_key
from frcnn.data.datasets.factory import dataset_spec
from frcnn.inference.torch_detector import detect_images, load_detector
from frcnn.modeling import build_model
from frcnn.modeling.anchors import PyramidAnchorGenerator
from frcnn.modeling.backbones import NETS
from frcnn.modeling.poolers.pyramid_roi_pool import PyramidRoIPooler
from frcnn.modeling.poolers.roi_pool import RoIPooler
from frcnn.runs.checkpoint import load_checkpoint
from frcnn.training.build import TrainOptions, train

FPN_NETS = {  # --net -> torchvision's builder of the same architecture
    "res50_fpn": detection.fasterrcnn_resnet50_fpn,
    "res50_fpn_v2": detection.fasterrcnn_resnet50_fpn_v2,
    "mobilenet_v3_fpn": detection.fasterrcnn_mobilenet_v3_large_fpn,
    "res101_fpn": None,
    "mobilenet_v2_fpn": None,
}


def test_every_net_is_registered():
    assert set(FPN_NETS) <= set(NETS)


@pytest.mark.parametrize("net", sorted(k for k, v in FPN_NETS.items() if v))
def test_parameters_are_torchvisions_key_for_key_and_shape_for_shape(net):
    """Every tensor of torchvision's model has its place, of the same shape, in ours, and no more."""
    with torch.device("meta"):
        theirs = FPN_NETS[net](weights=None, weights_backbone=None, num_classes=5).state_dict()
        ours, _ = build_model(build_config(net, CFGS), net, 5, use_default_weights=False)
    ours = {k: v.shape for k, v in ours.state_dict().items() if k not in ("pixel_mean", "pixel_std")}
    theirs = {rename_key(k): v.shape for k, v in theirs.items() if not k.endswith("num_batches_tracked")}
    assert theirs == {k: v for k, v in ours.items() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize(
    ("net", "strides", "pooled"),
    [
        ("res50_fpn", (4, 8, 16, 32, 64), 4),
        ("mobilenet_v3_fpn", (32, 32, 64), 2),
        ("mobilenet_v2_fpn", (8, 16, 32, 64), 3),
    ],
)
def test_pyramid_levels_have_their_strides(net, strides, pooled):
    model, _ = build_model(build_config(net, CFGS), net, 3, use_default_weights=False)
    assert model.backbone.strides == strides and model.backbone.pooled_levels == pooled
    with torch.no_grad():
        levels = model.backbone.eval()(torch.zeros(1, 3, 128, 192))
    assert [tuple(f.shape[-2:]) for f in levels] == [(-(-128 // s), -(-192 // s)) for s in strides]
    assert all(f.shape[1] == 256 for f in levels)


def test_anchors_equal_torchvisions_on_every_level():
    sizes, ratios = [[32], [64], [128], [256], [512]], [0.5, 1.0, 2.0]
    ours = PyramidAnchorGenerator(sizes, ratios)
    theirs = TorchvisionAnchors(tuple(tuple(s) for s in sizes), (tuple(ratios),) * 5)
    grids = [(56, 75), (28, 38), (14, 19), (7, 10), (4, 5)]  # 224 x 300 padded: the last level's step is 60
    features = [torch.zeros(1, 1, h, w) for h, w in grids]
    expected = theirs(ImageList(torch.zeros(1, 3, 224, 300), [(224, 300)]), features)[0]
    assert torch.equal(torch.cat(ours(grids, (224, 300))), expected)
    assert ours.num_anchors == 3


def test_level_rule_is_the_fpn_papers():
    """k = floor(4 + log2(sqrt(area) / 224)), clamped to levels 2..5 (P2..P5), as torchvision maps it."""
    pooler = PyramidRoIPooler([RoIPooler("align", 7, 1 / s, 2) for s in (4, 8, 16, 32)], (4, 8, 16, 32), offset=0.0)
    sides = torch.tensor([10.0, 111.9, 112.0, 223.0, 224.0, 448.0, 2000.0])
    rois = torch.stack((torch.zeros(7), torch.zeros(7), torch.zeros(7), sides, sides), dim=1)
    # side 112 is level 3 (index 1), 224 level 4, 448 level 5; below 112: level 2; above: level 5
    assert pooler.assign_levels(rois).tolist() == [0, 0, 1, 1, 2, 3, 3]
    assert torch.equal(pooler.assign_levels(rois), LevelMapper(2, 5)([rois[:, 1:]]))


def test_pyramid_roi_align_equals_torchvisions_multiscale_roi_align():
    torch.manual_seed(0)
    strides = (4, 8, 16, 32)
    features = [torch.randn(2, 8, 256 // s, 320 // s) for s in strides]
    boxes = [
        torch.tensor([[0.0, 0, 30, 40], [10, 20, 200, 180], [5, 5, 300, 250]]),
        torch.tensor([[50.0, 60, 120, 90]]),
    ]
    ours = PyramidRoIPooler([RoIPooler("align", 7, 1 / s, 2) for s in strides], strides, offset=0.0)
    rois = torch.cat([torch.cat((torch.full((len(b), 1), float(i)), b), dim=1) for i, b in enumerate(boxes)])
    theirs = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    expected = theirs({str(i): f for i, f in enumerate(features)}, boxes, [(256, 320), (256, 320)])
    assert torch.allclose(ours(features, rois), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("net", "mode"),
    [
        ("mobilenet_v3_fpn", "pool"),
        ("mobilenet_v3_fpn", "align"),
        ("mobilenet_v3_fpn", "crop"),
        ("mobilenet_v2_fpn", "align"),
    ],
)
def test_a_pyramid_net_trains_with_every_pooling_mode(net, mode, small_shapes_root, tmp_path):
    settings = ["TRAIN.SCALES", "[128]", "TEST.SCALES", "[128]", "POOLING_MODE", mode]
    cfg = build_config(net, CFGS, dataset_spec("shapes").profile, set_cfgs=settings)
    options = TrainOptions(
        dataset="shapes",
        net=net,
        batch_size=2,
        epochs=1,
        save_dir=str(tmp_path),
        data_dir=str(small_shapes_root.parent),
    )
    path = train(options, cfg)
    state = load_checkpoint(path)
    assert state["config"]["POOLING_MODE"] == mode and state["config"]["CONVENTION"] == "torchvision"
    detector = load_detector(path)
    image = np.full((96, 160, 3), 128, np.uint8)
    out = detect_images(detector, [image])[0]
    assert out["boxes"].shape[1] == 4 and np.all(out["boxes"][:, 2] <= 160 - 1 + 1e-3)
