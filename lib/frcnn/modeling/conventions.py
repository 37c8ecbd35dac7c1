"""The numeric conventions a detector was trained with, in one place.

Two families of detectors are built here, and the same weights give different boxes under the
other family's conventions, so each model carries its own (config key CONVENTION):

- "original": the 2017 project's (and py-faster-rcnn's). Boxes have inclusive pixel corners
  (width = x2 - x1 + 1, the VOC devkit's convention); the data loader resizes the uint8 image;
  anchors centred in a batch's padding never become proposals.
- "torchvision": torchvision's Faster R-CNN models. Boxes are continuous (width = x2 - x1); the
  model resizes the float image after normalisation (bilinear, no corner alignment) and pads the
  batch to a multiple of 32; every anchor may become a proposal; detections narrower than 0.01 px
  are dropped.

Whatever the convention inside, a model's detections leave it as BoxMode.XYXY (inclusive) in
original-image pixels, and its training targets enter it as BoxMode.XYXY: `to_model` and
`from_model` are the only conversions.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..structures import BoxMode


@dataclass(frozen=True)
class Convention:
    """Args:
    name: the CONVENTION value.
    box_offset: added to x2 - x1 to get a width: 1 for inclusive corners, 0 for continuous ones.
    resize_in_model: at inference the model receives original images and resizes them itself.
    size_divisible: the model pads its batch to a multiple of this (1: as given).
    anchors_in_padding: anchors centred in the padding of a batch may become proposals.
    detection_min_size: detections whose width or height is below this are dropped.
    """

    name: str
    box_offset: float
    resize_in_model: bool
    size_divisible: int
    anchors_in_padding: bool
    detection_min_size: float

    @property
    def box_mode(self) -> BoxMode:
        return BoxMode.XYXY if self.box_offset else BoxMode.XYXY_EXCLUSIVE

    def to_model(self, boxes: Tensor) -> Tensor:
        """BoxMode.XYXY boxes -> this convention's."""
        return BoxMode.convert(boxes, BoxMode.XYXY, self.box_mode)

    def from_model(self, boxes: Tensor) -> Tensor:
        """This convention's boxes -> BoxMode.XYXY."""
        return BoxMode.convert(boxes, self.box_mode, BoxMode.XYXY)


CONVENTIONS = {
    "original": Convention("original", 1.0, False, 1, False, 0.0),
    "torchvision": Convention("torchvision", 0.0, True, 32, True, 1e-2),
}


def get_convention(name: str) -> Convention:
    if name not in CONVENTIONS:
        raise ValueError(f"CONVENTION must be one of {', '.join(CONVENTIONS)}; got {name!r}")
    return CONVENTIONS[name]
