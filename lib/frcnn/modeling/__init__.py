"""The detector: backbones, anchors, box coding, RPN, RoI pooling and heads."""

from .faster_rcnn import FasterRCNN, build_model

__all__ = ["FasterRCNN", "build_model"]
