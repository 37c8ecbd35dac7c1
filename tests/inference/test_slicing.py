"""Sliced inference (inference/slicing.py): boxes mapped back from the tiles, SAHI's merges on
hand-built cases with known answers, and the whole of it against SAHI 0.12.8's own
get_sliced_prediction around the same detector."""

import json

import cv2
import numpy as np
import pytest
from conftest import shapes_samples

from frcnn.data.datasets.base import ImageRecord
from frcnn.data.tiling import tile_windows
from frcnn.inference import demo
from frcnn.inference.detections import Detections, DetectorBase
from frcnn.inference.records import detect_records
from frcnn.inference.slicing import detect_sliced, merge_detections, tile_detections, x_overlapping_pairs

CLASSES = ("__background__", "a", "b", "c")


def merged(boxes, scores, labels, **options):
    out = merge_detections(np.array(boxes, float), np.array(scores, np.float32), np.array(labels), **options)
    return out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist()


# ---- the merges, by hand ----------------------------------------------------------------------


def test_two_overlapping_boxes_of_a_class_merge_to_their_union_with_the_higher_score():
    boxes, scores, labels = merged([[10, 10, 29, 29], [15, 12, 40, 31]], [0.5, 0.75], [1, 1])
    assert boxes == [[10, 10, 40, 31]] and scores == [0.75] and labels == [1]


def test_boxes_of_different_classes_stay_apart_unless_class_agnostic():
    boxes = [[10, 10, 29, 29], [15, 12, 40, 31]]
    assert merged(boxes, [0.5, 0.75], [1, 2]) == (
        [[15, 12, 40, 31], [10, 10, 29, 29]],
        [0.75, 0.5],
        [2, 1],
    )
    # across classes the union takes the best box's label
    assert merged(boxes, [0.5, 0.75], [1, 2], class_agnostic=True) == ([[10, 10, 40, 31]], [0.75], [2])


def test_ios_matches_a_box_cut_by_a_tile_edge_where_iou_does_not():
    # the part of a 40 x 40 box that a tile sees (40 x 10, all of it inside the whole box):
    # IOS = 400 / 400 = 1, IOU = 400 / 1600 = 0.25 (inclusive pixels: widths x2 - x1 + 1)
    whole, part = [100, 100, 139, 139], [100, 130, 139, 139]
    assert merged([whole, part], [0.875, 0.75], [1, 1], match_metric="ios") == ([whole], [0.875], [1])
    assert merged([whole, part], [0.875, 0.75], [1, 1], match_metric="iou")[0] == [whole, part]
    assert merged([whole, part], [0.875, 0.75], [1, 1], match_metric="iou", match_threshold=0.25)[0] == [whole]


def test_nms_keeps_the_best_box_of_a_match_unchanged():
    boxes, scores, _ = merged(
        [[10, 10, 29, 29], [12, 10, 31, 29], [60, 60, 70, 70]], [0.625, 0.875, 0.5], [1, 1, 1], merge="nms"
    )
    assert boxes == [[12, 10, 31, 29], [60, 60, 70, 70]] and scores == [0.875, 0.5]


def test_a_taken_box_no_longer_matching_the_grown_box_is_dropped_as_sahi_drops_it():
    # a, b, c best first; b and c each match a (IOU 100/190 and 50/100), so a takes both; after b
    # grows a to 10 x 19 pixels, c matches it no more (50/190) and is dropped, not kept apart
    a, b, c = [0, 0, 9, 9], [0, 0, 9, 18], [0, 0, 9, 4]
    assert merged([a, b, c], [0.875, 0.75, 0.625], [1, 1, 1], match_metric="iou") == ([[0, 0, 9, 18]], [0.875], [1])


