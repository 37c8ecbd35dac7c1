"""Augmentation through torchvision.transforms.v2: the box convention at the boundary, seeds,
consistency of boxes with the image, and images without objects."""

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from frcnn.data.augment import AUGMENTATIONS, Augment
from frcnn.data.loader import RoidbDataset
from frcnn.data.roidb import build_roidb, flip_boxes
from frcnn.data.sampler import SampleKey
from frcnn.structures.boxes import BoxMode


def test_v2_flip_through_the_box_boundary_equals_our_flip():
    """Inclusive boxes converted to v2's exclusive ones, flipped by v2, and converted back equal
    the roidb's own flip (x -> w - 1 - x); a second flip returns the boxes exactly."""
    boxes = np.array([[0, 0, 9, 9], [10, 5, 29, 44], [60, 0, 63, 47], [31.5, 2, 40.5, 7]], np.float32)
    width, height = 64, 48
    flip = v2.RandomHorizontalFlip(p=1.0)

    def v2_flip(b: np.ndarray) -> np.ndarray:
        exclusive = BoxMode.convert(torch.from_numpy(b), BoxMode.XYXY, BoxMode.XYXY_EXCLUSIVE)
        flipped = flip(tv_tensors.BoundingBoxes(exclusive, format="XYXY", canvas_size=(height, width)))
        return BoxMode.convert(flipped.as_subclass(torch.Tensor), BoxMode.XYXY_EXCLUSIVE, BoxMode.XYXY).numpy()

    once = v2_flip(boxes)
    assert np.array_equal(once, flip_boxes(boxes, width))
    assert np.array_equal(v2_flip(once), boxes)


def test_hflip_moves_the_pixels_with_their_boxes():
    image = np.zeros((40, 60, 3), np.uint8)
    image[10:20, 5:15] = 255  # an object at inclusive (5, 10, 14, 19)
    boxes, labels = np.array([[5, 10, 14, 19]], np.float32), np.array([2])
    flipped = next(r for r in (Augment(["hflip"])(image, boxes, labels, seed) for seed in range(20)) if r[1][0, 0] != 5)
    out, out_boxes, out_labels = flipped
    assert out_boxes.tolist() == [[45, 10, 54, 19]] and out_labels.tolist() == [2]
    ys, xs = np.nonzero(out[:, :, 0])
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (45, 10, 54, 19)


def test_turns_and_vertical_flips_move_the_pixels_with_their_boxes_exactly():
    """An object at inclusive (5, 10, 14, 19) in a 40 x 60 image, turned by hand with np.rot90
    (counter-clockwise, as v2's positive angles): each of the four turns is drawn over the seeds,
    and its box is the object's exact extent in the turned image."""
    image = np.zeros((40, 60, 3), np.uint8)
    image[10:20, 5:15] = 255
    boxes, labels = np.array([[5, 10, 14, 19]], np.float32), np.array([1])

    def extent(picture: np.ndarray) -> tuple:
        ys, xs = np.nonzero(picture[:, :, 0])
        return picture.shape, (xs.min(), ys.min(), xs.max(), ys.max())

    turned = {extent(np.rot90(image, k)) for k in range(4)}
    drawn = set()
    for seed in range(40):
        out, out_boxes, _ = Augment(["rot90"])(image, boxes, labels, seed)
        shape, corners = extent(out)
        assert (shape, corners) in turned and out_boxes.tolist() == [list(corners)]
        drawn.add((shape, corners))
    assert drawn == turned
    flipped = [Augment(["vflip"])(image, boxes, labels, seed) for seed in range(20)]
    assert {tuple(b[0].tolist()) for _, b, _ in flipped} == {(5, 10, 14, 19), (5, 20, 14, 29)}
    assert all(
        np.array_equal(out[:, :, 0] > 0, np.flipud(image[:, :, 0] > 0)) for out, b, _ in flipped if b[0, 1] == 20
    )


@pytest.mark.parametrize("names", [["zoom_out"], ["iou_crop"], ["zoom_out", "iou_crop", "photometric"]])
def test_geometric_steps_keep_boxes_on_their_objects_and_the_aspect_ratio(names):
    """Objects drawn as solid squares: after the transforms every box still frames a solid square
    of its colour, inside the image, and the aspect ratio moves by at most 10%."""
    rng = np.random.default_rng(0)
    for seed in range(12):
        image = np.full((120, 200, 3), 30, np.uint8)
        boxes, labels = [], []
        for k, (x, y) in enumerate(zip((5, 75, 145), rng.integers(0, 80, 3))):  # apart: none hides another
            image[y : y + 30, x : x + 40] = (250, 40 * (k + 1), 0)
            boxes.append([x, y, x + 39, y + 29])
            labels.append(k + 1)
        out, out_boxes, out_labels = Augment(names)(image, np.array(boxes, np.float32), np.array(labels), seed)
        h, w = out.shape[:2]
        assert abs(np.log((w / h) / (200 / 120))) <= np.log(1.1) + 0.02
        assert len(out_boxes) == len(out_labels) and len(out_boxes) <= 3
        for (x1, y1, x2, y2), label in zip(out_boxes.round().astype(int), out_labels):
            assert 0 <= x1 <= x2 <= w - 1 and 0 <= y1 <= y2 <= h - 1
            if "photometric" not in names:  # colours intact: the box is exactly the visible object
                ys, xs = np.nonzero(out[:, :, 1] == 40 * label)
                assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x1, y1, x2, y2)


def test_the_same_seed_draws_the_same_and_images_without_objects_pass():
    image = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    boxes, labels = np.array([[10, 10, 40, 30]], np.float32), np.array([1])
    augment = Augment(list(AUGMENTATIONS))
    a, b = augment(image, boxes, labels, 7), augment(image, boxes, labels, 7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert any(not np.array_equal(augment(image, boxes, labels, s)[0], a[0]) for s in range(8, 12))
    out, out_boxes, out_labels = augment(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 3)
    assert out.ndim == 3 and out_boxes.shape == (0, 4) and out_labels.shape == (0,)
    with pytest.raises(ValueError, match="TRAIN.AUGMENT: unknown"):
        Augment(["mosaic"])


def test_the_loader_applies_it_from_the_keys_seed(small_shapes):
    train, _ = small_shapes
    roidb = build_roidb(train.records[:4], use_flipped=False)
    plain = RoidbDataset(roidb, [128], 256)
    augmented = RoidbDataset(roidb, [128], 256, Augment(["zoom_out", "photometric"]))
    key = SampleKey(1, 0, 1.0, seed=5)
    assert torch.equal(augmented[key].image, augmented[key].image)
    assert torch.equal(plain[key].boxes, plain[key._replace(seed=6)].boxes)
    differs = [not torch.equal(augmented[key._replace(seed=s)].image, plain[key].image) for s in range(6)]
    assert any(differs)
