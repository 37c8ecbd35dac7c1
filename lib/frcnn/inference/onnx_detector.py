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
from ..export.onnx import INPUT_NAMES, OUTPUT_NAMES, ExportedFileError, read_metadata, resize_for_model
from ..utils.errors import one_line, reading
from ..utils.files import is_file
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
    def from_file(cls, path: str | Path, threads: int = 0, spin: bool = False) -> OnnxDetector:
        """Open an exported file; threads: ONNX Runtime's intra-op threads (0: its default).

        spin: let those threads spin between runs, waiting for the next (ONNX Runtime's default).
        Off here: a spinning session takes the cores from whatever runs between its calls (reading
        and resizing the next image, another model). On the 2-core CPU, a fp32 mobilenet_v3_fpn
        session took 96 ms an image instead of 65 while an idle int8 session beside it spun, and
        68 with spinning off; alone, a session is as fast either way (docs/deploy.md, Int8)."""
        try:
            import onnxruntime
        except ImportError as e:
            raise ImportError("running an .onnx detector needs onnxruntime: pip install -e .[onnx]") from e
        path = Path(path)
        if not is_file(path):
            raise FileNotFoundError(f"no ONNX file {path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        with reading(path):
            session = _session(onnxruntime, path, options)
            try:
                custom = session.get_modelmeta().custom_metadata_map
            except UnicodeDecodeError as e:
                raise ExportedFileError(f"{path}: its metadata is not UTF-8 text ({e.reason})") from None
            meta = read_metadata(custom, path)
            try:
                cfg = from_plain(meta["config"])
            except ValueError as e:
                raise ExportedFileError(f"{path}: its stored config does not load ({one_line(e)})") from None
        return cls(session, cfg, tuple(meta["classes"]), meta["net"], path, meta.get("dataset"))

    def detect_arrays(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """As torch_detector.detect_images: RGB uint8 images -> boxes (D, 4) BoxMode.XYXY in each
        image's own pixels, scores (D,), labels (D,). The graph takes one image at a time."""
        found = []
        for image in images:
            tensor, scale = resize_for_model(image, self.cfg)
            found.append(self._run(tensor, scale))
        return found

    def _run(self, tensor: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
        try:
            boxes, scores, labels = self.session.run(None, {"image": tensor, "scale": scale})
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error types: the file's graph failed
            raise ExportedFileError(f"{self.checkpoint}: its graph failed on an image ({one_line(e, 200)})") from None
        shapes = [np.shape(v) for v in (boxes, scores, labels)]
        n = shapes[1][0] if len(shapes[1]) == 1 else -1
        if shapes != [(n, 4), (n,), (n,)]:
            raise ExportedFileError(
                f"{self.checkpoint}: its graph gave boxes, scores and labels of shapes {shapes}, not (D, 4), (D,), (D,)"
            )
        return {
            "boxes": np.asarray(boxes, np.float32),
            "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(labels, np.int64),
        }


def _session(onnxruntime: Any, path: Path, options: Any) -> Any:
    """An ONNX Runtime session of the file, whose graph takes and gives what export.py's does."""
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's InvalidProtobuf, Fail, InvalidGraph, ...
        raise ExportedFileError(f"{path}: not an ONNX graph ONNX Runtime can load ({one_line(e, 200)})") from None
    try:
        inputs = tuple(i.name for i in session.get_inputs())
        outputs = tuple(o.name for o in session.get_outputs())
    except UnicodeDecodeError as e:
        raise ExportedFileError(f"{path}: its graph's input and output names are not UTF-8 text ({e.reason})") from None
    if inputs != INPUT_NAMES or outputs != OUTPUT_NAMES:
        raise ExportedFileError(
            f"{path}: not a detector graph of export.py (inputs {list(inputs)}, outputs {list(outputs)}; "
            f"expected {list(INPUT_NAMES)} and {list(OUTPUT_NAMES)})"
        )
    return session