def test_empty_and_bad_merges():
    assert merged(np.zeros((0, 4)), [], []) == ([], [], [])
    for options, message in [
        ({"merge": "nmm"}, "merge is one of greedy_nmm, nms"),
        ({"match_metric": "giou"}, "match_metric is one of ios, iou"),
        ({"match_threshold": 0.0}, r"match_threshold is in \(0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            merged([[0, 0, 1, 1]], [0.5], [1], **options)


def test_the_pairs_are_found_a_chunk_at_a_time_as_all_at_once():
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 300, (400, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.integers(1, 40, (400, 2))], 1)
    expected = {
        (min(i, j), max(i, j))
        for i in range(400)
        for j in range(i + 1, 400)
        if min(boxes[i, 2], boxes[j, 2]) > max(boxes[i, 0], boxes[j, 0])
    }
    for budget in (1, 97, 1 << 22):
        found = [(int(min(i, j)), int(max(i, j))) for a, b in x_overlapping_pairs(boxes, budget) for i, j in zip(a, b)]
        assert len(found) == len(set(found)) and set(found) == expected


# ---- tiles and their boxes mapped back --------------------------------------------------------


class FixedBoxPerTile(DetectorBase):
    """Every image gets the box (10, 20)-(29, 39) of class 1 and a low-scored one of class 2;
    records the images it was given, a batch at a time."""

    classes = CLASSES

    def __init__(self):
        self.batches = []

    def detect_arrays(self, images):
        self.batches.append([image.copy() for image in images])
        return [
            {
                "boxes": np.array([[10, 20, 29, 39], [0, 0, 5, 5]], np.float32),
                "scores": np.array([0.9 - 0.01 * len(self.batches), 0.05], np.float32),
                "labels": np.array([1, 2]),
            }
            for _ in images
        ]


def test_each_tile_is_the_images_pixels_and_its_boxes_move_back_by_its_origin():
    image = np.random.default_rng(1).integers(0, 256, (180, 260, 3), dtype=np.uint8)
    detector = FixedBoxPerTile()
    found = detect_sliced(detector, image, tile=100, overlap=0.2, batch_size=4, threshold=0.1)
    windows = tile_windows(180, 260, 100, 0.2)  # 3 columns x 2 rows
    assert [len(b) for b in detector.batches] == [4, 2]
    crops = [crop for batch in detector.batches for crop in batch]
    for (x0, y0, x1, y1), crop in zip(windows, crops):
        np.testing.assert_array_equal(crop, image[y0:y1, x0:x1])
    expected = sorted([x0 + 10, y0 + 20, x0 + 29, y0 + 39] for x0, y0, _, _ in windows)
    assert sorted(found["boxes"].tolist()) == expected  # none overlap: nothing merged
    assert set(found["labels"].tolist()) == {1}  # the class 2 boxes scored below the threshold
    assert np.all(np.diff(found["scores"]) <= 0)


def test_the_whole_image_pass_is_added_when_asked_and_more_than_one_tile():
    image = np.zeros((180, 260, 3), np.uint8)
    detector = FixedBoxPerTile()
    found = detect_sliced(detector, image, tile=100, overlap=0.2, batch_size=8, whole_image=True, threshold=0.1)
    assert [len(b) for b in detector.batches] == [6, 1] and detector.batches[1][0].shape == image.shape
    # the whole image's box (10, 20)-(29, 39) is the first tile's: merged into it
    assert len(found["scores"]) == 6 and [10, 20, 29, 39] in found["boxes"].tolist()
    single = FixedBoxPerTile()
    detect_sliced(single, image[:90, :90], tile=100, whole_image=True)
    assert [len(b) for b in single.batches] == [1]  # one tile is the whole image already


def test_a_detector_called_with_tile_detects_in_tiles():
    image = np.random.default_rng(2).integers(0, 256, (180, 260, 3), dtype=np.uint8)
    found = FixedBoxPerTile()(image, threshold=0.1, batch_size=4, tile=100, overlap=0.2, merge="nms")
    expected = detect_sliced(FixedBoxPerTile(), image, 100, 0.2, merge="nms", batch_size=4, threshold=0.1)
    assert isinstance(found, Detections) and len(found) == 6 and found.names == ["a"] * 6
    np.testing.assert_array_equal(found.boxes, expected["boxes"])
    both = FixedBoxPerTile()([image, image[:90]], tile=100)
    assert isinstance(both, list) and len(both) == 2
    whole = FixedBoxPerTile()(image)  # tile=None: as before, the image in one pass
    assert whole.boxes.tolist() == [[10, 20, 29, 39], [0, 0, 5, 5]]
    with pytest.raises(ValueError, match="merge apply to sliced inference: give tile=SIZE too"):
        FixedBoxPerTile()(image, merge="nms")


def test_progress_counts_tiles_on_stderr_when_asked(capsys):
    image = np.zeros((180, 260, 3), np.uint8)
    detect_sliced(FixedBoxPerTile(), image, tile=100)
    assert capsys.readouterr().err == ""
    detect_sliced(FixedBoxPerTile(), image, tile=100, progress=True)
    assert "6/6" in capsys.readouterr().err


def test_tile_detections_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="batch_size is at least 1"):
        tile_detections(FixedBoxPerTile(), np.zeros((10, 10, 3), np.uint8), [(0, 0, 10, 10)], batch_size=0)


