"""OnnxDetector.from_file: an .onnx file that is not export.py's detector is refused in one line
naming it, never with ONNX Runtime's traceback or a KeyError on its metadata."""

import json

import numpy as np
import pytest
from conftest import TINY_ONNX_METADATA, tiny_onnx

from frcnn.export.onnx import ExportedFileError
from frcnn.inference.onnx_detector import OnnxDetector


def test_a_detector_file_opens_and_runs(tmp_path):
    (tmp_path / "ok.onnx").write_bytes(tiny_onnx())
    detector = OnnxDetector.from_file(tmp_path / "ok.onnx")
    assert detector.classes == ("__background__", "circle", "square") and detector.cfg.TEST.SCALES == [64]
    (found,) = detector.detect_arrays([np.zeros((40, 50, 3), np.uint8)])
    assert found["boxes"].tolist() == [[4, 6, 20, 30]] and found["labels"].tolist() == [1]


def test_its_threads_do_not_spin_between_runs_unless_asked(tmp_path):
    (tmp_path / "ok.onnx").write_bytes(tiny_onnx())

    def spinning(detector):
        return detector.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    assert spinning(OnnxDetector.from_file(tmp_path / "ok.onnx")) == "0"
    assert spinning(OnnxDetector.from_file(tmp_path / "ok.onnx", spin=True)) == "1"


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_corrupt_file_is_one_line(tmp_path, cut):
    """Truncated or overwritten bytes: ONNX Runtime's InvalidProtobuf was a traceback."""
    data = tiny_onnx()
    path = tmp_path / "bad.onnx"
    path.write_bytes(data[: int(len(data) * cut)] + b"\xff\xfe garbage")
    with pytest.raises(ExportedFileError, match="not an ONNX graph ONNX Runtime can load") as info:
        OnnxDetector.from_file(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "metadata, message",
    [
        ("not json {", "metadata is not JSON"),
        ([1, 2], "should be a JSON object"),
        # no config: was KeyError
        ({k: v for k, v in TINY_ONNX_METADATA.items() if k != "config"}, "'config' should be a mapping"),
        ({**TINY_ONNX_METADATA, "classes": "circle"}, "'classes' should be a list"),  # was a tuple of letters
        ({**TINY_ONNX_METADATA, "config": {"TEST": 5}}, "stored config does not load"),
        ({**TINY_ONNX_METADATA, "config": {"TEST": {"SCALES": ["x"]}}}, "TEST.SCALES wants a finite number"),
        ({**TINY_ONNX_METADATA, "config": []}, "'config' should be a mapping"),  # was TypeError
    ],
)
def test_metadata_of_the_wrong_shape_is_one_line(tmp_path, metadata, message):
    path = tmp_path / "meta.onnx"
    path.write_bytes(tiny_onnx(metadata if isinstance(metadata, str) else json.dumps(metadata)))
    with pytest.raises(ExportedFileError, match=message) as info:
        OnnxDetector.from_file(path)
    assert str(info.value).startswith(f"{path}") and "\n" not in str(info.value)
