"""LabelMe JSON: shapes to boxes on LabelMe's continuous image, the dataset YAML, bad files and
shapes, and LabelMe's own example files.

LabelMe's examples are read from its sdist (GPL-3.0, with PASCAL VOC images: not copied into this
repository): `pip download --no-deps --no-binary :all: labelme -d /tmp/wheels`, or name the
.tar.gz in LABELME_SDIST. Without it those tests skip; the tests above them build equivalent files.
"""

from __future__ import annotations

import glob
import json
import os
import tarfile

import numpy as np
import pytest
from label_writers import labelme_shape, write_image, write_labelme_file

from frcnn.data.datasets.coco import COCOFormatDataset
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.datasets.labelme import LabelMeDataset
from frcnn.data.validate import check_records


def shape(label, points, kind, **more):
    return {"label": label, "points": points, "group_id": None, "shape_type": kind, "flags": {}, **more}


def test_every_shape_type(tmp_path):
    write_image(tmp_path / "a.jpg", np.zeros((60, 80, 3), np.uint8))
    shapes = [
        shape("cat", [[40, 30], [10, 20]], "rectangle"),  # corners in either order
        shape("cat", [[5, 5], [15, 2], [12, 25]], "polygon"),
        shape("dog", [[30, 30], [30, 40]], "circle"),  # centre and a rim point: radius 10
        shape("dog", [[50, 10], [60, 20], [50, 30], [40, 20]], "oriented_rectangle"),
        shape("dog", [[1, 2], [11, 12]], "mask", mask="iVBORw0KGgo="),
        shape("cat", [[3, 4], [9, 10], [6, 1]], None),  # no shape_type: a polygon, as LabelMe reads it
        shape("cat", [[80, 60], [70, 50]], "rectangle"),  # to the image's far corner: pixels 70..79, 50..59
    ]
    write_labelme_file(tmp_path / "a.json", "a.jpg", 80, 60, shapes)
    (record,) = LabelMeDataset("t", tmp_path, ["cat", "dog"]).records
    assert record.boxes.tolist() == [
        [10, 20, 39, 29],
        [5, 2, 14, 24],
        [20, 20, 39, 39],
        [40, 10, 59, 29],
        [1, 2, 11, 12],  # a mask's points are its bitmap's first and last pixels
        [3, 1, 8, 9],
        [70, 50, 79, 59],
    ]
    assert record.labels.tolist() == [1, 1, 2, 2, 2, 1, 1]
    assert (record.id, record.width, record.height, record.path) == ("a", 80, 60, str(tmp_path / "a.jpg"))


def test_groups_join_and_difficult_flags(tmp_path):
    write_image(tmp_path / "a.jpg", np.zeros((60, 80, 3), np.uint8))
    shapes = [
        {**labelme_shape("cat", [0, 0, 9, 9]), "group_id": 1},
        labelme_shape("cat", [30, 30, 39, 39]),
        {**labelme_shape("cat", [20, 5, 29, 14], polygon=True), "group_id": 1},  # one cat, in two parts
        {**labelme_shape("dog", [0, 0, 9, 9]), "group_id": 1},  # another label: another object
        {**labelme_shape("dog", [50, 50, 59, 59]), "flags": {"difficult": True}},
    ]
    write_labelme_file(tmp_path / "a.json", "a.jpg", 80, 60, shapes)
    (record,) = LabelMeDataset("t", tmp_path, ["cat", "dog"]).records
    assert record.boxes.tolist() == [[0, 0, 29, 14], [30, 30, 39, 39], [0, 0, 9, 9], [50, 50, 59, 59]]
    assert record.labels.tolist() == [1, 1, 2, 2]
    assert record.difficult.tolist() == [False, False, False, True]