# ---- the reference: SAHI's own sliced prediction around the same detector ---------------------


@pytest.fixture(scope="module")
def sahi():
    """SAHI's modules, on its numpy postprocess (its default on a CPU; on a GPU it would pick
    torchvision's), set back to `auto` afterwards."""
    pytest.importorskip("sahi", reason="sahi (requirements-test.txt) is not installed: no SAHI reference")
    from types import SimpleNamespace

    from sahi.models.base import DetectionModel
    from sahi.postprocess import combine
    from sahi.postprocess.backends import set_postprocess_backend
    from sahi.predict import get_sliced_prediction
    from sahi.prediction import ObjectPrediction
    from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list

    set_postprocess_backend("numpy")
    yield SimpleNamespace(
        DetectionModel=DetectionModel,
        ObjectPrediction=ObjectPrediction,
        get_sliced_prediction=get_sliced_prediction,
        combine=combine,
        fix_full_shape_list=fix_full_shape_list,
        fix_shift_amount_list=fix_shift_amount_list,
    )
    set_postprocess_backend("auto")


def sahi_model(sahi, detector, threshold: float):
    """A thin SAHI DetectionModel around `detector`: its boxes, scores >= threshold, class ids. SAHI's
    boxes end just past the last pixel, so x2 + 1 and y2 + 1 going in (and - 1 coming out)."""

    class Wrapped(sahi.DetectionModel):
        def set_model(self, model, **kwargs):
            self.model = model

        def perform_inference(self, image):
            self._original_predictions = detector.detect_arrays([image])

        def perform_batch_inference(self, images):
            self._original_predictions = detector.detect_arrays(list(images))

        def _create_object_prediction_list_from_original_predictions(
            self, shift_amount_list=None, full_shape_list=None
        ):
            shifts = sahi.fix_shift_amount_list(shift_amount_list or [[0, 0]])
            shapes = sahi.fix_full_shape_list(full_shape_list)
            self._object_prediction_list_per_image = [
                [
                    sahi.ObjectPrediction(
                        bbox=[x1, y1, x2 + 1, y2 + 1],
                        category_id=label,
                        category_name=detector.classes[label],
                        score=score,
                        shift_amount=shifts[k],
                        full_shape=shapes[k] if shapes else None,
                    )
                    for (x1, y1, x2, y2), score, label in zip(
                        out["boxes"].astype(np.float64).tolist(), out["scores"].tolist(), out["labels"].tolist()
                    )
                    if score >= self.confidence_threshold
                ]
                for k, out in enumerate(self._original_predictions)
            ]

    return Wrapped(model=detector, confidence_threshold=threshold, device="cpu")


def from_sahi(predictions) -> dict:
    """SAHI's ObjectPredictions as {boxes (inclusive), scores, labels}."""
    boxes = np.array([p.bbox.to_xyxy() for p in predictions], np.float64).reshape(-1, 4) - [0, 0, 1, 1]
    scores = np.array([p.score.value for p in predictions], np.float32)
    return {"boxes": boxes, "scores": scores, "labels": np.array([p.category.id for p in predictions], np.int64)}


