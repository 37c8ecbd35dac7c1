"""The YOLO peer's side of the files (tools/yolo_peer.py): tiles and labels in Ultralytics' layout,
read back by this project's YOLO reader, and predictions moved back into the scene and merged.
Ultralytics itself is not needed: it runs only in the benchmark, from its own virtualenv."""

import cv2
import numpy as np
import pytest

from frcnn.data.datasets.base import ImageRecord
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.tiling import tile_record
from tools import yolo_peer


@pytest.fixture
def scene(tmp_path):
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8))
    boxes = np.array([[10, 10, 29, 39], [70, 5, 109, 24], [150, 90, 199, 119], [95, 60, 104, 69]], np.float32)
    return ImageRecord(
        "scene.png", str(path), 200, 120, boxes, np.array([1, 2, 1, 2]), np.zeros(4, bool), np.zeros(4, bool)
    )


def test_tiles_and_labels_read_back_by_the_yolo_reader_as_the_tiles_records(scene, tmp_path):
    data = tmp_path / "yolo"
    written = yolo_peer.write_tiles([scene], 100, 0.2, data / "images" / "train", data / "labels" / "train")
    assert [w for _, w in written] == [
        (0, 0, 100, 100),
        (80, 0, 180, 100),
        (100, 0, 200, 100),
        (0, 20, 100, 120),
        (80, 20, 180, 120),
        (100, 20, 200, 120),
    ]
    path = yolo_peer.write_data_yaml(data, ["a", "b"])
    read = {r.id: r for d in dataset_spec(str(path)).train() for r in d.records}
    for stem, window in written:
        expected = tile_record(scene, window)
        kept = ~expected.difficult  # less than half inside: left out, as training leaves it out
        got = next(r for r in read.values() if stem in str(r.id))
        assert (got.width, got.height) == (window[2] - window[0], window[3] - window[1])
        np.testing.assert_allclose(got.boxes, expected.boxes[kept], atol=1e-3)
        assert got.labels.tolist() == expected.labels[kept].tolist()


def test_predictions_go_back_into_the_scene_and_overlapping_tiles_merge(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    # a crown at x 85..104, y 20..39 (inclusive) seen whole by the tile from x = 80 and cut at
    # x = 99 by the tile ending at 100 (YOLO clips its boxes to the tile)
    (labels / "s_0_0.txt").write_text("0 0.925 0.30 0.15 0.20 0.4\n")
    (labels / "s_80_0.txt").write_text("0 0.150 0.30 0.20 0.20 0.9\n")
    cut = yolo_peer.read_predictions(labels, "s_0_0", (0, 0, 100, 100))
    np.testing.assert_allclose(cut["boxes"], [[85, 20, 99, 39]], atol=1e-4)
    assert cut["labels"].tolist() == [1] and cut["scores"].tolist() == pytest.approx([0.4])
    assert len(yolo_peer.read_predictions(labels, "missing", (0, 0, 100, 100))["boxes"]) == 0
    merged = yolo_peer.merged_scene(labels, [("s_0_0", (0, 0, 100, 100)), ("s_80_0", (80, 0, 180, 100))])
    np.testing.assert_allclose(merged["boxes"], [[85, 20, 104, 39]], atol=1e-4)  # the union, the best score
    assert merged["scores"].tolist() == pytest.approx([0.9])


def test_the_yolo_environment_is_offline_with_a_local_font(tmp_path):
    env = yolo_peer.yolo_environment(tmp_path / "cfg")
    assert env["YOLO_OFFLINE"] == "1" and env["YOLO_CONFIG_DIR"] == str(tmp_path / "cfg")
    assert (tmp_path / "cfg" / "Arial.ttf").stat().st_size > 10000
