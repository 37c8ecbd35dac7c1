import hashlib

import numpy as np

from frcnn.data.datasets.shapes import SHAPES_CLASSES, ShapesDataset, ensure_generated, render


def digest(root, split):
    h = hashlib.sha256()
    for line in (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split():
        h.update((root / "Annotations" / f"{line}.xml").read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic(tmp_path, small_shapes_root):
    ensure_generated(tmp_path / "again", {"trainval": 24, "test": 8}, progress=False)
    assert digest(tmp_path / "again", "trainval") == digest(small_shapes_root, "trainval")
    a = np.asarray(render(np.random.default_rng(7))[0])
    b = np.asarray(render(np.random.default_rng(7))[0])
    assert np.array_equal(a, b)


def test_existing_dataset_is_reused(small_shapes_root):
    marker = small_shapes_root / "COMPLETE.json"
    before = marker.stat().st_mtime_ns
    assert ensure_generated(small_shapes_root) == {"trainval": 24, "test": 8}
    assert marker.stat().st_mtime_ns == before


def test_interrupted_generation_is_redone(tmp_path):
    root = tmp_path / "shapes"
    ensure_generated(root, {"trainval": 3, "test": 2}, progress=False)
    (root / "COMPLETE.json").unlink()  # as if killed before the marker was written
    (root / "Annotations" / "trainval_00001.xml").write_text("truncated")
    ensure_generated(root, {"trainval": 3, "test": 2}, progress=False)
    assert len(ShapesDataset("trainval", root).records) == 3


def test_dataset_properties():
    """Over 300 generated images: the variety the dataset promises."""
    rng_images = [render(np.random.default_rng(5000 + i)) for i in range(300)]
    ratios = [im.shape[1] / im.shape[0] for im, _ in rng_images]
    assert min(ratios) < 0.6 and max(ratios) > 1.7
    sizes = {im.shape[:2] for im, _ in rng_images}
    assert len(sizes) > 100
    counts = [len(objs) for _, objs in rng_images]
    assert 0 in counts and max(counts) >= 5
    objects = [o for _, objs in rng_images for o in objs]
    assert {name for name, _, _ in objects} == set(SHAPES_CLASSES)
    difficult = [o for o in objects if o[2]]
    assert 0.03 < len(difficult) / len(objects) < 0.4
    side = lambda b: min(b[2] - b[0] + 1, b[3] - b[1] + 1)  # noqa: E731
    assert any(side(box) < 16 for _, box, _ in objects)
    assert all(d for _, box, d in objects if side(box) < 16)  # small objects are difficult
    assert max(side(box) for _, box, _ in objects) > 80


def test_records_are_voc_records(small_shapes):
    train, test = small_shapes
    assert train.classes[1:] == SHAPES_CLASSES and len(train) == 24 and len(test) == 8
    for record in train.records:
        assert record.boxes.shape == (len(record.labels), 4)
        assert ((record.boxes[:, 2] >= record.boxes[:, 0]) & (record.boxes[:, 2] < record.width)).all()
