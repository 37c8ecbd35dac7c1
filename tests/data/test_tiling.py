"""Tiles of a large image (data/tiling.py): SAHI's windows, and the boxes a tile keeps."""

import dataclasses

import cv2
import numpy as np
import pytest

from frcnn.data.datasets.base import ImageRecord
from frcnn.data.loader import RoidbDataset
from frcnn.data.roidb import build_roidb
from frcnn.data.sampler import SampleKey
from frcnn.data.tiling import (
    TileShift,
    boxes_in_window,
    crop_boxes,
    shifted_window,
    tile_record,
    tile_records,
    tile_windows,
)

# (height, width): smaller than a tile, exact multiples of a tile or of its step, odd sizes, strips
SIDES = [1, 7, 99, 100, 101, 160, 255, 256, 257, 333, 400, 401, 640, 799, 800, 1000, 1023, 2299]
SHAPES = [(h, w) for h in SIDES for w in SIDES[::3]] + [(2472, 2299), (700, 900), (1, 5000)]


@pytest.fixture(scope="module")
def get_slice_bboxes():
    slicing = pytest.importorskip("sahi.slicing", reason="sahi (requirements-test.txt) is not installed")
    return slicing.get_slice_bboxes


@pytest.mark.parametrize("size", [100, 256, 400])
@pytest.mark.parametrize("overlap", [0.0, 0.2, 0.5, 0.29, 0.75])
def test_the_windows_are_sahis(get_slice_bboxes, size, overlap):
    for height, width in SHAPES:
        expected = get_slice_bboxes(
            height, width, size, size, overlap_height_ratio=overlap, overlap_width_ratio=overlap
        )
        assert tile_windows(height, width, size, overlap) == [tuple(w) for w in expected], (height, width)


def test_windows_cover_the_image_with_the_overlap_asked():
    windows = tile_windows(500, 1000, 400, 0.2)  # steps of 320; the last column and row end on the edge
    assert windows == [(0, 0, 400, 400), (320, 0, 720, 400), (600, 0, 1000, 400)] + [
        (0, 100, 400, 500),
        (320, 100, 720, 500),
        (600, 100, 1000, 500),
    ]
    covered = np.zeros((500, 1000), int)
    for x0, y0, x1, y1 in windows:
        assert (x1 - x0, y1 - y0) == (400, 400)
        covered[y0:y1, x0:x1] += 1
    assert covered.min() == 1
    assert tile_windows(150, 300, 400, 0.2) == [(0, 0, 300, 150)]  # smaller than a tile: itself
    assert tile_windows(400, 400, 400, 0.5) == [(0, 0, 400, 400)]  # exactly a tile: one


@pytest.mark.parametrize(
    "args, message",
    [
        ((100, 100, 0, 0.2), "tile size is a positive"),
        ((100, 100, -5, 0.2), "tile size is a positive"),
        ((100, 100, 2.5, 0.2), "tile size is a positive"),
        ((100, 100, 50, 1.0), r"overlap is a fraction of the tile in \[0, 1\)"),
        ((100, 100, 50, -0.1), r"overlap is a fraction of the tile in \[0, 1\)"),
        ((0, 100, 50, 0.2), "at least one pixel"),
    ],
)
def test_bad_tiles_say_what_is_wanted(args, message):
    with pytest.raises(ValueError, match=message):
        tile_windows(*args)


def test_boxes_are_clipped_to_the_tile_and_mostly_hidden_ones_are_difficult():
    boxes = np.array(
        [
            [10, 10, 29, 29],  # inside: kept as is, shifted
            [90, 50, 119, 79],  # 10 of 30 columns inside (x 90..99): a third visible, difficult
            [95, 0, 104, 9],  # 5 of 10 columns inside: half visible, not difficult
            [99, 0, 120, 10],  # one column inside: too thin, dropped
            [200, 200, 220, 220],  # outside
        ],
        float,
    )
    kept, difficult = crop_boxes(boxes, (0, 0, 100, 100))
    assert kept.tolist() == [[10, 10, 29, 29], [90, 50, 99, 79], [95, 0, 99, 9]]
    assert difficult.tolist() == [False, True, False]
    assert boxes_in_window(boxes, (0, 0, 100, 100)).tolist() == [True, True, True, False, False]
    shifted, difficult = crop_boxes(boxes, (100, 0, 200, 100))  # the next tile sees the rest
    assert shifted.tolist() == [[0, 50, 19, 79], [0, 0, 4, 9], [0, 0, 20, 10]]
    assert difficult.tolist() == [False, False, False]
    # one pixel is enough when asked; a box outside the tile is never kept
    thin, _ = crop_boxes(boxes, (0, 0, 100, 100), min_side=1)
    assert thin.tolist()[-1] == [99, 0, 99, 10] and len(thin) == 4
    assert crop_boxes(boxes, (300, 300, 400, 400), min_side=1)[0].shape == (0, 4)


