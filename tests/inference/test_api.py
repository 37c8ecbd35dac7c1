"""The Python API (from frcnn import Detector) and the README's example of it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import CFGS, ROOT, SMALL_NET
from PIL import Image

from frcnn import Detections, Detector
from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.inference.torch_detector import detect_images
from frcnn.training.build import TrainOptions, train


@pytest.fixture(scope="module")
def checkpoint(small_shapes_root, tmp_path_factory):
    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=SMALL_NET)
    save_dir = tmp_path_factory.mktemp("api")
    options = TrainOptions(
        dataset="shapes",
        net="tiny",
        batch_size=4,
        epochs=1,
        save_dir=str(save_dir),
        data_dir=str(small_shapes_root.parent),
    )
    return train(options, cfg)


def test_every_input_kind_gives_the_same_detections(checkpoint, small_shapes_root):
    det = Detector.from_file(checkpoint)
    path = sorted((small_shapes_root / "JPEGImages").glob("test_*.jpg"))[0]
    from_path = det(path, threshold=0.0)
    array = np.asarray(Image.open(path).convert("RGB"))
    expected = detect_images(det, [array])[0]
    assert isinstance(from_path, Detections) and len(from_path) == len(expected["scores"]) > 0
    np.testing.assert_allclose(from_path.boxes, expected["boxes"], atol=1e-3)
    # PIL and OpenCV may decode a JPEG a little differently; the batch pads both images alike
    for other in (det(array), det(Image.open(path)), det([str(path), array], batch_size=2)[1]):
        np.testing.assert_allclose(other.boxes, from_path.boxes, atol=1e-3)
        np.testing.assert_array_equal(other.labels, from_path.labels)
    assert from_path.names == [det.classes[i] for i in from_path.labels]
    high = det(path, threshold=float(np.median(from_path.scores)))
    assert 0 < len(high) < len(from_path) and np.all(high.scores >= np.median(from_path.scores))


def test_bad_inputs_say_what_is_accepted(checkpoint):
    det = Detector.from_file(checkpoint)
    with pytest.raises(ValueError, match=r"RGB uint8 of shape \(h, w, 3\)"):
        det(np.zeros((10, 10), np.uint8))
    with pytest.raises(TypeError, match="a path, an RGB uint8 array or a PIL image"):
        det(42)


def test_the_readme_example_runs(checkpoint, small_shapes_root, tmp_path, monkeypatch, capsys):
    code = re.search(
        r"<!-- tests/inference/test_api.py runs this block -->\n```python\n(.*?)```",
        (ROOT / "README.md").read_text(),
        re.S,
    )
    assert code, "the README's Python example is missing"
    (tmp_path / "models" / "tiny" / "shapes").mkdir(parents=True)
    (tmp_path / "models" / "tiny" / "shapes" / "faster_rcnn_1_4_600.pth").symlink_to(checkpoint)
    (tmp_path / "images").mkdir()
    image = sorted((small_shapes_root / "JPEGImages").glob("test_*.jpg"))[0]
    (tmp_path / "images" / "shapes_test_00000.jpg").symlink_to(image)
    monkeypatch.chdir(tmp_path)
    exec(compile(code.group(1), "README.md", "exec"), {})
    assert "('__background__', 'circle'" in capsys.readouterr().out
