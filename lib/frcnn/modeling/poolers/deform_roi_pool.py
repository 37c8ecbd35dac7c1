"""Deformable RoI pooling (Dai et al., "Deformable Convolutional Networks", 2017), in pure PyTorch.

Each of the P x P bins of a RoI is RoIAlign's bin moved by its own offset: the bin's S x S sample
points are placed exactly as torchvision.ops.roi_align(aligned=False, sampling_ratio=S) places them,
all shifted by the bin's (dx, dy), and averaged. Nothing is compiled; it runs on CPU and CUDA.

Borders follow torchvision's bilinear rules exactly, per axis: a point with y < -1 or y > H
contributes 0, y <= 0 is read at 0, and a point whose floor is >= H - 1 reads row H - 1 alone (the
same for x and W). So with zero offsets the output equals torchvision's roi_align everywhere, RoIs
across the border included. The gradient with respect to an offset is 0 along an axis where the
point is clamped or dropped (y <= 0, floor(y) >= H - 1, outside); at integer coordinates, where
bilinear interpolation has a kink, it is a one-sided derivative (from above, except at 0 and H - 1).

Computation: the S x S points of one bin share the offset, so the bin's value is a sum of
K = 4 S^2 feature vectors (2 rows per y sample times 2 columns per x sample) with separable weights.
The feature map is laid out once as (N*H*W, C) rows (one copy, not one per RoI) and the output is
a sparse-dense product: a (R*P*P, N*H*W) matrix with K weights per row, times those rows. Nothing of
size R x K x C is formed, forward or backward; the gradients are sparse products as well.

Shapes: N images, C channels, H x W feature map, R RoIs as (R, 5) rows (image index, x1, y1, x2, y2)
in input-image pixels (inclusive corners, as in roi_pool.py), P = output size, S = samples per bin
side. Offsets are (R, 2, P, P) in feature-map cells: [:, 0] is the x shift, [:, 1] the y shift of
bin (p_y, p_x).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .roi_align_grad import linear_taps, roi_align


def deform_roi_pool(
    features: Tensor,
    rois: Tensor,
    offsets: Tensor | None,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
) -> Tensor:
    """(R, C, P, P): RoIAlign (aligned=False, S samples per bin side) with each bin shifted by its offset.

    Args:
        features: (N, C, H, W).
        rois: (R, 5) rows (image index, x1, y1, x2, y2) in input pixels; gets no gradient.
        offsets: (R, 2, P, P) shifts in feature cells ([:, 0] = x, [:, 1] = y), or None for zero.
        output_size: P.
        spatial_scale: feature cells per input pixel (1 / feature stride).
        sampling_ratio: S >= 1 (fixed; the adaptive 0 of roi_align is not supported).

    Differentiable with respect to features and offsets. Computes in float32 (float64 for float64
    features) with autocast off, and returns features' dtype.
    """
    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio must be >= 1; got {sampling_ratio}")
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    r, p = rois.shape[0], output_size
    if offsets is not None and offsets.shape != (r, 2, p, p):
        raise ValueError(f"offsets must have shape {(r, 2, p, p)}; got {tuple(offsets.shape)}")
    with torch.autocast(features.device.type, enabled=False):
        rois = rois.to(dtype)
        if offsets is None:
            offsets = torch.zeros((r, 2, p, p), dtype=dtype, device=features.device)
        out = _DeformRoIPool.apply(features.to(dtype), rois, offsets.to(dtype), p, spatial_scale, sampling_ratio)
    return out.to(features.dtype)


def roi_extent(rois: Tensor, spatial_scale: float) -> tuple[Tensor, Tensor]:
    """(R, 2) start and (R, 2) size, (x, y), of each RoI in feature cells, as roi_align(aligned=False)
    sees them: start = x1 * scale, size = max((x2 - x1) * scale, 1)."""
    start = rois[:, 1:3] * spatial_scale
    size = (rois[:, 3:5] * spatial_scale - start).clamp(min=1.0)
    return start, size


def _axis_taps(pos: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Bilinear taps along one axis with torchvision's border rules.

    pos (..., S) coordinates -> index (..., 2S) long, weight (..., 2S), and d weight / d pos (..., 2S),
    the two taps (low, high) of each sample side by side.
    """
    valid = (pos >= -1.0) & (pos <= size)
    low, high, frac, edge = linear_taps(pos, size)
    moving = (valid & (pos > 0) & ~edge).to(pos.dtype)  # where the weights move with pos
    index = torch.stack((low, high), dim=-1).long().flatten(-2)
    weight = (torch.stack((1 - frac, frac), dim=-1) * valid.to(pos.dtype)[..., None]).flatten(-2)
    dweight = torch.stack((-moving, moving), dim=-1).flatten(-2)
    return index, weight, dweight


