"""A detector exported to ONNX (export.py), run by ONNX Runtime with the Python API's contract:
`Detector.from_file("model.onnx")(image)` gives the same Detections as the PyTorch checkpoint.

onnxruntime is an optional dependency (pip install -e .[onnx]).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from easydict import EasyDict

from ..config import from_plain
from ..export.onnx import read_metadata, resize_for_model
from .detections import DetectorBase


@dataclass
class OnnxDetector(DetectorBase):
    """An exported detector: the ONNX Runtime session and what the export stored beside the graph."""

    session: Any  # onnxruntime.InferenceSession
    cfg: EasyDict
    classes: tuple[str, ...]
    net: str
    checkpoint: Path
    dataset: str | None = None

    @classmethod
    def from_file(cls, path: str | Path, threads: int = 0) -> OnnxDetector:
        """Open an exported file; threads: ONNX Runtime's intra-op threads (0: its default)."""
        try:
            import onnxruntime
        except ImportError as e:
            raise ImportError("running an .onnx detector needs onnxruntime: pip install -e .[onnx]") from e
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX file {path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = read_metadata(session.get_modelmeta().custom_metadata_map, path)
        return cls(session, from_plain(meta["config"]), tuple(meta["classes"]), meta["net"], path, meta.get("dataset"))

    def detect_arrays(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """As torch_detector.detect_images: RGB uint8 images -> boxes (D, 4) BoxMode.XYXY in each
        image's own pixels, scores (D,), labels (D,). The graph takes one image at a time."""
        found = []
        for image in images:
            tensor, scale = resize_for_model(image, self.cfg)
            boxes, scores, labels = self.session.run(None, {"image": tensor, "scale": scale})
            found.append({"boxes": boxes, "scores": scores, "labels": labels})
        return found