def assert_same_detections(ours: dict, theirs: dict) -> None:
    """Same count and labels, boxes within 0.5 px, scores within 1e-4, matched in one order."""
    assert len(ours["scores"]) == len(theirs["scores"])
    a = np.lexsort((ours["boxes"][:, 1], ours["boxes"][:, 0], ours["labels"], -ours["scores"]))
    b = np.lexsort((theirs["boxes"][:, 1], theirs["boxes"][:, 0], theirs["labels"], -theirs["scores"]))
    np.testing.assert_array_equal(ours["labels"][a], theirs["labels"][b])
    np.testing.assert_allclose(ours["boxes"][a], theirs["boxes"][b], rtol=0, atol=0.5)
    np.testing.assert_allclose(ours["scores"][a], theirs["scores"][b], rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def large_image():
    """A 700 x 900 scene: twelve shapes images, each resized to 250 x 250, side by side."""
    canvas = np.zeros((750, 1000, 3), np.uint8)
    for k, (image, _) in enumerate(shapes_samples(12, seed=3)):
        row, column = divmod(k, 4)
        canvas[row * 250 : (row + 1) * 250, column * 250 : (column + 1) * 250] = cv2.resize(image, (250, 250))
    return np.ascontiguousarray(canvas[:700, :900])


@pytest.mark.parametrize(
    "merge, metric, agnostic, whole",
    [("greedy_nmm", "ios", False, False), ("greedy_nmm", "iou", True, True), ("nms", "iou", False, False)],
)
def test_sliced_detections_equal_sahis(sahi, random_tiny_detector, large_image, merge, metric, agnostic, whole):
    threshold, tile, overlap = 0.1, 256, 0.2
    windows = tile_windows(*large_image.shape[:2], tile, overlap)
    raw = sum(len(d["scores"]) for d in tile_detections(random_tiny_detector, large_image, windows, 4, threshold))
    ours = detect_sliced(
        random_tiny_detector, large_image, tile, overlap, merge, metric, 0.5, whole, 4, agnostic, threshold=threshold
    )
    result = sahi.get_sliced_prediction(
        large_image,
        sahi_model(sahi, random_tiny_detector, threshold),
        slice_height=tile,
        slice_width=tile,
        overlap_height_ratio=overlap,
        overlap_width_ratio=overlap,
        perform_standard_pred=whole,
        postprocess_type="GREEDYNMM" if merge == "greedy_nmm" else "NMS",
        postprocess_match_metric=metric.upper(),
        postprocess_match_threshold=0.5,
        postprocess_class_agnostic=agnostic,
        verbose=0,
        batch_size=4,
        force_postprocess_type=True,
    )
    assert raw > 500 and 100 < len(ours["scores"]) < raw  # many boxes, many of them merged
    assert_same_detections(ours, from_sahi(result.object_prediction_list))


@pytest.mark.parametrize("postprocess", ["GREEDYNMM", "NMS"])
@pytest.mark.parametrize("metric", ["IOS", "IOU"])
def test_merges_equal_sahis_on_thousands_of_crowded_boxes(sahi, postprocess, metric):
    """4400 boxes of two classes on integer pixels (ties of score and of measure included): from
    2000 boxes of a class SAHI takes its sparse path; ours must agree with it there too."""
    rng = np.random.default_rng(5)
    corners = rng.integers(0, 420, (4400, 2))
    boxes = np.concatenate([corners, corners + rng.integers(4, 40, (4400, 2))], 1).astype(np.float64)
    scores = rng.choice(np.linspace(0.1, 0.9, 50, dtype=np.float32), 4400)
    labels = np.repeat([1, 2], 2200)
    predictions = [
        sahi.ObjectPrediction(bbox=[x1, y1, x2 + 1, y2 + 1], category_id=int(label), score=float(score))
        for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores, labels)
    ]
    kind = {"GREEDYNMM": sahi.combine.GreedyNMMPostprocess, "NMS": sahi.combine.NMSPostprocess}[postprocess]
    theirs = kind(match_threshold=0.5, match_metric=metric, class_agnostic=False)(predictions)
    ours = merge_detections(boxes, scores, labels, "greedy_nmm" if postprocess == "GREEDYNMM" else "nms", metric)
    assert len(ours["scores"]) < 4000  # a tenth or more matched
    assert_same_detections(ours, from_sahi(theirs))


def test_the_runners_detect_whole_images_in_tiles(random_tiny_detector, large_image, tmp_path):
    """test_net.py --tile (records.detect_records) and demo.py --tile (demo.run_folder) give what
    detect_sliced gives for the same image."""
    cv2.imwrite(str(tmp_path / "scene.png"), large_image[:, :, ::-1])
    record = ImageRecord("scene", str(tmp_path / "scene.png"), 900, 700)
    expected = detect_sliced(random_tiny_detector, large_image, 256, 0.2, batch_size=3)
    assert len(expected["scores"]) > 10
    (found,) = detect_records(random_tiny_detector, [record], 3, progress=False, tile=256, overlap=0.2)
    for key in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(found[key], expected[key])
    drawn = demo.run_folder(random_tiny_detector, tmp_path, 0.0, 3, tile=256, overlap=0.2)
    saved = json.loads((tmp_path / "scene_det.json").read_text())
    assert drawn == len(expected["scores"]) == len(saved)
