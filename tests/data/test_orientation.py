"""Boxes drawn on a photo as viewers turn it (EXIF orientation) come back to its stored pixels,
checked against Pillow's own turn (ImageOps.exif_transpose)."""

import logging

import numpy as np
import pytest
from PIL import Image, ImageOps

from frcnn.data.datasets.base import ImageRecord
from frcnn.data.loader import read_image
from frcnn.data.orientation import boxes_to_stored, exif_orientation
from frcnn.data.validate import TURNED_BOXES_MOVED, check_records

WIDTH, HEIGHT = 40, 24  # stored size: not square, so turns by 90 degrees swap the sides
STORED_BOX = [5, 3, 14, 9]  # inclusive pixels


def tagged_png(path, orientation):
    """A stored WIDTH x HEIGHT picture, white inside STORED_BOX, with the orientation tag."""
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    x1, y1, x2, y2 = STORED_BOX
    pixels[y1 : y2 + 1, x1 : x2 + 1] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif)
    return str(path)


def shown_box(path):
    """The white rectangle's inclusive box in the picture as a viewer shows it."""
    with Image.open(path) as im:
        shown = np.asarray(ImageOps.exif_transpose(im))[:, :, 0]
    ys, xs = np.nonzero(shown)
    return [xs.min(), ys.min(), xs.max(), ys.max()], shown.shape[1], shown.shape[0]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_box_on_the_shown_picture_maps_to_the_stored_pixels(tmp_path, orientation):
    path = tagged_png(tmp_path / "p.png", orientation)
    with Image.open(path) as im:
        assert exif_orientation(im) == orientation
    box, _, _ = shown_box(path)
    assert boxes_to_stored(np.array([box]), orientation, WIDTH, HEIGHT).tolist() == [STORED_BOX]


def test_without_a_tag_or_with_a_wrong_one_the_picture_is_as_stored(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    odd = tmp_path / "odd.png"
    exif = Image.Exif()
    exif[0x0112] = 42
    Image.new("RGB", (8, 8)).save(odd, exif=exif)
    for path in (tmp_path / "plain.png", odd):
        with Image.open(path) as im:
            assert exif_orientation(im) == 1


def record(path, width, height, box):
    return ImageRecord("p", path, width, height, np.array([box], np.float32), np.array([1]))


def test_the_check_moves_boxes_when_the_annotation_has_the_turned_size(tmp_path, caplog):
    path = tagged_png(tmp_path / "p.png", 6)  # rotate 90 clockwise to show: 24 x 40
    box, shown_w, shown_h = shown_box(path)
    with caplog.at_level(logging.WARNING):
        report = check_records("t", [record(path, shown_w, shown_h, box)], progress=False)
    kept = report.kept[0]
    assert (kept.width, kept.height) == (WIDTH, HEIGHT) and kept.boxes.tolist() == [STORED_BOX]
    assert [i.kind for i in report.issues] == [TURNED_BOXES_MOVED]
    x1, y1, x2, y2 = STORED_BOX
    assert read_image(path)[y1 : y2 + 1, x1 : x2 + 1].min() == 255  # the loader's pixels under the box
    assert "EXIF orientation" not in caplog.text


def test_boxes_with_the_stored_size_stay_and_the_tag_is_reported(tmp_path, caplog):
    path = tagged_png(tmp_path / "p.png", 6)
    with caplog.at_level(logging.WARNING):
        report = check_records("t", [record(path, WIDTH, HEIGHT, STORED_BOX)], progress=False)
    assert report.kept[0].boxes.tolist() == [STORED_BOX] and not report.issues
    assert "1 images carry an EXIF orientation" in caplog.text and "p.png" in caplog.text
