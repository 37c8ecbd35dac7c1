"""Bad data in every form is found before training, fixed or skipped, and never stops a run."""

import json
from pathlib import Path

import numpy as np
import pytest

from frcnn.data.datasets.coco import COCOFormatDataset, COCOFormatError
from frcnn.data.datasets.pascal_voc import VOCFormatDataset
from frcnn.data.loader import read_image
from frcnn.data.validate import DataError, check_records

CLASSES = ("circle", "square")


@pytest.fixture()
def voc_report(tmp_path, build):
    build.bad_voc(tmp_path)
    ds = VOCFormatDataset("bad", tmp_path, "trainval", CLASSES)
    return ds, check_records(ds.name, ds.records, ds.issues, cache_file=tmp_path / "cache.json", progress=False)


def by_reason(report):
    return {Path(i.where).stem.split(".")[0]: i.problem for i in report.skipped}


def test_every_bad_voc_input_is_found(voc_report):
    ds, report = voc_report
    assert sorted(r.id for r in report.kept) == sorted(["good", "good2", "empty", "gray", "alpha", "deep", "boxes"])
    skipped = by_reason(report)
    assert (
        skipped["missing"] == "missing"
        and skipped["zerobytes"] == "zero bytes"
        and skipped["notimage"] == "not an image"
    )
    assert skipped["truncated"].startswith("corrupt or truncated") and skipped["corrupt"].startswith(
        ("corrupt", "not an image")
    )
    assert skipped["tiny"] == "too small (4x3 pixels)"
    assert skipped["badxml"].startswith("XML does not parse") and skipped["noxml"] == "annotation file missing"
    assert "leaves the dataset root" in skipped["escape"]
    summary = report.summary()
    assert summary.startswith("data check of bad: 16 images") and "skipped 9 images" in summary
    for kind in (
        "grayscale images converted",
        "alpha channel images converted",
        "16-bit images converted",
        "box clipped",
        "degenerate box dropped",
        "non-finite box dropped",
        "box outside the image dropped",
        "objects of unknown classes dropped",
    ):
        assert kind in summary, kind


def test_boxes_are_clipped_or_dropped(voc_report):
    _, report = voc_report
    record = next(r for r in report.kept if r.id == "boxes")
    # VOC is 1-based: [-5, 10, 30, 70] -> [-6, 9, 29, 69] clipped to the 80 x 60 image; [1, 1, 20, 20] kept
    assert record.boxes.tolist() == [[0, 9, 29, 59], [0, 0, 19, 19]]
    assert record.labels.tolist() == [1, 2]


def test_converted_images_read_as_8_bit_rgb(voc_report):
    _, report = voc_report
    for record in report.kept:
        image = read_image(record.path)
        assert image.dtype == np.uint8 and image.shape == (record.height, record.width, 3), record.id


def test_strict_makes_skips_errors_and_empty_split_is_an_error(tmp_path, build):
    build.bad_voc(tmp_path)
    ds = VOCFormatDataset("bad", tmp_path, "trainval", CLASSES)
    with pytest.raises(DataError, match="--strict: data check of bad.*zerobytes.jpg \\(zero bytes\\)"):
        check_records(ds.name, ds.records, ds.issues, strict=True, progress=False)
    empty = VOCFormatDataset("empty", tmp_path, "none", CLASSES)
    with pytest.raises(DataError, match="empty: no usable images"):
        check_records(empty.name, empty.records, empty.issues, progress=False)


def test_check_is_cached(tmp_path, monkeypatch, build):
    build.bad_voc(tmp_path)
    ds = VOCFormatDataset("bad", tmp_path, "trainval", CLASSES)
    cache = tmp_path / "cache.json"
    first = check_records(ds.name, ds.records, ds.issues, cache_file=cache, progress=False)
    import frcnn.data.validate as validate

    monkeypatch.setattr(validate, "inspect_image", lambda path: pytest.fail("decoded again"))
    second = check_records(ds.name, ds.records, ds.issues, cache_file=cache, progress=False)
    assert second.summary() == first.summary()
    assert isinstance(json.loads(cache.read_text()), dict)


def bad_coco(root: Path, good_image) -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    good_image(images / "a.jpg")
    good_image(images / "b.jpg")
    (images / "zero.jpg").write_bytes(b"")
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 80, "height": 60},
            {"id": 2, "file_name": "b.jpg", "width": 80, "height": 60},
            {"id": 3, "file_name": "zero.jpg", "width": 80, "height": 60},
            {"id": 4, "file_name": "../../etc/passwd"},
            {"file_name": "no_id.jpg"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 20, 20]},
            {"id": 2, "image_id": 99, "category_id": 5, "bbox": [10, 10, 20, 20]},
            {"id": 3, "image_id": 2, "category_id": 5, "bbox": [10, 10]},
            {"id": 4, "image_id": 2, "category_id": 7, "bbox": [70, 50, 30, 30]},
            {"id": 5, "image_id": 2, "category_id": 7, "bbox": [10, 10, 0, 5]},
        ],
        "categories": [{"id": 5, "name": "circle"}, {"id": 7, "name": "square"}],
    }
    (root / "ann.json").write_text(json.dumps(data))
    return root / "ann.json"


