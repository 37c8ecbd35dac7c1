"""The traceable one-image graph (DetectionGraph) and its input preparation, in PyTorch alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CFGS

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.loader import collate
from frcnn.export.graph import DetectionGraph
from frcnn.export.onnx import resize_for_model
from frcnn.modeling import build_model
from frcnn.structures.batch import Sample

TINY = ["TINY.CHANNELS", "[8,16,16,32]", "TINY.HEAD_DIM", "32", "RPN_CHANNELS", "32", "ANCHOR_SCALES", "[2,4,8]"]


def tiny_model(*settings: str):
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=[*TINY, *settings])
    torch.manual_seed(0)
    model, _ = build_model(cfg, "tiny", 4, use_default_weights=False)
    with torch.no_grad():
        model.roi_heads.predictor.cls_score.weight.normal_(std=0.5)
    return model.eval(), cfg


@pytest.mark.parametrize("size", [(96, 128), (130, 61), (33, 200)])
def test_the_graph_gives_forwards_detections_for_one_image(size):
    model, _ = tiny_model()
    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
    batch = collate([Sample.unlabelled(image, 1.5, 0)])  # padded to 32 as the loader pads
    with torch.no_grad():
        expected = model(batch.images, batch.image_sizes, batch.image_scales)[0]
        boxes, scores, labels = DetectionGraph(model)(image[None].float(), torch.tensor([1.5, 1.5]))
    assert len(scores) == len(expected["scores"]) > 0
    assert torch.equal(labels, expected["labels"]) and torch.equal(scores, expected["scores"])
    torch.testing.assert_close(boxes, expected["boxes"])


def test_deform_pooling_is_refused_with_the_reason():
    model, _ = tiny_model("POOLING_MODE", "deform")
    with pytest.raises(ValueError, match="POOLING_MODE deform cannot be exported: ONNX has no operator"):
        DetectionGraph(model)


@pytest.mark.parametrize("size", [(200, 300), (61, 47)])  # down- and up-scaled to 120 px
def test_torchvision_convention_input_is_resized_as_the_model_resizes(size):
    """resize_for_model's OpenCV resize before normalising equals the model's bilinear resize
    (torchvision's) after it, within 0.01 grey levels (the two compute their interpolation weights
    in different precisions): the affine normalisation commutes with the resize."""
    cfg = build_config("res50_fpn", CFGS, set_cfgs=["TEST.SCALES", "[120]", "TEST.MAX_SIZE", "200"])
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    resized, scale = resize_for_model(image, cfg)
    h, w = size
    factor = min(120 / min(h, w), 200 / max(h, w))
    source = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    expected = F.interpolate(source, scale_factor=factor, mode="bilinear", recompute_scale_factor=True)
    assert resized.shape == tuple(expected.shape) and resized.dtype == np.float32
    np.testing.assert_allclose(resized, expected.numpy(), atol=1e-2)
    np.testing.assert_allclose(scale, [expected.shape[-1] / w, expected.shape[-2] / h])


def test_original_convention_input_is_the_loaders_resize():
    _, cfg = tiny_model("TEST.SCALES", "[100]", "TEST.MAX_SIZE", "1000")
    image = np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    resized, scale = resize_for_model(image, cfg)
    assert resized.shape == (1, 3, 100, 160) and np.allclose(scale, [2.0, 2.0])
    assert np.all(resized == np.round(resized))  # OpenCV's uint8 resize: whole values