def test_bad_shapes_are_dropped_and_named(tmp_path):
    write_image(tmp_path / "a.jpg", np.zeros((60, 80, 3), np.uint8))
    shapes = [
        labelme_shape("cat", [1, 1, 9, 9]),
        shape("cat", [[5, 5]], "point"),
        shape("cat", [[5, 5], [9, 9]], "line"),
        shape("cat", [[5, 5], [9, 9], [1, 3]], "linestrip"),
        shape("horse", [[1, 1], [9, 9]], "rectangle"),
        shape("__ignore__", [[1, 1], [9, 9]], "rectangle"),
        shape("cat", [[1, "x"], [9, 9]], "rectangle"),
        shape("cat", [[1, 1], [9, 9], [3, 3]], "rectangle"),
        shape("cat", [[1, 1], [9, 9]], "polygon"),
        shape("cat", [[1, 1], [9, 9]], "cuboid"),
        shape(None, [[1, 1], [9, 9]], "rectangle"),
        "not a shape",
        shape("cat", [[1, 1], [1e400, 9]], "rectangle"),
        shape("cat", [[100, 100], [120, 120]], "rectangle"),
        shape("cat", [[5, 5], [5, 9]], "rectangle"),
    ]
    write_labelme_file(tmp_path / "a.json", "a.jpg", 80, 60, shapes)
    ds = LabelMeDataset("t", tmp_path, ["cat"])
    (record,) = ds.records
    assert record.boxes.tolist() == [[1, 1, 9, 9]]
    assert all(i.where == str(tmp_path / "a.json") and i.action == "dropped" for i in ds.issues)
    assert [i.problem.split(" ")[0] for i in ds.issues] == [f"shapes[{n}]" for n in range(1, 15)]
    assert [i.kind for i in ds.issues] == [
        "point shapes dropped",
        "line shapes dropped",
        "linestrip shapes dropped",
        "objects of unknown classes dropped",
        "__ignore__ shapes dropped",
        *["malformed shapes dropped"] * 6,
        "non-finite box dropped",
        "box outside the image dropped",
        "degenerate box dropped",
    ]
    report = check_records("t", ds.records, ds.issues, progress=False, num_classes=2)
    assert len(report.kept) == 1 and len(report.issues) == 14


def test_bad_files_skip_their_image(tmp_path):
    folder = tmp_path / "data" / "labels"
    write_image(tmp_path / "data" / "images" / "good.jpg", np.zeros((60, 80, 3), np.uint8))
    write_labelme_file(folder / "good.json", "..\\images\\good.jpg", 0, 0, [labelme_shape("cat", [1, 1, 9, 9])])
    write_labelme_file(folder / "escape.json", "../../../secret.jpg", 80, 60, [])
    write_labelme_file(folder / "embedded.json", "gone.jpg", 80, 60, [])
    data = json.loads((folder / "embedded.json").read_text())
    (folder / "embedded.json").write_text(json.dumps({**data, "imageData": "/9j/4AAQ"}))
    (folder / "broken.json").write_text('{"shapes": [')
    (folder / "other.json").write_text('{"images": [], "annotations": []}')
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    ds = LabelMeDataset("t", folder, ["cat"], root=tmp_path / "data")
    (record,) = ds.records
    assert (record.id, record.width, record.height) == ("good", 80, 60)  # no size in the file: the image's
    assert record.path == str(folder / "../images/good.jpg")  # Windows separators read as /
    kinds = {i.where.rsplit("/", 1)[1]: i.kind for i in ds.issues}
    assert kinds == {
        "binary.json": "annotation does not parse",
        "broken.json": "annotation does not parse",
        "embedded.json": "images only embedded",
        "escape.json": "path leaves the dataset root",
        "other.json": "not LabelMe files",
    }
    assert all(i.action == "skipped" for i in ds.issues)


def test_dataset_yaml_reads_classes_from_the_training_folder(tmp_path):
    for split, labels in (("train", ["dog", "cat", "__ignore__"]), ("test", ["cat"])):
        write_image(tmp_path / split / "a.png", np.zeros((40, 50, 3), np.uint8))
        shapes = [labelme_shape(label, [2 * n, 2 * n, 10 + n, 10 + n]) for n, label in enumerate(labels)]
        write_labelme_file(tmp_path / split / "a.json", "a.png", 50, 40, shapes + [shape("bird", [[1, 1]], "point")])
    (tmp_path / "d.yaml").write_text("format: labelme\ntrain: {folder: train}\ntest: test\n")
    spec = dataset_spec(str(tmp_path / "d.yaml"))
    (train,) = spec.train()
    test = spec.test()
    assert train.classes == test.classes == ("__background__", "cat", "dog")  # no __ignore__, no point-only bird
    assert train.records[0].labels.tolist() == [2, 1] and test.records[0].labels.tolist() == [1]
    assert test.metric == "voc"


# ---- LabelMe's own example files, from its sdist ----


