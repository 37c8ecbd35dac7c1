"""Box geometry, for both box conventions a model may use (conventions.py).

`offset` is what a width adds to x2 - x1. offset 1 (the default): a box is (x1, y1, x2, y2) in
0-based pixel indices with both corners inside the box, so a box that covers exactly one pixel has
width x2 - x1 + 1 = 1 (the PASCAL VOC devkit's convention, the original project's, BoxMode.XYXY).
offset 0: continuous corners, width x2 - x1 (torchvision's, BoxMode.XYXY_EXCLUSIVE).

Shapes: `...` is any number of leading batch dimensions; M and G count boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision import ops


def box_area(boxes: Tensor, offset: float = 1.0) -> Tensor:
    """(..., 4) -> (...) areas; degenerate boxes have area 0."""
    wh = (boxes[..., 2:] - boxes[..., :2] + offset).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(boxes_a: Tensor, boxes_b: Tensor, offset: float = 1.0) -> Tensor:
    """IoU of every pair: (..., M, 4) x (..., G, 4) -> (..., M, G), batch dims broadcast."""
    area_a = box_area(boxes_a, offset)
    area_b = box_area(boxes_b, offset)
    top_left = torch.maximum(boxes_a[..., :, None, :2], boxes_b[..., None, :, :2])
    bottom_right = torch.minimum(boxes_a[..., :, None, 2:], boxes_b[..., None, :, 2:])
    wh = (bottom_right - top_left + offset).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return inter / union.clamp(min=1e-6)


def clip_boxes(boxes: Tensor, image_sizes: Tensor, offset: float = 1.0) -> Tensor:
    """Clip (N, M, 4) boxes to each image's (h, w) in `image_sizes` (N, 2): x to [0, w - offset]."""
    sizes = image_sizes.to(boxes.dtype)
    x_max = (sizes[:, 1] - offset).view(-1, 1)
    y_max = (sizes[:, 0] - offset).view(-1, 1)
    zero = boxes.new_zeros(())
    return torch.stack(
        (
            boxes[..., 0].clamp(min=zero).minimum(x_max),
            boxes[..., 1].clamp(min=zero).minimum(y_max),
            boxes[..., 2].clamp(min=zero).minimum(x_max),
            boxes[..., 3].clamp(min=zero).minimum(y_max),
        ),
        dim=-1,
    )


def box_sizes(boxes: Tensor, offset: float = 1.0) -> Tensor:
    """(..., 4) -> (..., 2) widths and heights."""
    return boxes[..., 2:] - boxes[..., :2] + offset


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float, offset: float = 1.0) -> Tensor:
    """NMS within each group (image, or image x class): indices kept, by decreasing score.

    boxes (M, 4) float32, scores (M,), groups (M,) int64. (torchvision's NMS takes widths as x2 - x1.)
    """
    boxes = boxes.float()
    if offset:
        boxes = torch.cat((boxes[:, :2], boxes[:, 2:] + offset), dim=1)
    if torch.compiler.is_exporting():
        # torchvision's picks its method by the box count, which export cannot know; this is its
        # coordinate trick (groups moved apart), with a max that is defined for no boxes too.
        reach = torch.cat((boxes.flatten(), boxes.new_zeros(1))).max() + 1
        return ops.nms(boxes + (groups.to(boxes.dtype) * reach)[:, None], scores.float(), iou_threshold)
    return ops.batched_nms(boxes, scores.float(), groups, iou_threshold)


def rank_within_groups(groups: Tensor, num_groups: int) -> Tensor:
    """For elements already sorted so each group's members are contiguous and in order of
    preference, the position of each element inside its group (0 for the first)."""
    counts = torch.bincount(groups, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(groups.numel(), device=groups.device) - starts[groups]


def top_per_group(groups: Tensor, scores: Tensor, num_groups: int, k: int) -> Tensor:
    """Indices of the k highest scores of each group, grouped by ascending group id and sorted by
    decreasing score inside a group. groups (M,) int64, scores (M,)."""
    by_score = torch.argsort(scores, descending=True)
    by_group = by_score[torch.argsort(groups[by_score], stable=True)]
    rank = rank_within_groups(groups[by_group], num_groups)
    return by_group[rank < k]