def _sample_taps(
    rois: Tensor, offsets: Tensor, shape: torch.Size, output_size: int, spatial_scale: float, sampling_ratio: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For the B = R * P * P bins (r, p_y, p_x): (B, K) row indices into the (N*H*W, C) feature rows,
    (B, K) weights (averaging over the S x S samples included), and (B, K) derivatives of those weights
    with respect to the bin's x and y offsets."""
    _, _, height, width = shape
    p, s = output_size, sampling_ratio
    start, size = roi_extent(rois, spatial_scale)
    bin_size = size / p  # (R, 2)
    steps = torch.arange(p, dtype=rois.dtype, device=rois.device)[:, None]
    within = (torch.arange(s, dtype=rois.dtype, device=rois.device) + 0.5) / s
    base = start[:, :, None, None] + bin_size[:, :, None, None] * (steps + within)  # (R, 2, P, S)
    xs = base[:, 0, None, :, :] + offsets[:, 0, :, :, None]  # (R, P_y, P_x, S)
    ys = base[:, 1, :, None, :] + offsets[:, 1, :, :, None]
    ix, wx, dwx = (t.reshape(-1, 2 * s) for t in _axis_taps(xs, width))  # (B, 2S)
    iy, wy, dwy = (t.reshape(-1, 2 * s) for t in _axis_taps(ys, height))
    image = rois[:, 0].long().repeat_interleave(p * p)[:, None, None]
    index = ((image * height + iy[:, :, None]) * width + ix[:, None, :]).flatten(1)
    norm = 1.0 / (s * s)
    weight = (wy[:, :, None] * wx[:, None, :]).flatten(1) * norm
    dweight_x = (wy[:, :, None] * dwx[:, None, :]).flatten(1) * norm
    dweight_y = (dwy[:, :, None] * wx[:, None, :]).flatten(1) * norm
    return index, weight, dweight_x, dweight_y


def _feature_rows(features: Tensor) -> Tensor:
    """(N, C, H, W) -> (N*H*W, C): one row per feature cell, channels contiguous."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def _tap_matrix(index: Tensor, values: Tensor, columns: int, transpose: bool = False) -> Tensor:
    """The sparse (B, columns) matrix with values[b, k] at (b, index[b, k]) (or its transpose).
    COO, uncoalesced: repeated positions (two taps on one cell) add up, as COO defines."""
    bins = torch.arange(index.shape[0], device=index.device).repeat_interleave(index.shape[1])
    pairs = (index.reshape(-1), bins) if transpose else (bins, index.reshape(-1))
    size = (columns, index.shape[0]) if transpose else (index.shape[0], columns)
    return torch.sparse_coo_tensor(torch.stack(pairs), values.reshape(-1), size, check_invariants=False)


class _DeformRoIPool(torch.autograd.Function):
    """Output = A @ rows with A the sparse (B, N*H*W) tap-weight matrix; the feature gradient is
    A^T @ grad, the offset gradient (dA/dx @ rows) . grad per bin (likewise for y)."""

    @staticmethod
    def forward(ctx, features, rois, offsets, output_size, spatial_scale, sampling_ratio):  # type: ignore[override]
        r, c, p = rois.shape[0], features.shape[1], output_size
        index, weight, dweight_x, dweight_y = _sample_taps(
            rois, offsets, features.shape, output_size, spatial_scale, sampling_ratio
        )
        rows = _feature_rows(features)
        out = torch.sparse.mm(_tap_matrix(index, weight, rows.shape[0]), rows)  # (B, C)
        ctx.save_for_backward(features, index, weight, dweight_x, dweight_y)
        ctx.output_size = p
        return out.view(r, p, p, c).permute(0, 3, 1, 2).contiguous()

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        features, index, weight, dweight_x, dweight_y = ctx.saved_tensors
        n, c, height, width = features.shape
        p = ctx.output_size
        r = index.shape[0] // (p * p)
        grad_features = grad_offsets = None
        with torch.autocast(features.device.type, enabled=False):
            grad = grad_output.to(features.dtype).permute(0, 2, 3, 1).reshape(-1, c)  # (B, C)
            if ctx.needs_input_grad[0]:
                grad_rows = torch.sparse.mm(_tap_matrix(index, weight, n * height * width, transpose=True), grad)
                grad_features = grad_rows.view(n, height, width, c).permute(0, 3, 1, 2).contiguous()
            if ctx.needs_input_grad[2]:
                rows = _feature_rows(features)
                # d output / d x (then y) per bin, (B, C), dotted with the output gradient
                shifts = [
                    torch.sparse.mm(_tap_matrix(index, dweight, rows.shape[0]), rows).mul_(grad).sum(1)
                    for dweight in (dweight_x, dweight_y)
                ]
                grad_offsets = torch.stack(shifts).view(2, r, p, p).transpose(0, 1).contiguous()
        return grad_features, None, grad_offsets, None, None, None


class DeformRoIPool(nn.Module):
    """Deformable RoI pooling as in the paper: pool the RoI with RoIAlign's sampler (zero offsets),
    predict normalised offsets from the pooled features with an fc layer, and pool again with each bin
    shifted by  gamma * normalised offset * (RoI width, RoI height).

    The RoI size is the one the bins span, max((x2 - x1) * spatial_scale, 1) feature cells (and the
    same in y), so the normalised offsets are fractions of the RoI. The fc is zero-initialised (weights
    and bias), so training starts as plain RoIAlign. Train `offset_fc` at `offset_lr_mult` times the base
    learning rate, as in the paper. `last_offsets` holds the last normalised offsets, (R, 2, P, P),
    detached, [:, 0] = x, [:, 1] = y.

    Args:
        in_channels: C.
        output_size: P.
        spatial_scale: feature cells per input pixel (1 / feature stride).
        sampling_ratio: S, samples per bin side (fixed, >= 1).
        gamma: scale of the normalised offsets (0.1 in the paper).
        hidden_size: 0 for a single Linear(C*P*P, 2*P*P) as the offset branch; otherwise
            Linear(C*P*P, hidden_size), ReLU, Linear(hidden_size, 2*P*P), only the last zero-initialised.
    """

    offset_lr_mult = 0.01

    def __init__(
        self,
        in_channels: int,
        output_size: int,
        spatial_scale: float,
        sampling_ratio: int = 2,
        gamma: float = 0.1,
        hidden_size: int = 0,
    ) -> None:
        super().__init__()
        if sampling_ratio < 1:
            raise ValueError(f"sampling_ratio must be >= 1; got {sampling_ratio}")
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.gamma = gamma
        inputs, outputs = in_channels * output_size * output_size, 2 * output_size * output_size
        last = nn.Linear(hidden_size or inputs, outputs)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.offset_fc: nn.Module = (
            last if not hidden_size else nn.Sequential(nn.Linear(inputs, hidden_size), nn.ReLU(inplace=True), last)
        )
        self.offset_fc.lr_mult = self.offset_lr_mult  # training/optim.py build_optimizer reads it
        self.last_offsets: Tensor | None = None

    def forward(self, features: Tensor, rois: Tensor) -> Tensor:
        """(N, C, H, W) features, (R, 5) RoIs -> (R, C, P, P)."""
        p, scale, s = self.output_size, self.spatial_scale, self.sampling_ratio
        # The first pass has zero offsets, where deform_roi_pool equals RoIAlign: use its faster kernel.
        pooled = roi_align(features, rois.to(features.dtype), p, scale, s, False)
        normalised = self.offset_fc(pooled.flatten(1)).view(-1, 2, p, p)
        self.last_offsets = normalised.detach()
        _, size = roi_extent(rois.to(torch.float64 if features.dtype == torch.float64 else torch.float32), scale)
        offsets = self.gamma * normalised.to(size.dtype) * size[:, :, None, None]
        return deform_roi_pool(features, rois, offsets, p, scale, s)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, gamma={self.gamma}"
        )
