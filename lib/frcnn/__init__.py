"""Faster R-CNN in PyTorch: training, evaluation and inference with no compile step."""

__version__ = "0.1.0"
