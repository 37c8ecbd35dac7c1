"""RoI feature extraction: a fixed P x P feature per RoI, by one of four modes.

- pool:  max over each of P x P bins, bin edges rounded to feature cells (RoIPool, Caffe rounding).
- align: average of bilinear samples in each of P x P bins (RoIAlign).
- crop:  the original's spatial-transformer crop: bilinear samples on a 2P x 2P grid whose first
         and last points lie on the RoI's corners, then a 2 x 2 max pool.
- deform: deformable RoI pooling (deform_roi_pool.py): RoIAlign's bins, each moved by an offset
         that an fc layer predicts from the RoI's aligned features (learnt; zero at the start).

pool, align and crop run torchvision.ops kernels (CPU and CUDA); nothing is compiled here. `crop` is RoIAlign
with one sample per bin on a RoI widened by half a grid step on each side, which puts the sample
points exactly on the crop grid; unlike grid_sample it needs no copy of the feature map per RoI.
On CPU, RoIAlign's gradient comes from roi_align_grad (the same values, several times faster).

Shapes: N images, C channels, H x W feature map, R RoIs as (R, 5) rows (image index, x1, y1, x2, y2)
in input-image pixels (inclusive convention), P = output size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import ops

from .deform_roi_pool import DeformRoIPool
from .roi_align_grad import roi_align

POOLING_MODES = ("pool", "align", "crop", "deform")
DEFORM_DEFAULT_SAMPLING = 2  # deform needs a fixed sample count per bin; 0 (adaptive) means this


class RoIPooler(nn.Module):
    """Extracts (R, C, P, P) features for R RoIs from an (N, C, H, W) feature map.

    Args:
        mode: "pool", "align", "crop" or "deform" (see module docstring).
        output_size: P.
        spatial_scale: feature cells per input pixel (1 / feature stride).
        sampling_ratio: samples per bin side (align, deform); 0 picks ceil(bin size) per RoI for
            align and DEFORM_DEFAULT_SAMPLING for deform.
        aligned: RoIAlign's half-pixel offset (align only; deform samples as aligned=False).
        in_channels: C, needed by deform's offset layer.
    """

    def __init__(
        self,
        mode: str,
        output_size: int,
        spatial_scale: float,
        sampling_ratio: int = 0,
        aligned: bool = False,
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in POOLING_MODES:
            raise ValueError(f"POOLING_MODE must be one of {POOLING_MODES}; got {mode!r}")
        self.mode = mode
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        if mode == "deform":
            if in_channels is None:
                raise ValueError("POOLING_MODE deform needs the feature channels (in_channels) for its offset layer")
            samples = sampling_ratio or DEFORM_DEFAULT_SAMPLING
            self.deform = DeformRoIPool(in_channels, output_size, spatial_scale, samples)

    def forward(self, features: Tensor | Sequence[Tensor], rois: Tensor) -> Tensor:
        """features: the map, or a list of levels whose first is read (a single-level model's)."""
        if not isinstance(features, Tensor):
            features = features[0]
        rois = rois.to(features.dtype)
        if self.mode == "pool":
            return ops.roi_pool(features, rois, self.output_size, self.spatial_scale)
        if self.mode == "deform":
            return self.deform(features, rois)
        if self.mode == "align":
            return roi_align(features, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)
        grid = 2 * self.output_size
        crops = roi_align(features, crop_grid_rois(rois, grid, self.spatial_scale), grid, self.spatial_scale, 1, True)
        return F.max_pool2d(crops, kernel_size=2, stride=2)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, output_size={self.output_size}, spatial_scale={self.spatial_scale}"


def crop_grid_rois(rois: Tensor, grid: int, spatial_scale: float) -> Tensor:
    """RoIs that make aligned RoIAlign (one sample per bin, grid x grid bins) sample at
    x1*s + i * (x2 - x1)*s / (grid - 1), i = 0 .. grid-1, in feature coordinates (s = spatial_scale).

    Aligned RoIAlign samples at (x1'*s - 0.5) + (i + 0.5) * (x2' - x1')*s / grid; matching the two
    gives a step d = (x2 - x1)*s / (grid - 1), x1' = x1 + (0.5 - d/2) / s, x2' = x1' + grid*d / s.
    """
    step = (rois[:, 3:5] - rois[:, 1:3]) * spatial_scale / (grid - 1)
    start = rois[:, 1:3] + (0.5 - 0.5 * step) / spatial_scale
    end = start + grid * step / spatial_scale
    return torch.cat((rois[:, :1], start, end), dim=1)
