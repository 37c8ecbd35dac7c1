import numpy as np
import torch

from frcnn.data.loader import RoidbDataset, collate, resize_scale
from frcnn.data.roidb import build_roidb, flip_boxes
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
