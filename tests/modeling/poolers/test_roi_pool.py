"""Each pooling mode on a hand-computed feature map.

The feature map holds f(y, x) = 10 y + x. Bilinear interpolation reproduces a linear function
exactly, so every sample's value is known: it is 10 y + x at the sample point.
"""

import pytest
import torch
import torch.nn.functional as F

from frcnn.modeling.poolers.roi_pool import RoIPooler


def linear_map(h: int = 8, w: int = 8) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return (10 * y + x)[None, None]


def test_pool_takes_max_of_rounded_bins():
    roi = torch.tensor([[0.0, 1.0, 1.0, 4.0, 4.0]])  # 4 x 4 cells from (1, 1): bins of 2 x 2
    out = RoIPooler("pool", 2, spatial_scale=1.0)(linear_map(), roi)
    assert out[0, 0].tolist() == [[22.0, 24.0], [42.0, 44.0]]


def test_align_averages_bilinear_samples():
    roi = torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0]])  # 4 x 4 from (1, 1): bin centres at 2 and 4
    for ratio in (1, 2, 0):
        out = RoIPooler("align", 2, spatial_scale=1.0, sampling_ratio=ratio)(linear_map(), roi)
        assert torch.allclose(out[0, 0], torch.tensor([[22.0, 24.0], [42.0, 44.0]])), ratio


def test_align_respects_spatial_scale():
    roi = torch.tensor([[0.0, 16.0, 16.0, 80.0, 80.0]])  # image pixels; feature = pixels / 16
    out = RoIPooler("align", 2, spatial_scale=1 / 16, sampling_ratio=1)(linear_map(), roi)
    assert torch.allclose(out[0, 0], torch.tensor([[22.0, 24.0], [42.0, 44.0]]))


def test_crop_samples_corner_grid_then_max_pools():
    # 2P = 4 samples per side at 1 + i * 4/3: 1, 2.33, 3.67, 5; 2x2 max pool keeps each quadrant's max.
    roi = torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0]])
    out = RoIPooler("crop", 2, spatial_scale=1.0)(linear_map(), roi)
    third = 1 + 4 / 3
    expected = torch.tensor([[10 * third + third, 10 * third + 5], [50 + third, 55.0]])
    assert torch.allclose(out[0, 0], expected, atol=1e-4)


def grid_sample_crop(features: torch.Tensor, rois: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    """The original's crop: an affine grid per RoI through grid_sample (copies features per RoI)."""
    n, c, h, w = features.shape
    out = []
    for roi in rois:
        x1, y1, x2, y2 = (roi[1:] * scale).tolist()
        xs = torch.linspace(x1, x2, 2 * size) / (w - 1) * 2 - 1
        ys = torch.linspace(y1, y2, 2 * size) / (h - 1) * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
        out.append(F.grid_sample(features[int(roi[0])][None], grid, align_corners=True))
    return F.max_pool2d(torch.cat(out), 2)


def test_crop_matches_grid_sample_reference():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 12, 16, generator=g)
    xy = torch.rand(6, 2, generator=g) * torch.tensor([150.0, 100.0])
    wh = torch.rand(6, 2, generator=g) * 80 + 4
    rois = torch.cat(
        (torch.tensor([0, 1, 0, 1, 1, 0.0])[:, None], xy, torch.minimum(xy + wh, torch.tensor([240.0, 176.0]))), 1
    )
    ours = RoIPooler("crop", 7, spatial_scale=1 / 16)(features, rois)
    assert torch.allclose(ours, grid_sample_crop(features, rois, 7, 1 / 16), atol=1e-4)


@pytest.mark.parametrize("mode", ["pool", "align", "crop", "deform"])
def test_gradients_reach_features(mode):
    features = torch.randn(2, 4, 10, 10, requires_grad=True)
    rois = torch.tensor([[0.0, 10.0, 10.0, 90.0, 70.0], [1.0, 0.0, 0.0, 150.0, 150.0]])
    out = RoIPooler(mode, 7, spatial_scale=1 / 16, in_channels=4)(features, rois)
    assert out.shape == (2, 4, 7, 7)
    out.sum().backward()
    assert features.grad[0].abs().sum() > 0 and features.grad[1].abs().sum() > 0


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="POOLING_MODE"):
        RoIPooler("warp", 7, 1 / 16)
    with pytest.raises(ValueError, match="deform needs the feature channels"):
        RoIPooler("deform", 7, 1 / 16)


@pytest.mark.parametrize("ratio", [1, 2])
def test_deform_starts_as_align_with_the_same_samples(ratio):
    """Zero-initialised offsets: deform pools exactly what align (aligned=False) pools, so a model
    switched to deform starts where align starts; the sample count follows ROI_ALIGN_SAMPLING_RATIO."""
    g = torch.Generator().manual_seed(ratio)
    features = torch.randn(2, 3, 12, 16, generator=g, dtype=torch.float64)
    rois = torch.tensor([[0, 4.0, 8.0, 120.0, 90.0], [1, 30.0, 20.0, 200.0, 170.0]], dtype=torch.float64)
    deform = RoIPooler("deform", 7, 1 / 16, sampling_ratio=ratio, in_channels=3).double()
    align = RoIPooler("align", 7, 1 / 16, sampling_ratio=ratio)
    assert deform.deform.sampling_ratio == ratio
    assert torch.allclose(deform(features, rois), align(features, rois), atol=1e-12)
    assert RoIPooler("deform", 7, 1 / 16, sampling_ratio=0, in_channels=3).deform.sampling_ratio == 2


@pytest.mark.parametrize("ratio", [0, 1, 2])
@pytest.mark.parametrize("aligned", [False, True])
def test_cpu_roi_align_gradient_equals_torchvision(ratio, aligned):
    from torchvision import ops

    from frcnn.modeling.poolers.roi_align_grad import roi_align

    g = torch.Generator().manual_seed(ratio * 2 + aligned)
    features = torch.randn(2, 3, 12, 17, generator=g, requires_grad=True)
    xy = torch.rand(40, 2, generator=g) * torch.tensor([17 * 16 * 1.2, 12 * 16 * 1.2]) - 10  # some RoIs leave the map
    wh = torch.rand(40, 2, generator=g) * torch.tensor([60.0, 400.0])  # thin and tall: large adaptive grids
    rois = torch.cat((torch.randint(0, 2, (40, 1), generator=g).float(), xy, xy + wh), 1)
    upstream = torch.randn(40, 3, 7, 7, generator=g)
    ours = roi_align(features, rois, 7, 1 / 16, ratio, aligned)
    reference = ops.roi_align(features, rois, 7, 1 / 16, ratio, aligned)
    assert torch.equal(ours, reference)
    grad_ours = torch.autograd.grad(ours, features, upstream)[0]
    grad_reference = torch.autograd.grad(reference, features, upstream)[0]
    assert torch.allclose(grad_ours, grad_reference, atol=1e-5)