def labelme_sdist() -> str | None:
    found = [os.environ.get("LABELME_SDIST", "")] + sorted(glob.glob("/tmp/wheels/labelme-*.tar.gz"))
    return next((path for path in found if path and os.path.isfile(path)), None)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    sdist = labelme_sdist()
    if sdist is None:
        pytest.skip("LabelMe's sdist not found: pip download --no-deps --no-binary :all: labelme -d /tmp/wheels")
    out = tmp_path_factory.mktemp("labelme")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/examples/" in m.name and m.isfile()]
        tar.extractall(out, members=members, filter="data")
    (top,) = out.iterdir()
    return top / "examples"


def test_labelme_bbox_detection_example(examples):
    folder = examples / "bbox_detection" / "data_annotated"
    ds = LabelMeDataset("t", folder, LabelMeDataset("t", folder, ()).label_names())
    assert ds.classes[1:] == ("bus", "car", "person")
    record = {r.id: r for r in ds.records}["2011_000006"]
    assert (record.width, record.height) == (500, 375)
    # the file's first rectangle, (91, 107) to (240, 330), and its fractional third one
    assert record.boxes[0].tolist() == [91, 107, 239, 329]
    np.testing.assert_allclose(record.boxes[2], [254.3846, 115.3846, 368.3846, 291.3846], atol=1e-3)
    report = check_records("t", ds.records, ds.issues, progress=False, num_classes=ds.num_classes)
    assert len(report.kept) == 3 and not report.issues  # the rectangle drawn to x = 500 fits the 500-px image


def test_labelme_primitives_example_keeps_areas_and_names_the_rest(examples):
    ds = LabelMeDataset("t", examples / "primitives", ["rectangle", "circle", "polygon", "octagon"])
    (record,) = ds.records
    assert record.labels.tolist() == [1, 2, 1, 3, 4]  # rectangle, circle, rectangle, polygon, mask
    assert record.boxes[0].tolist() == [32, 35, 131, 134]
    assert record.boxes[4].tolist() == [417, 305, 516, 404]  # the octagon's 100 x 100 mask from (417.4, 305)
    assert sorted(i.kind for i in ds.issues) == [
        "line shapes dropped",
        "linestrip shapes dropped",
        "point shapes dropped",
    ]


def test_labelme_instance_example_is_within_a_pixel_of_labelmes_own_coco_export(examples):
    """labelme2coco.py (in the sdist) wrote data_dataset_coco from data_annotated: its boxes are
    the filled masks' (group members joined), up to a pixel larger at the far sides."""
    base = examples / "instance_segmentation"
    coco = COCOFormatDataset("c", base / "data_dataset_coco" / "annotations.json", base / "data_dataset_coco")
    ours = LabelMeDataset("t", base / "data_annotated", coco.foreground_classes)
    theirs = {r.path.rsplit("/", 1)[1][:-4]: r for r in coco.records}
    assert len(ours.records) == len(theirs) == 3
    for record in ours.records:
        other = theirs[record.id]
        assert (record.width, record.height) == (other.width, other.height)
        order, other_order = np.lexsort(record.boxes.T[::-1]), np.lexsort(other.boxes.T[::-1])
        assert record.labels[order].tolist() == other.labels[other_order].tolist()
        np.testing.assert_allclose(record.boxes[order], other.boxes[other_order], atol=1.0)
    assert {i.kind for i in ours.issues} == {"__ignore__ shapes dropped"}


def test_odd_values_are_named_not_raised(tmp_path):
    write_image(tmp_path / "a.jpg", np.zeros((60, 80, 3), np.uint8))
    shapes = [
        shape("cat", [[1, 1], [10**400, 9]], "rectangle"),  # an integer no float holds
        shape("cat", [[1, 1], [10**400, 9]], "circle"),
        {**labelme_shape("cat", [1, 1, 9, 9]), "group_id": [1, 2]},  # not a group id: its own object
        shape("cat", {"x": 1}, "rectangle"),
        shape("cat", [[True, 1], [9, 9]], "rectangle"),
    ]
    write_labelme_file(tmp_path / "a.json", "a.jpg", 80, 60, shapes)
    write_labelme_file(tmp_path / "b.json", "a\x00.jpg", 80, 60, [])
    ds = LabelMeDataset("t", tmp_path, ["cat"])
    (record,) = ds.records
    assert record.boxes.tolist() == [[1, 1, 9, 9]]
    assert [i.kind for i in ds.issues] == [
        "non-finite box dropped",
        "non-finite box dropped",
        "malformed shapes dropped",
        "malformed shapes dropped",
        "path leaves the dataset root",
    ]
