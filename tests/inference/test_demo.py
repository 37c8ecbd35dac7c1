"""The demo's image-folder runner (inference/demo.py)."""

import cv2
import numpy as np

from frcnn.inference import demo
from frcnn.inference.detections import Detections
from frcnn.utils.vis import class_colour


def as_found(det: dict) -> Detections:
    return Detections(det["boxes"], det["scores"], det["labels"], [str(label) for label in det["labels"]])


def test_demo_draws_every_detection(tmp_path):
    """More boxes than the original's cap of 10, each visible in the output image."""
    image = np.full((300, 400, 3), 255, np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), image)
    boxes = np.array(
        [[20 + 70 * (i % 5), 20 + 55 * (i // 5), 70 + 70 * (i % 5), 60 + 55 * (i // 5)] for i in range(25)], np.float32
    )
    detections = {
        "boxes": boxes,
        "scores": np.linspace(0.99, 0.6, 25).astype(np.float32),
        "labels": (np.arange(25) % 3 + 1),
    }

    class FakeDetector:  # the API's call: a list of images in, one Detections each out
        classes = ("__background__", "a", "b", "c")

        def __call__(self, images, batch_size=1, threshold=0.0):  # the drawing filters by the threshold
            return [as_found(detections) for _ in images]

    drawn = demo.run_folder(FakeDetector(), tmp_path, thresh=0.5, batch_size=1)
    assert drawn == 25
    out = cv2.imread(str(tmp_path / "a_det.jpg"))[:, :, ::-1].astype(int)
    for box, label in zip(boxes.astype(int), detections["labels"]):
        y, x = (box[1] + box[3]) // 2, box[2]  # middle of the right edge; the boxes do not overlap
        edge = out[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3)
        assert (255 - edge).max() > 100, f"no box drawn at {box.tolist()}"
        colour = np.array(class_colour(int(label)))
        assert (
            np.abs(edge - colour).sum(axis=1).min() < np.abs(edge - 255).sum(axis=1).min()
        )  # nearer its class colour than white


def test_demo_writes_the_drawn_detections_as_json(tmp_path):
    """<name>_det.json beside <name>_det.jpg: exactly the detections drawn (score >= --thresh), in
    the image's own pixels, with class names."""
    import json

    cv2.imwrite(str(tmp_path / "street.jpg"), np.full((240, 320, 3), 255, np.uint8))
    cv2.imwrite(str(tmp_path / "empty.png"), np.full((50, 60, 3), 255, np.uint8))
    boxes = np.array([[10.25, 20.5, 100.0, 120.75], [150.126, 30.0, 300.0, 200.0], [5, 5, 40, 40], [60, 60, 90, 99]])
    detections = {
        "boxes": boxes.astype(np.float32),
        "scores": np.array([0.61, 0.98766, 0.2, 0.5], np.float32),  # 0.2 is under the threshold; 0.5 is at it
        "labels": np.array([2, 1, 3, 3]),
    }
    nothing = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, int)}

    class FakeDetector:
        classes = ("__background__", "person", "car", "dog")

        def __call__(self, images, batch_size=1, threshold=0.0):  # the drawing filters by the threshold
            return [as_found(detections if im.shape[0] == 240 else nothing) for im in images]

    drawn = demo.run_folder(FakeDetector(), tmp_path, thresh=0.5, batch_size=2)
    assert drawn == 3
    entries = json.loads((tmp_path / "street_det.json").read_text())
    assert len(entries) == drawn
    assert [e["label"] for e in entries] == ["person", "car", "dog"]  # best first
    assert [e["score"] for e in entries] == [0.9877, 0.61, 0.5]
    assert entries[0]["box"] == [150.13, 30.0, 300.0, 200.0]
    assert entries[1]["box"] == [10.25, 20.5, 100.0, 120.75]
    assert entries[2]["box"] == [60.0, 60.0, 90.0, 99.0]
    assert json.loads((tmp_path / "empty_det.json").read_text()) == []
    assert (tmp_path / "empty_det.jpg").is_file() and (tmp_path / "street_det.jpg").is_file()
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed into place
    entries_again = demo.detections_json(as_found(detections), FakeDetector.classes, thresh=0.0)
    assert len(entries_again) == 4 and entries_again[-1]["label"] == "dog" and entries_again[-1]["score"] == 0.2


def test_images_that_share_a_name_get_outputs_of_their_own(tmp_path):
    """photo.jpg and photo.png both wrote photo_det.jpg / photo_det.json: the second silently
    overwrote the first. They get photo_jpg_det.* and photo_png_det.*; a name of its own keeps
    <name>_det.*, and a second run does not read the outputs back as images."""
    import json

    cv2.imwrite(str(tmp_path / "photo.jpg"), np.full((60, 80, 3), 255, np.uint8))
    cv2.imwrite(str(tmp_path / "photo.png"), np.full((40, 50, 3), 255, np.uint8))
    cv2.imwrite(str(tmp_path / "other.jpg"), np.full((30, 30, 3), 255, np.uint8))

    class FakeDetector:  # one detection whose box is the image's own size, so each file says whose it is
        classes = ("__background__", "thing")

        def __call__(self, images, batch_size=1, threshold=0.0):  # the drawing filters by the threshold
            return [
                as_found(
                    {
                        "boxes": np.array([[0, 0, im.shape[1], im.shape[0]]], np.float32),
                        "scores": np.array([0.9]),
                        "labels": np.array([1]),
                    }
                )
                for im in images
            ]

    assert demo.run_folder(FakeDetector(), tmp_path, thresh=0.5, batch_size=2) == 3
    boxes = {p.name: json.loads(p.read_text())[0]["box"] for p in tmp_path.glob("*_det.json")}
    assert boxes == {
        "photo_jpg_det.json": [0, 0, 80, 60],
        "photo_png_det.json": [0, 0, 50, 40],
        "other_det.json": [0, 0, 30, 30],
    }
    assert cv2.imread(str(tmp_path / "photo_jpg_det.jpg")).shape == (60, 80, 3)
    assert cv2.imread(str(tmp_path / "photo_png_det.jpg")).shape == (40, 50, 3)
    assert [p.name for p in demo.image_files(tmp_path)] == ["other.jpg", "photo.jpg", "photo.png"]
