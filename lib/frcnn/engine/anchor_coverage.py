"""How many training boxes the RPN's anchors can learn: the share of boxes that some anchor
matches at the RPN's positive IoU, with the anchors at their real places on the stride grid of
each image at the training scale (a 12 px box between two 16 px cells never reaches IoU 0.7 with a
12 px anchor), and only anchors wholly inside the image, as the RPN's labelling takes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.datasets.base import ImageRecord
from ..data.loader import SIZE_DIVISIBILITY, resize_scale
from ..modeling import FasterRCNN
from ..modeling.box_ops import box_iou


@torch.no_grad()
def anchor_coverage(
    model: FasterRCNN, records: Sequence[ImageRecord], scale: int, max_size: int, positive_iou: float
) -> tuple[float, int]:
    """(share of boxes whose best inside anchor reaches positive_iou, number of boxes), boxes and
    images scaled as the loader scales them; flipped copies, difficult and crowd objects left out."""
    generator, strides = model.rpn.anchor_generator, model.backbone.strides
    offset = model.convention.box_offset
    matched = total = 0
    for record in (r for r in records if not r.flipped and len(r.boxes)):
        factor = resize_scale(record.height, record.width, scale, max_size)
        keep = ~(record.difficult | record.crowd)
        if not keep.any():
            continue
        h, w = round(record.height * factor), round(record.width * factor)
        padded = tuple(-(-side // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY for side in (h, w))
        grids = [(-(-padded[0] // s), -(-padded[1] // s)) for s in strides]
        anchors = torch.cat(generator(grids, padded)).cpu()
        below = torch.lt if offset else torch.le
        inside = (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & below(anchors[:, 2], w) & below(anchors[:, 3], h)
        boxes = torch.from_numpy(record.boxes[keep] * factor).float()
        if offset == 0:
            boxes[:, 2:] += 1  # the loader's inclusive corners, in the model's continuous convention
        best = box_iou(anchors[inside], boxes, offset).max(dim=0).values if inside.any() else torch.zeros(len(boxes))
        matched += int((best >= positive_iou).sum())
        total += len(boxes)
    return (matched / total if total else float("nan")), total
