"""torchvision's RoIAlign with a faster backward pass on CPU.

The forward pass is torchvision.ops.roi_align itself. Its CPU backward walks every output element
on one thread and took a third of a training step of the small net. Here the same gradient comes
from matrix products: RoIAlign is linear in the features, and for one RoI its weights separate into
a (P, H) matrix along y and a (P, W) matrix along x (each bin's sample points and their bilinear
weights, divided by the samples per side), so the gradient of image n is
    sum over its RoIs r of  A_r^T  g_r  B_r      (per channel; g_r is the (P, P) output gradient).
A and B are computed exactly as torchvision places and weights samples (adaptive sample counts,
the half-pixel offset, clamping at the border, no contribution from points over a cell outside).
On CUDA, torchvision's own backward is used.

Shapes: N images, C channels, H x W feature map, R RoIs (R, 5), P = output size, G samples per
bin side (the largest over the RoIs when adaptive).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision import ops


def roi_align(
    features: Tensor, rois: Tensor, output_size: int, spatial_scale: float, sampling_ratio: int, aligned: bool
) -> Tensor:
    """torchvision.ops.roi_align, with the sparse backward on CPU when gradients are needed."""
    if features.device.type == "cpu" and features.requires_grad and torch.is_grad_enabled():
        return _RoIAlign.apply(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return ops.roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)


class _RoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, sampling_ratio, aligned):  # type: ignore[override]
        ctx.save_for_backward(rois)
        ctx.settings = (features.shape, features.dtype, output_size, spatial_scale, sampling_ratio, aligned)
        return ops.roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        (rois,) = ctx.saved_tensors
        shape, dtype, output_size, spatial_scale, sampling_ratio, aligned = ctx.settings
        return (
            roi_align_backward(grad_output, rois, shape, output_size, spatial_scale, sampling_ratio, aligned).to(dtype),
            None,
            None,
            None,
            None,
            None,
        )


def linear_taps(pos: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """torchvision's bilinear taps along one axis of `size` cells: for coordinates pos (...), the
    lower and upper cell (...) as floats, the upper one's weight frac (...), and whether the
    sample sits at or past the last cell (where both taps are that cell and frac is 0).
    Coordinates below 0 count as 0; which samples count at all (-1 <= pos <= size) is the
    caller's."""
    clamped = pos.clamp(min=0.0)
    low = clamped.floor()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    frac = torch.where(at_edge, torch.zeros_like(clamped), clamped - low)
    high = torch.where(at_edge, low, low + 1)
    return low, high, frac, at_edge


def _axis_weights(start: Tensor, roi_size: Tensor, sampling_ratio: int, output_size: int, size: int) -> Tensor:
    """(R, P, size): for each RoI and bin along one axis, the summed bilinear weight of its sample
    points on every feature row (or column), divided by the samples per side."""
    bin_size = roi_size / output_size
    if sampling_ratio > 0:
        grid = torch.full_like(roi_size, sampling_ratio)
    else:
        grid = torch.ceil(roi_size / output_size).clamp(min=1)
    r = start.shape[0]
    gmax = int(grid.max()) if r else 1
    p = torch.arange(output_size, dtype=start.dtype, device=start.device)[None, :, None]
    i = torch.arange(gmax, dtype=start.dtype, device=start.device)[None, None, :]
    pos = start[:, None, None] + p * bin_size[:, None, None] + (i + 0.5) * bin_size[:, None, None] / grid[:, None, None]
    used = ((i < grid[:, None, None]) & (pos >= -1.0) & (pos <= size)).to(start.dtype)
    low, high, frac, _ = linear_taps(pos, size)
    weights = torch.zeros((r, output_size, size), dtype=start.dtype, device=start.device)
    weights.scatter_add_(2, low.long().view(r, output_size, -1), ((1 - frac) * used).view(r, output_size, -1))
    weights.scatter_add_(2, high.long().view(r, output_size, -1), (frac * used).view(r, output_size, -1))
    return weights / grid[:, None, None]


def roi_align_backward(
    grad_output: Tensor,
    rois: Tensor,
    shape: torch.Size,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """Gradient of torchvision.ops.roi_align with respect to its (N, C, H, W) features."""
    n, c, height, width = shape
    if rois.shape[0] == 0:  # e.g. a pyramid level no RoI was assigned to
        return grad_output.new_zeros(shape, dtype=torch.float32)
    rois = rois.float()
    offset = 0.5 if aligned else 0.0
    start_x = rois[:, 1] * spatial_scale - offset
    start_y = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - start_x
    roi_h = rois[:, 4] * spatial_scale - offset - start_y
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    along_y = _axis_weights(start_y, roi_h, sampling_ratio, output_size, height)  # (R, P, H)
    along_x = _axis_weights(start_x, roi_w, sampling_ratio, output_size, width)  # (R, P, W)
    r, p = rois.shape[0], output_size
    # g_r B_r for every RoI: (R, C * P, P) @ (R, P, W) -> (R, C, P, W)
    partial = torch.bmm(grad_output.float().reshape(r, c * p, p), along_x).view(r, c, p, width)
    grad = torch.zeros((n, height, c, width), dtype=torch.float32, device=grad_output.device)
    images = rois[:, 0].long()
    for image in range(n):
        mine = images == image
        a = along_y[mine].reshape(-1, height)  # (R_n * P, H)
        u = partial[mine].permute(0, 2, 1, 3).reshape(-1, c * width)  # (R_n * P, C * W)
        grad[image] = (a.t() @ u).view(height, c, width)
    return grad.permute(0, 2, 1, 3)
