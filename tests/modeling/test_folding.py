"""Frozen batch norms folded into their convolutions (modeling/backbones/folding.py): the same
outputs and gradients as the unfolded modules, the same state_dict, and buffers read live."""

import copy

import pytest
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck
from torchvision.ops import FrozenBatchNorm2d

from frcnn.config import default_config
from frcnn.modeling.backbones import build_backbone
from frcnn.modeling.backbones.folding import FoldedConv2d, fold_frozen_norms, unfold_frozen_norms


def randomise_norms(module: nn.Module, seed: int) -> None:
    """Statistics far from the identity map, so that a fold that skipped them would show."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            for t in (m.running_mean, m.bias):
                t.copy_(torch.randn(t.shape, generator=g))
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.2 + 1)


def conv_norm_relu(bias: bool) -> nn.Sequential:
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=bias), FrozenBatchNorm2d(8), nn.ReLU())
    randomise_norms(block, 1)
    return block


@pytest.mark.parametrize("bias", [False, True])
def test_a_folded_block_gives_the_same_output_gradient_and_state_dict(bias):
    plain = conv_norm_relu(bias)
    folded = copy.deepcopy(plain)
    assert fold_frozen_norms(folded) == 1 and type(folded[0]) is FoldedConv2d
    x = torch.randn(2, 3, 12, 10)
    torch.testing.assert_close(folded(x), plain(x), rtol=1e-5, atol=1e-5)
    folded(x).square().sum().backward()
    plain(x).square().sum().backward()
    torch.testing.assert_close(folded[0].weight.grad, plain[0].weight.grad, rtol=1e-4, atol=1e-4)
    before, after = plain.state_dict(), folded.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_the_norms_buffers_are_read_at_every_call():
    """Loading other statistics after folding changes the output as it changes the plain block's."""
    plain, folded = conv_norm_relu(False), conv_norm_relu(False)
    fold_frozen_norms(folded)
    randomise_norms(plain, 2)
    folded.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 9, 9)
    torch.testing.assert_close(folded(x), plain(x), rtol=1e-5, atol=1e-5)


def test_resnet_blocks_fold_their_named_pairs_and_unfold_back():
    down = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), FrozenBatchNorm2d(32))
    torch.manual_seed(0)
    plain = Bottleneck(16, 8, downsample=down, norm_layer=FrozenBatchNorm2d).eval()
    randomise_norms(plain, 3)
    folded = copy.deepcopy(plain)
    assert fold_frozen_norms(folded) == 4  # conv1/bn1, conv2/bn2, conv3/bn3 and the shortcut's pair
    x = torch.randn(1, 16, 8, 8)
    torch.testing.assert_close(folded(x), plain(x), rtol=1e-5, atol=1e-5)
    unfold_frozen_norms(folded)
    assert [type(m) for m in folded.modules()] == [type(m) for m in plain.modules()]
    assert fold_frozen_norms(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))) == 0  # trainable: not frozen


@pytest.mark.parametrize("net, folds", [("mobilenet_v2", 52), ("res50", 53), ("vgg16", 0)])
def test_built_backbones_come_folded(net, folds):
    """Every frozen norm of the built nets follows a convolution (torchvision's ImageNet models)."""
    parts, _, _ = build_backbone(net, default_config(), use_default_weights=False)
    found = sum(type(m) is FoldedConv2d for part in (parts.backbone, parts.head) for m in part.modules())
    frozen = sum(isinstance(m, FrozenBatchNorm2d) for part in (parts.backbone, parts.head) for m in part.modules())
    assert found == folds == frozen
