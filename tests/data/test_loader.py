import numpy as np
import pytest
import torch

from frcnn.data.augment import Augment
from frcnn.data.datasets.base import ImageRecord
from frcnn.data.loader import RoidbDataset, collate, resize_scale
from frcnn.data.roidb import build_roidb, difficult_role, flip_boxes, training_record
from frcnn.data.sampler import SampleKey
from frcnn.structures.batch import Sample


def test_resize_scale_caps_the_long_side():
    assert resize_scale(300, 400, 600, 1000) == 2.0
    assert resize_scale(300, 900, 600, 1000) == 1000 / 900


def test_flip_is_an_involution_in_inclusive_pixels():
    boxes = np.array([[0, 5, 9, 10], [90, 0, 99, 3]], dtype=np.float32)
    flipped = flip_boxes(boxes, 100)
    assert flipped.tolist() == [[90, 5, 99, 10], [0, 0, 9, 3]]
    assert np.array_equal(flip_boxes(flipped, 100), boxes)


def test_loaded_flipped_image_matches_boxes(small_shapes):
    train, _ = small_shapes
    roidb = build_roidb(train.records, use_flipped=True)
    n = len(train)
    data = RoidbDataset(roidb, [128], 1000)
    for i in range(n):
        if len(roidb[i].boxes):
            break
    plain, mirror = data[SampleKey(i, 0, 1.0)], data[SampleKey(i + n, 0, 1.0)]
    assert torch.equal(plain.image.flip(-1), mirror.image)
    w = plain.image.shape[-1]
    x1, _, x2, _ = plain.boxes[0].tolist()
    assert torch.allclose(mirror.boxes[0, [0, 2]], torch.tensor([w - 1 - x2, w - 1 - x1]), atol=1.0)
    assert plain.scale == 128 / min(roidb[i].width, roidb[i].height)


def test_collate_pads_and_reports_padding():
    samples = [
        Sample(
            torch.full((3, 4, 6), 7, dtype=torch.uint8),
            torch.zeros(0, 4),
            torch.zeros(0, dtype=torch.long),
            1.0,
            0,
            0.5,
        ),
        Sample(
            torch.full((3, 5, 3), 9, dtype=torch.uint8),
            torch.ones(2, 4),
            torch.ones(2, dtype=torch.long),
            2.0,
            1,
            0.5,
            7,
        ),
    ]
    batch = collate(samples)
    assert batch.images.shape == (2, 3, 32, 32)  # padded up to a multiple of 32
    assert batch.image_sizes.tolist() == [[4, 6], [5, 3]]
    assert (batch.images[0, :, :4, :6] == 7).all() and (batch.images[1, :, :5, :3] == 9).all()
    assert (batch.images[0, :, 4:] == 0).all() and (batch.images[1, :, :, 3:] == 0).all()
    assert batch.padded_fraction == 1 - (24 + 15) / (2 * 32 * 32)
    assert batch.loss_scale == 1.0
    assert [t["seed"] for t in batch.targets] == [0, 7] and batch.indices == [0, 1]


def test_training_roidb_drops_difficult_keeps_empty(small_shapes):
    train, _ = small_shapes
    roidb = build_roidb(train.records, use_flipped=False)
    assert len(roidb) == len(train)
    assert not any(r.difficult.any() for r in roidb)
    assert sum(r.difficult.sum() for r in train.records) > 0


def three_object_record() -> ImageRecord:
    """An object, a difficult one and a crowd region."""
    return ImageRecord(
        "a",
        "a.jpg",
        100,
        80,
        boxes=np.array([[10, 10, 29, 29], [40, 40, 59, 59], [0, 0, 99, 79]], np.float32),
        labels=np.array([1, 2, 1]),
        difficult=np.array([False, True, False]),
        crowd=np.array([False, False, True]),
    )


def test_training_record_drops_ignores_or_trains_difficult_objects_and_drops_crowds():
    record = three_object_record()
    dropped, ignored, trained = (training_record(record, role) for role in ("drop", "ignore", "train"))
    assert dropped.labels.tolist() == [1] and dropped.difficult.tolist() == [False]
    assert ignored.labels.tolist() == [1, 2] and ignored.difficult.tolist() == [False, True]
    assert trained.labels.tolist() == [1, 2] and trained.difficult.tolist() == [False, True]
    assert difficult_role(True, True) == "train" and difficult_role(False, True) == "ignore"
    assert difficult_role(False, False) == "drop"
    with pytest.raises(ValueError, match="difficult objects are one of"):
        training_record(record, "background")