def test_crop_boxes_takes_no_boxes_and_keeps_the_dtype():
    kept, difficult = crop_boxes(np.zeros((0, 4), np.float32), (0, 0, 10, 10))
    assert kept.shape == (0, 4) and kept.dtype == np.float32 and difficult.shape == (0,)
    kept, _ = crop_boxes(np.array([[5, 5, 14, 14]], np.int64), (4, 4, 10, 10), min_visible=0.9)
    assert kept.dtype == np.int64 and kept.tolist() == [[1, 1, 5, 5]]


def test_the_tree_tiles_tool_uses_the_library_tile():
    from tools import tree_tiles

    assert tree_tiles.tile_record is tile_record


# ---- training on tiles ----------------------------------------------------------------------


def large_record(path: str = "scene.png") -> ImageRecord:
    boxes = np.array([[10, 10, 29, 29], [90, 50, 119, 79], [150, 150, 159, 159]], np.float32)
    return ImageRecord(
        "scene",
        path,
        width=200,
        height=100,
        boxes=boxes,
        labels=np.array([1, 2, 3]),
        difficult=np.array([False, False, True]),
        crowd=np.zeros(3, bool),
    )


def test_a_tile_record_holds_the_visible_parts_of_its_objects():
    tile = tile_record(large_record(), (0, 0, 100, 100))
    assert (tile.id, tile.width, tile.height, tile.window) == ("scene@0,0", 100, 100, (0, 0, 100, 100))
    assert tile.boxes.tolist() == [[10, 10, 29, 29], [90, 50, 99, 79]]  # the third is in the other tile
    assert tile.labels.tolist() == [1, 2]
    assert tile.difficult.tolist() == [False, True]  # a third of the second box shows: difficult
    other = tile_record(large_record(), (100, 0, 200, 100))
    # the rest of the second box (20 of 30 columns: not difficult there); the third is below y 100
    assert (other.boxes.tolist(), other.labels.tolist(), other.difficult.tolist()) == ([[0, 50, 19, 79]], [2], [False])


def test_large_records_become_tiles_and_empty_tiles_are_kept_at_their_share():
    small = dataclasses.replace(large_record(), id="small", width=64, height=64, boxes=np.zeros((0, 4), np.float32))
    small = dataclasses.replace(small, labels=np.zeros(0, int), difficult=np.zeros(0, bool), crowd=np.zeros(0, bool))
    tiles = tile_records([large_record(), small], size=100, overlap=0.0, empty_share=0.0)
    assert [t.id for t in tiles] == ["scene@0,0", "scene@100,0", "small"]  # small: as it is
    empty = dataclasses.replace(large_record(), boxes=large_record().boxes[:1], labels=np.array([1]))
    empty = dataclasses.replace(empty, difficult=np.array([False]), crowd=np.zeros(1, bool))
    assert [t.id for t in tile_records([empty], 100, 0.0, empty_share=0.0)] == ["scene@0,0"]
    assert [t.id for t in tile_records([empty], 100, 0.0, empty_share=1.0)] == ["scene@0,0", "scene@100,0"]


def test_the_loader_cuts_a_tile_out_of_its_image_at_load(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (100, 200, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "scene.png"), image[:, :, ::-1])
    tile = tile_record(large_record(str(tmp_path / "scene.png")), (100, 0, 200, 100))
    sample = RoidbDataset([tile], [100], 1000)[0]
    assert sample.image.permute(1, 2, 0).numpy().tolist() == image[:, 100:200].tolist()
    assert sample.boxes.tolist() == tile.boxes.tolist()


def test_a_tile_selects_every_per_object_field_and_drops_the_whole_objects_areas():
    record = dataclasses.replace(large_record(), area=np.array([400.0, 900.0, 100.0], np.float32))
    tile = tile_record(record, (0, 0, 100, 100))
    assert (len(tile.boxes), len(tile.labels), len(tile.difficult), len(tile.crowd)) == (2, 2, 2, 2)
    assert tile.area.size == 0  # 900 was the whole second box's; a third of it is in this tile
    assert record.objects(np.array([False, True, True])).area.tolist() == [900.0, 100.0]


# ---- tiles drawn afresh at each load (TILES.SHIFT) ------------------------------------------------


