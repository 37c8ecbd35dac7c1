"""Deformable RoI pooling: zero offsets against torchvision's roi_align, gradients, a hand case on a
ramp, and the DeformRoIPool module (initialisation, offset scaling, gradient to the offset fc)."""

import pytest
import torch
from torchvision import ops

from frcnn.modeling.poolers.deform_roi_pool import DeformRoIPool, deform_roi_pool

INSIDE_ROIS = [  # (image, x1, y1, x2, y2) in pixels; feature map 12 x 16 cells at stride 8 (96 x 128 px)
    [0.0, 8.0, 8.0, 72.0, 56.0],
    [1.0, 20.5, 13.0, 100.0, 90.0],
    [0.0, 40.0, 30.0, 45.0, 33.0],  # smaller than a cell: width clamped to 1 cell
    [1.0, 0.0, 0.0, 127.0, 95.0],
]
CROSSING_ROIS = [
    [0.0, -30.0, -20.0, 40.0, 30.0],
    [1.0, 90.0, 60.0, 180.0, 140.0],
    [0.0, -100.0, 50.0, 200.0, 110.0],
]


def ramp_x(h: int = 8, w: int = 12, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(1, 1, h, w) feature map whose value is the x coordinate of the cell."""
    return torch.arange(w, dtype=dtype).expand(h, w)[None, None].clone()


@pytest.mark.parametrize("sampling_ratio", [1, 2])
@pytest.mark.parametrize("rois", [INSIDE_ROIS, CROSSING_ROIS], ids=["inside", "crossing"])
def test_zero_offsets_equal_torchvision_roi_align(sampling_ratio, rois):
    torch.manual_seed(0)
    features = torch.randn(2, 5, 12, 16, dtype=torch.float64)
    rois = torch.tensor(rois, dtype=torch.float64)
    expected = ops.roi_align(features, rois, 7, 1 / 8, sampling_ratio=sampling_ratio, aligned=False)
    zeros = torch.zeros(rois.shape[0], 2, 7, 7, dtype=torch.float64)
    for offsets in (zeros, None):
        out = deform_roi_pool(features, rois, offsets, 7, 1 / 8, sampling_ratio)
        assert out.shape == expected.shape
        assert torch.allclose(out, expected, rtol=0, atol=1e-6)


def test_gradcheck_features_and_offsets():
    torch.manual_seed(0)
    features = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    # Sample points at start + (p + (i + 0.5) / 2) * bin; 0.13 offsets keep them off integer lines,
    # one RoI crosses the border (points clamped, or reading one row only, or dropped).
    rois = torch.tensor(
        [[0, 0.4, 1.2, 4.1, 4.4], [1, 1.3, 0.6, 5.2, 3.9], [0, -1.7, 2.3, 3.1, 6.4]], dtype=torch.float64
    )
    offsets = (0.13 + 0.6 * torch.rand(3, 2, 2, 2, dtype=torch.float64)) * torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    offsets.requires_grad_(True)

    def pool(f, o):
        return deform_roi_pool(f, rois, o, 2, 1.0, 2)

    points = _sample_points(rois, offsets.detach(), 2, 1.0, 2)
    assert (points - points.round()).abs().min() > 1e-3  # no sample sits on a bilinear kink
    assert torch.autograd.gradcheck(pool, (features, offsets), eps=1e-6, atol=1e-6)


def _sample_points(rois, offsets, p, scale, s):
    """All sample coordinates (x and y) of all bins, shifted by the offsets."""
    start = rois[:, 1:3] * scale
    bin_size = (rois[:, 3:5] * scale - start).clamp(min=1) / p
    steps = torch.arange(p, dtype=rois.dtype)[:, None] + (torch.arange(s, dtype=rois.dtype) + 0.5) / s
    base = start[:, :, None, None] + bin_size[:, :, None, None] * steps  # (R, 2, P, S)
    xs = base[:, 0, None, :, :] + offsets[:, 0, :, :, None]
    ys = base[:, 1, :, None, :] + offsets[:, 1, :, :, None]
    return torch.cat((xs.flatten(), ys.flatten()))


def test_offset_gradient_is_not_zero():
    features = ramp_x()
    rois = torch.tensor([[0.0, 2.0, 2.0, 6.0, 6.0]], dtype=torch.float64)
    offsets = torch.full((1, 2, 2, 2), 0.3, dtype=torch.float64, requires_grad=True)
    deform_roi_pool(features, rois, offsets, 2, 1.0, 2).sum().backward()
    # d output / d dx = 1 on the x ramp (every bin), d output / d dy = 0.
    assert torch.allclose(offsets.grad[:, 0], torch.ones(1, 2, 2, dtype=torch.float64))
    assert torch.allclose(offsets.grad[:, 1], torch.zeros(1, 2, 2, dtype=torch.float64))


@pytest.mark.parametrize("sampling_ratio", [1, 2])
def test_shift_on_x_ramp_raises_bin_by_shift(sampling_ratio):
    features = ramp_x()
    rois = torch.tensor([[0.0, 2.0, 1.0, 6.0, 5.0]], dtype=torch.float64)  # bins 2 cells wide
    plain = deform_roi_pool(features, rois, None, 2, 1.0, sampling_ratio)
    assert torch.allclose(plain[0, 0], torch.tensor([[3.0, 5.0], [3.0, 5.0]], dtype=torch.float64))
    offsets = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    offsets[0, 0, 1, 0] = 1.75  # bin (p_y=1, p_x=0) right by 1.75 cells
    offsets[0, 0, 0, 1] = -0.5  # bin (0, 1) left by 0.5
    offsets[0, 1, 0, 0] = 2.25  # bin (0, 0) down: a y shift does not change a ramp in x
    out = deform_roi_pool(features, rois, offsets, 2, 1.0, sampling_ratio)
    expected = plain.clone()
    expected[0, 0, 1, 0] += 1.75
    expected[0, 0, 0, 1] -= 0.5
    assert torch.allclose(out, expected, rtol=0, atol=1e-12)


def test_no_rois_gives_empty_output_and_zero_gradient():
    features = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.zeros(0, 5, dtype=torch.float64)
    offsets = torch.zeros(0, 2, 7, 7, dtype=torch.float64, requires_grad=True)
    out = deform_roi_pool(features, rois, offsets, 7, 1.0, 2)
    assert out.shape == (0, 3, 7, 7)
    out.sum().backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


def make_module(c: int = 3, p: int = 2, gamma: float = 0.1) -> DeformRoIPool:
    return DeformRoIPool(c, p, spatial_scale=0.5, sampling_ratio=2, gamma=gamma).double()


def test_module_at_initialisation_equals_plain_pool():
    torch.manual_seed(0)
    features = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    rois = torch.tensor([[0.0, 2.0, 2.0, 12.0, 10.0], [1.0, 4.0, 1.0, 16.0, 15.0]], dtype=torch.float64)
    module = make_module()
    out = module(features, rois)
    assert module.offset_lr_mult == 0.01
    assert isinstance(module.offset_fc, torch.nn.Linear)
    assert torch.equal(module.last_offsets, torch.zeros(2, 2, 2, 2, dtype=torch.float64))
    assert torch.allclose(out, ops.roi_align(features, rois, 2, 0.5, sampling_ratio=2, aligned=False), atol=1e-12)


def test_module_offsets_are_gamma_times_fc_output_times_roi_size():
    features = ramp_x(h=10, w=14)
    # Feature cells: x from 2 to 10 (width 8), y from 1 to 5 (height 4); at spatial_scale 0.5.
    rois = torch.tensor([[0.0, 4.0, 2.0, 20.0, 10.0]], dtype=torch.float64)
    module = make_module(c=1, gamma=0.2)
    plain = deform_roi_pool(features, rois, None, 2, 0.5, 2)
    with torch.no_grad():  # normalised x offset of every bin = 0.5, y = 0.25 (order: x of P*P bins, then y)
        module.offset_fc.bias.copy_(torch.tensor([0.5] * 4 + [0.25] * 4))
    out = module(features, rois)
    assert torch.allclose(module.last_offsets[0, 0], torch.full((2, 2), 0.5, dtype=torch.float64))
    assert torch.allclose(module.last_offsets[0, 1], torch.full((2, 2), 0.25, dtype=torch.float64))
    # x shift = gamma * 0.5 * width 8 = 0.8 cells (the ramp rises by it); y shift 0.2 changes nothing.
    assert torch.allclose(out, plain + 0.8, rtol=0, atol=1e-12)
    # A weight reading the pooled input: the x offset of bin (0, 1) = 0.1 * its plain value (8).
    with torch.no_grad():
        module.offset_fc.bias.zero_()
        module.offset_fc.weight.zero_()
        module.offset_fc.weight[1, 1] = 0.1  # x offset of bin (0, 1) from the plain value of bin (0, 1)
    out = module(features, rois)
    shift = 0.2 * 0.1 * plain[0, 0, 0, 1] * 8
    expected = plain.clone()
    expected[0, 0, 0, 1] += shift
    assert torch.allclose(out, expected, rtol=0, atol=1e-12)


def test_module_backward_reaches_zero_initialised_offset_fc():
    torch.manual_seed(0)
    features = torch.randn(1, 3, 8, 10, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0.0, 2.3, 2.1, 12.6, 10.7], [0.0, 5.1, 1.4, 16.2, 14.9]], dtype=torch.float64)
    module = make_module()
    module(features, rois).square().sum().backward()
    assert module.offset_fc.weight.grad.abs().sum() > 0
    assert module.offset_fc.bias.grad.abs().sum() > 0
    assert features.grad.abs().sum() > 0


def test_module_with_hidden_layer_starts_as_plain_pool():
    torch.manual_seed(0)
    features = torch.randn(1, 3, 8, 10, dtype=torch.float64)
    rois = torch.tensor([[0.0, 2.0, 2.0, 12.0, 10.0]], dtype=torch.float64)
    module = DeformRoIPool(3, 2, 0.5, hidden_size=16).double()
    out = module(features, rois)
    assert torch.allclose(out, ops.roi_align(features, rois, 2, 0.5, sampling_ratio=2, aligned=False), atol=1e-12)
    out.square().sum().backward()
    assert module.offset_fc[-1].weight.grad.abs().sum() > 0


def test_runs_under_bfloat16_autocast():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    module = DeformRoIPool(4, 7, spatial_scale=1 / 16, sampling_ratio=2)
    with torch.no_grad():
        module.offset_fc.weight.normal_(std=0.01)
    image = torch.randn(2, 3, 12, 16)
    rois = torch.tensor([[0.0, 10.0, 20.0, 150.0, 160.0], [1.0, -20.0, 0.0, 100.0, 210.0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = conv(image)
        out = module(features, rois)
    assert out.shape == (2, 4, 7, 7)
    assert out.dtype == features.dtype
    assert torch.isfinite(out).all()
    out.float().sum().backward()
    assert torch.isfinite(module.offset_fc.weight.grad).all()
    assert module.offset_fc.weight.grad.abs().sum() > 0


def test_rejects_adaptive_sampling_and_bad_offsets():
    features = torch.zeros(1, 1, 4, 4)
    rois = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]])
    with pytest.raises(ValueError):
        deform_roi_pool(features, rois, None, 2, 1.0, 0)
    with pytest.raises(ValueError):
        deform_roi_pool(features, rois, torch.zeros(1, 2, 3, 3), 2, 1.0, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    features = torch.randn(2, 5, 12, 16, dtype=torch.float64)
    rois = torch.tensor(INSIDE_ROIS + CROSSING_ROIS, dtype=torch.float64)
    offsets = 0.7 * torch.randn(len(rois), 2, 7, 7, dtype=torch.float64)
    results = []
    for device in ("cpu", "cuda"):
        f = features.to(device).requires_grad_(True)
        o = offsets.to(device).requires_grad_(True)
        out = deform_roi_pool(f, rois.to(device), o, 7, 1 / 8, 2)
        grads = torch.autograd.grad(out.square().sum(), (f, o))
        results.append([t.cpu() for t in (out, *grads)])
    for on_cpu, on_cuda in zip(*results):
        assert torch.allclose(on_cpu, on_cuda, rtol=0, atol=1e-10)
    zero = deform_roi_pool(features.cuda(), rois.cuda(), None, 7, 1 / 8, 2)
    expected = ops.roi_align(features.cuda(), rois.cuda(), 7, 1 / 8, sampling_ratio=2, aligned=False)
    assert torch.allclose(zero, expected, rtol=0, atol=1e-6)