@pytest.mark.parametrize("augment", [None, Augment(["zoom_out", "hflip"])])
def test_the_loader_hands_ignore_regions_apart_moved_like_the_objects(small_shapes, augment):
    train, _ = small_shapes
    records = [r for r in train.records if r.difficult.any()][:3]
    assert records
    for role in ("ignore", "train"):
        roidb = build_roidb(records, True, role)  # with the flipped copies
        data = RoidbDataset(roidb, [96], 200, augment, ignore_difficult=role == "ignore")
        samples = [data[SampleKey(i, 0, 1.0, seed=4)] for i in range(len(roidb))]
        if role == "ignore":
            ignored = samples
        else:
            trained = samples
    for record, a, b in zip(records + records, ignored, trained):
        assert len(a.ignore) == record.difficult.sum() and len(a.boxes) == (~record.difficult).sum()
        # The same draw moves every box alike: the objects and the regions are the boxes trained as objects.
        hard = torch.from_numpy(record.difficult)
        assert torch.equal(a.boxes, b.boxes[~hard]) and torch.equal(a.ignore, b.boxes[hard])
        assert torch.equal(a.labels, b.labels[~hard])
        assert len(b.ignore) == 0
    batch = collate(ignored)
    assert [len(t["ignore"]) for t in batch.targets] == [int(r.difficult.sum()) for r in records + records]
    flipped = ignored[len(records)].ignore  # the mirror image's regions mirrored (no augmentation: exactly)
    if augment is None:
        scale, width = ignored[0].scale, records[0].width  # flipped in the image's own pixels, then resized
        assert torch.allclose(flipped[:, [2, 0]] / scale, (width - 1) - ignored[0].ignore[:, [0, 2]] / scale, atol=1e-4)


def test_a_batch_splits_into_parts_that_cover_it_once():
    """--accum's parts: consecutive, never empty, every image once, the padded size kept."""
    samples = [
        Sample(
            torch.full((3, 4 + i, 6), i, dtype=torch.uint8), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 1.0, i
        )
        for i in range(4)
    ]
    batch = collate(samples)
    for images, parts, sizes in ((4, 1, [4]), (4, 2, [2, 2]), (4, 3, [1, 2, 1]), (2, 3, [1, 1]), (1, 4, [1])):
        whole = collate(samples[:images])
        split = whole.split(parts)
        assert [len(p.indices) for p in split] == sizes
        assert [i for p in split for i in p.indices] == whole.indices
        assert all(p.images.shape[1:] == whole.images.shape[1:] and p.loss_scale == whole.loss_scale for p in split)
    assert torch.equal(torch.cat([p.images for p in batch.split(3)]), batch.images)


def test_tiles_of_one_scene_decode_it_once_and_leave_it_as_read(tmp_path, monkeypatch):
    import cv2

    from frcnn.data import loader
    from frcnn.data.datasets.base import ImageRecord
    from frcnn.data.tiling import tile_record, tile_windows

    scene = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), scene[:, :, ::-1])  # written BGR: read back as the RGB scene
    record = ImageRecord("scene", str(path), 200, 120, np.array([[10, 10, 29, 39]], np.float32), np.array([1]))
    # full-width rows too: a contiguous slice of the scene, handed over without a copy of its own
    tiles = [tile_record(record, w) for w in [*tile_windows(120, 200, 100, 0.2), (0, 0, 200, 100)]]
    reads = []
    monkeypatch.setattr(loader, "read_image", lambda p: reads.append(p) or loader.cv2.imread(p)[:, :, ::-1].copy())
    data = RoidbDataset(tiles, [100], 1000)
    for i, tile in enumerate(tiles):
        x0, y0, x1, y1 = tile.window
        sample = data[i]
        assert np.array_equal(sample.image.permute(1, 2, 0).numpy(), scene[y0:y1, x0:x1])
        sample.image.zero_()  # a sample is the caller's: the kept scene does not change with it
    assert reads == [str(path)] and np.array_equal(data.sources.read(str(path)), scene)


def test_kept_sources_stay_within_their_byte_budget_least_recently_used_out(monkeypatch):
    from frcnn.data import loader

    monkeypatch.setattr(loader, "read_image", lambda p: np.zeros((10, 10, 3), np.uint8))  # 300 bytes each
    sources = loader.SourceImages(budget=700)
    for path in ("a", "b", "a", "c"):  # c pushes out b, read less recently than a
        sources.read(path)
    assert list(sources.images) == ["a", "c"]
    sources = loader.SourceImages(budget=100)  # one image larger than the budget is still kept
    sources.read("a")
    assert list(sources.images) == ["a"]