def test_a_shifted_window_keeps_its_size_stays_inside_and_reaches_its_whole_range():
    moves = set()
    for seed in range(2000):  # 81 moves each way: all drawn but for a chance below 1e-8
        x0, y0, x1, y1 = shifted_window((320, 100, 720, 500), 500, 1000, 40, np.random.default_rng(seed))
        assert (x1 - x0, y1 - y0) == (400, 400) and 0 <= x0 and x1 <= 1000 and 0 <= y0 and y1 <= 500
        moves.add((x0 - 320, y0 - 100))
    assert {dx for dx, _ in moves} == set(range(-40, 41))  # every move along x, both ways
    assert {dy for _, dy in moves} == set(range(-40, 1))  # y: the window already touches the bottom edge
    # an axis the window spans whole cannot move; nor can a window as large as the image
    assert shifted_window((0, 0, 400, 150), 150, 2000, 100, np.random.default_rng(3))[1::2] == (0, 150)
    assert shifted_window((0, 0, 50, 50), 50, 50, 30, np.random.default_rng(3)) == (0, 0, 50, 50)


def painted_scene(tmp_path) -> tuple[ImageRecord, np.ndarray]:
    """A 100 x 200 scene, black, with every object of large_record painted white (difficult too)."""
    record = large_record(str(tmp_path / "scene.png"))
    image = np.zeros((100, 200, 3), np.uint8)
    for x0, y0, x1, y1 in record.boxes.astype(int):
        image[y0 : y1 + 1, x0 : x1 + 1] = 255
    cv2.imwrite(record.path, image)
    return record, image


def test_shifted_tiles_are_cut_again_with_their_objects_and_flips(tmp_path):
    scene, image = painted_scene(tmp_path)
    roidb = build_roidb(tile_records([scene], size=100, overlap=0.0, empty_share=1.0))
    data = RoidbDataset(roidb, [100], 1000, recut=TileShift([scene], shift=0.3))
    windows = set()
    for index, entry in enumerate(roidb):
        for seed in range(30):
            recut = data.recut(entry, seed)
            sample = data[SampleKey(index, 0, 1.0, seed)]
            windows.add(recut.window)
            x0, y0, x1, y1 = recut.window
            expected = image[y0:y1, x0:x1][:, ::-1] if entry.flipped else image[y0:y1, x0:x1]
            assert sample.image.permute(1, 2, 0).numpy().tolist() == expected.tolist()
            for bx0, by0, bx1, by1 in sample.boxes.numpy().astype(int):  # each box on its own white
                assert (expected[by0 : by1 + 1, bx0 : bx1 + 1] == 255).all()
            # every object mostly inside the window is there; the difficult third never is
            inside = boxes_in_window(scene.boxes[:2], recut.window) & ~crop_boxes(scene.boxes[:2], recut.window)[1]
            assert len(sample.boxes) == inside.sum() and 3 not in sample.labels.tolist()
    assert len(windows) > 10  # the windows move (along x only: the scene is one tile high)


def test_shifted_tiles_hand_the_objects_their_edges_hide_to_the_loader_as_ignore_regions(tmp_path):
    scene, image = painted_scene(tmp_path)
    roidb = build_roidb(tile_records([scene], size=100, overlap=0.0, empty_share=1.0), difficult="ignore")
    recut = TileShift([scene], shift=0.3, difficult="ignore")
    data = RoidbDataset(roidb, [100], 1000, recut=recut, ignore_difficult=True)
    regions = 0
    for index, entry in enumerate(roidb):
        for seed in range(30):
            window = data.recut(entry, seed).window
            sample = data[SampleKey(index, 0, 1.0, seed)]
            shown = boxes_in_window(scene.boxes[:2], window)
            hidden = crop_boxes(scene.boxes[:2], window)[1]
            assert len(sample.boxes) == (shown & ~hidden).sum() and len(sample.ignore) == (shown & hidden).sum()
            regions += len(sample.ignore)
    assert regions > 0  # some windows hide most of an object


def test_no_shift_gives_the_roidb_entries_and_untiled_records_pass_as_they_are(tmp_path):
    scene, _ = painted_scene(tmp_path)
    roidb = build_roidb(tile_records([scene], size=100, overlap=0.0, empty_share=1.0))
    still = TileShift([scene], shift=0.0)
    for entry in roidb:
        again = still(entry, seed=7)
        assert (again.window, again.flipped, again.boxes.tolist()) == (
            entry.window,
            entry.flipped,
            entry.boxes.tolist(),
        )
        assert again.labels.tolist() == entry.labels.tolist()
    whole = build_roidb([scene])[0]
    assert TileShift([scene], 0.5)(whole, seed=7) is whole
    assert TileShift([], 0.5)(roidb[0], seed=7) is roidb[0]  # a tile of a scene it does not know
    with pytest.raises(ValueError, match=r"TILES.SHIFT is a fraction of the tile in \[0, 1\]"):
        TileShift([scene], 1.5)