def test_every_bad_coco_input_is_found(tmp_path, build):
    ds = COCOFormatDataset("c", bad_coco(tmp_path, build.good_image), tmp_path / "images")
    report = check_records(ds.name, ds.records, ds.issues, progress=False)
    assert [r.id for r in report.kept] == [1, 2]
    problems = " | ".join(i.problem for i in report.issues)
    assert "points at image id 99" in problems and "needs a 4-number 'bbox'" in problems
    assert "images[4] needs an integer 'id'" in problems and "leaves" in problems and "zero bytes" in problems
    b = report.kept[1]
    assert b.boxes.tolist() == [[70, 50, 79, 59]]  # [70, 50, 30, 30] clipped; the 0-wide box dropped
    assert "degenerate box dropped" in report.summary()


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2, 3]", "not COCO instances JSON"),
        ("{not json", "not JSON"),
        ('{"images": [], "annotations": [], "categories": [{"id": "x"}]}', "integer 'id' and a 'name'"),
    ],
)
def test_coco_file_of_the_wrong_shape_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "ann.json").write_text(content)
    with pytest.raises(COCOFormatError, match=message):
        _ = COCOFormatDataset("c", tmp_path / "ann.json", tmp_path).records


def two_image_coco(tmp_path, good_image, images, annotations):
    (tmp_path / "images").mkdir(exist_ok=True)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        good_image(tmp_path / "images" / name)
    data = {"images": images, "annotations": annotations, "categories": [{"id": 5, "name": "circle"}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = COCOFormatDataset("c", tmp_path / "ann.json", tmp_path / "images")
    return check_records(ds.name, ds.records, ds.issues, progress=False)


def test_coco_images_sharing_an_id_are_skipped_with_an_issue_naming_both(tmp_path, build):
    """Two files under id 1: which boxes are whose is unknown, so both are skipped (the second
    one used to take the first one's boxes), and the issue names both; a repeated annotation id
    is an issue too, its boxes both kept."""
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 80, "height": 60},
        {"id": 1, "file_name": "b.jpg", "width": 80, "height": 60},
        {"id": 2, "file_name": "c.jpg", "width": 80, "height": 60},
    ]
    box = {"category_id": 5, "bbox": [10, 10, 20, 20], "iscrowd": 0, "area": 400}
    moved = {**box, "bbox": [30, 20, 20, 20]}
    annotations = [{"id": 1, "image_id": 1, **box}, {"id": 2, "image_id": 2, **box}, {"id": 2, "image_id": 2, **moved}]
    report = two_image_coco(tmp_path, build.good_image, images, annotations)
    assert [(r.id, Path(r.path).name, len(r.boxes)) for r in report.kept] == [(2, "c.jpg", 2)]
    shared = [i for i in report.skipped if "image id 1" in i.problem]
    assert len(shared) == 1 and "'a.jpg' and 'b.jpg'" in shared[0].problem
    assert any("annotations[2] has id 2, as annotations[1] has" in i.problem for i in report.fixed)


def test_an_object_given_twice_is_dropped_once(tmp_path, build):
    """The same class and box twice in an image (a double click in an annotation tool): the VOC
    devkit can match only one of them, so the check keeps one and says so."""
    images = [{"id": 1, "file_name": "a.jpg", "width": 80, "height": 60}]
    box = {"image_id": 1, "category_id": 5, "bbox": [10, 10, 20, 20]}
    corner = {"image_id": 1, "category_id": 5, "bbox": [70, 50, 10, 10]}
    beyond = {**corner, "bbox": [70, 50, 40, 40]}  # the same box once clipped to the image
    report = two_image_coco(tmp_path, build.good_image, images, [box, box, corner, beyond, {**box, "iscrowd": 1}])
    assert report.kept[0].boxes.tolist() == [[10, 10, 29, 29], [70, 50, 79, 59], [10, 10, 29, 29]]
    assert report.kept[0].crowd.tolist() == [False, False, True]
    again = [i.problem for i in report.issues if i.kind == "duplicate objects dropped"]
    assert again == [
        f"object {b} given again (same class, same box) dropped"
        for b in ([10.0, 10.0, 29.0, 29.0], [70.0, 50.0, 109.0, 89.0])
    ]


def test_coco_entries_of_the_wrong_type_are_issues_not_errors(tmp_path, build):
    """An "image_id" of [1] and a "category_id" of "5" are malformed annotations; an infinite, negative
    or missing width is read off the image; a 400-digit coordinate is infinite, and dropped."""
    images = [
        {"id": 1, "file_name": "a.jpg", "width": float("inf"), "height": 60},
        {"id": 2, "file_name": "b.jpg", "width": -80, "height": "sixty"},
    ]
    box = {"bbox": [10, 10, 20, 20]}
    annotations = [
        {"id": 1, "image_id": [1], "category_id": 5, **box},
        {"id": 2, "image_id": 1, "category_id": "5", **box},
        {"id": 3, "image_id": 1, "category_id": 5, **box},
        {"id": 4, "image_id": 2, "category_id": 5, "bbox": [10**400, 10, 20, 20]},
    ]
    report = two_image_coco(tmp_path, build.good_image, images, annotations)
    assert [(r.id, r.width, r.height, r.boxes.tolist()) for r in report.kept] == [
        (1, 80, 60, [[10, 10, 29, 29]]),
        (2, 80, 60, []),
    ]
    problems = " | ".join(i.problem for i in report.issues)
    assert "annotations[0] points at image id [1]" in problems
    assert "annotations[1] needs a 4-number 'bbox' and an integer 'category_id'" in problems
    assert "non-finite box" in problems and "annotation says 0x60, image is 80x60" in problems
