"""Faster R-CNN in PyTorch: training, evaluation and inference with no compile step.

from frcnn import Detector
det = Detector.from_file("models/tiny/shapes/faster_rcnn_1_4_600.pth")
found = det("images/test_000.jpg", threshold=0.5)
"""

__version__ = "0.1.0"
__all__ = ["Detections", "Detector"]


def __getattr__(name: str):
    # Imported on first use, so that `import frcnn.structures` does not load the models and runtimes.
    if name == "Detector":
        from .inference.torch_detector import Detector

        return Detector
    if name == "Detections":
        from .inference.detections import Detections

        return Detections
    raise AttributeError(f"module 'frcnn' has no attribute {name!r}")
