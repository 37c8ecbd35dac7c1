"""The demo's image-folder runner (engine/demo.py)."""

import cv2
import numpy as np

from frcnn.engine import demo
from frcnn.utils.vis import class_colour


def test_demo_draws_every_detection(tmp_path, monkeypatch):
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
    monkeypatch.setattr(demo, "detect_images", lambda detector, images: [detections for _ in images])

    class FakeDetector:
        classes = ("__background__", "a", "b", "c")

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
