"""Faster R-CNN in PyTorch: training, evaluation and inference with no compile step.

from frcnn import Detector
det = Detector.from_file("models/tiny/shapes/faster_rcnn_1_4_600.pth")
found = det("images/test_000.jpg", threshold=0.5)
"""

__version__ = "0.1.0"
__all__ = ["Detections", "Detector"]


def __getattr__(name: str):
    # Imported on first use, so that `import frcnn.structures` does not load the whole engine.
    if name == "Detector":
        from .engine.inference import Detector

        return Detector
    if name == "Detections":
        from .engine.api import Detections

        return Detections
    raise AttributeError(f"module 'frcnn' has no attribute {name!r}")
