"""CSV boxes (DeepForest's and keras-retinanet's format): exclusive far edges, optional header,
image-level negative rows, bad rows named by file and line, the dataset YAML."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from label_writers import drawn_samples, write_csv, write_image

from frcnn.data.datasets.csv_boxes import CSVFormatDataset, CSVFormatError
from frcnn.data.datasets.custom import DatasetFileError
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.validate import check_records
from frcnn.utils.errors import InputError


def images(folder, *names, width=80, height=60):
    for name in names:
        write_image(folder / name, np.zeros((height, width, 3), np.uint8))


def test_far_edges_are_exclusive_as_deepforests(tmp_path):
    images(tmp_path, "a.png")
    (tmp_path / "a.csv").write_text(
        "image_path,xmin,ymin,xmax,ymax,label\n"
        "a.png,0,0,10,10,Tree\n"  # the top-left 10 x 10 pixels
        "a.png,70,50,80,60,Tree\n"  # to the image's far corner (80 x 60): pixels 70..79, 50..59
        "a.png,5.5,6.25,20.5,30,Dead\n"
    )
    ds = CSVFormatDataset("t", tmp_path / "a.csv", ["Tree", "Dead"])
    (record,) = ds.records
    assert record.boxes.tolist() == [[0, 0, 9, 9], [70, 50, 79, 59], [5.5, 6.25, 19.5, 29]]
    assert record.labels.tolist() == [1, 1, 2]
    assert (record.id, record.width, record.height, record.path) == ("a.png", 80, 60, str(tmp_path / "a.png"))
    report = check_records("t", ds.records, ds.issues, progress=False, num_classes=3)
    assert not report.issues  # nothing to clip


def test_without_header_and_negative_rows(tmp_path):
    images(tmp_path / "imgs", "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    (tmp_path / "rows.csv").write_text(
        "a.jpg,1,2,11,12,cat\n"
        "b.jpg,,,,,\n"  # keras-retinanet: an image without objects
        "c.jpg,0,0,0,0,Tree\n"  # DeepForest: an empty frame
        "\n"
        "a.jpg,20,20,40,30,dog\n"  # an image's rows need not be together
        "d.jpg,,,,,\n"
        "d.jpg,3,3,9,9,dog\n"
    )
    ds = CSVFormatDataset("t", tmp_path / "rows.csv", ["cat", "dog"], image_dir=tmp_path / "imgs")
    assert [r.id for r in ds.records] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert [r.labels.tolist() for r in ds.records] == [[1, 2], [], [], [2]]
    assert ds.records[1].boxes.shape == (0, 4) and not ds.issues


def test_header_columns_are_found_by_name(tmp_path):
    images(tmp_path, "a.png")
    (tmp_path / "a.csv").write_text("label,score,image_path,ymin,xmin,ymax,xmax\nTree,0.9,a.png,2,1,12,11\n")
    (record,) = CSVFormatDataset("t", tmp_path / "a.csv", ["Tree"]).records
    assert record.boxes.tolist() == [[1, 2, 10, 11]]


def test_bad_rows_are_dropped_and_named_by_file_and_line(tmp_path):
    root = tmp_path / "data"
    images(root, "a.png")
    images(tmp_path, "outside.png")
    rows = [
        "image_path,xmin,ymin,xmax,ymax,label",
        "a.png,1,1,10,10,cat",
        "a.png,nan,1,10,10,cat",
        "a.png,1,1,10",
        "a.png,one,1,10,10,cat",
        "a.png,1,,10,10,cat",
        "a.png,1,1,10,10,",
        "a.png,1,1,10,10,horse",
        "a.png,10,10,10,20,cat",
        "a.png,90,70,99,99,cat",
        ",1,1,10,10,cat",
        "a.png,1,1,inf,10,cat",
        "../outside.png,1,1,10,10,cat",
        "../outside.png,,,,,",
        "a.png,-5,-5,5,5,cat",
    ]
    (root / "a.csv").write_text("\n".join(rows) + "\n")
    ds = CSVFormatDataset("t", root / "a.csv", ["cat"])
    (record,) = ds.records
    assert record.boxes.tolist() == [[1, 1, 9, 9], [-5, -5, 4, 4]]
    assert all(i.where.startswith(f"{root / 'a.csv'}:") for i in ds.issues)
    kinds = [(int(i.where.rsplit(":", 1)[1]), i.kind) for i in ds.issues]
    assert kinds == [
        (3, "non-finite box dropped"),
        (4, "malformed rows"),
        (5, "malformed rows"),
        (6, "malformed rows"),
        (7, "malformed rows"),
        (8, "objects of unknown classes dropped"),
        (9, "degenerate box dropped"),
        (10, "box outside the image dropped"),
        (11, "malformed rows"),
        (12, "non-finite box dropped"),
        (13, "path leaves the dataset root"),  # once for the image, its other row passed over
    ]
    assert [i.action for i in ds.issues].count("skipped") == 1
    report = check_records("t", ds.records, ds.issues, progress=False, num_classes=2)
    assert len(report.kept) == 1 and [i.kind for i in report.issues[len(ds.issues) :]] == ["box clipped"]


def test_files_that_cannot_be_read_are_named(tmp_path):
    (tmp_path / "latin1.csv").write_bytes("a.png,1,1,10,10,caf\xe9\n".encode("latin-1"))
    with pytest.raises(CSVFormatError, match="latin1.csv: not UTF-8") as e:
        _ = CSVFormatDataset("t", tmp_path / "latin1.csv", ["cat"]).records
    assert isinstance(e.value, InputError)
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        _ = CSVFormatDataset("t", tmp_path / "nothing.csv", ["cat"]).records


def test_dataset_yaml_reads_classes_from_the_training_csv(tmp_path):
    samples = drawn_samples()
    write_csv(tmp_path / "train.csv", tmp_path / "images", samples[:3])
    write_csv(tmp_path / "test.csv", tmp_path, samples[3:], header=False)
    (tmp_path / "d.yaml").write_text("format: csv\ntrain: {csv: train.csv, images: images}\ntest: test.csv\n")
    spec = dataset_spec(str(tmp_path / "d.yaml"))
    (train,) = spec.train()
    test = spec.test()
    assert train.classes == test.classes == ("__background__", "bird", "cat", "dog")
    assert [len(r.boxes) for r in train.records] == [3, 0, 3]
    assert test.records[0].path == str(tmp_path / "sample_000.png")  # paths relative to the CSV's folder


@pytest.mark.parametrize(
    "text, message",
    [
        ("format: csv\ntrain: {images: images}\ntest: t.csv\n", "'train' needs a csv"),
        ("format: csv\ntrain: {csv: ../../x.csv}\ntest: t.csv\n", "leaves the dataset root"),
        ("format: csv\ntrain: {csv: t.csv, images: ../..}\ntest: t.csv\n", "leaves the dataset root"),
        ("format: csv\ntrain: t.csv\n", "missing 'test'"),
    ],
)
def test_bad_csv_yaml_is_a_clear_error(tmp_path, text, message):
    (tmp_path / "t.csv").write_text("a.png,1,1,10,10,cat\n")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(DatasetFileError, match=message):
        dataset_spec(str(tmp_path / "bad.yaml")).train()


DEEPFOREST_WHEEL = os.environ.get("DEEPFOREST_WHEEL", "/tmp/wheels/deepforest-2.1.0-py3-none-any.whl")


def test_deepforests_own_csv_fits_its_image_only_as_exclusive(tmp_path):
    """OSBS_029.csv, DeepForest's sample annotations: its boxes reach xmax = ymax = 400 on the
    400 x 400 OSBS_029.tif; read as exclusive they end on the image's last pixel, unclipped."""
    if not os.path.isfile(DEEPFOREST_WHEEL):
        pytest.skip(f"DeepForest's wheel not found at {DEEPFOREST_WHEEL} (pip download --no-deps deepforest==2.1.0)")
    with zipfile.ZipFile(DEEPFOREST_WHEEL) as wheel:
        for name in ("OSBS_029.csv", "OSBS_029.tif"):
            (tmp_path / name).write_bytes(wheel.read(f"deepforest/data/{name}"))
    first = CSVFormatDataset("t", tmp_path / "OSBS_029.csv", ())
    ds = CSVFormatDataset("t", tmp_path / "OSBS_029.csv", first.label_names())
    (record,) = ds.records
    assert ds.classes == ("__background__", "Tree") and (record.width, record.height) == (400, 400)
    assert len(record.boxes) == 61 and record.boxes[:, 2:].max() == 399 and not ds.issues
    report = check_records("t", ds.records, ds.issues, progress=False, num_classes=2)
    assert not report.issues and len(report.kept[0].boxes) == 61


def test_odd_fields_are_named_not_raised(tmp_path):
    images(tmp_path, "a.png", "b c.png")
    (tmp_path / "a.csv").write_text(
        'a.png,1,1,10,10,cat\n"b c.png",1,1,10,10,"cat"\na\x00.png,1,1,10,10,cat\n'
        '"a.png","1","1","1' + "0" * 400 + '","10",cat\n"a.png,1,1,\n10,10,cat\n'
    )
    ds = CSVFormatDataset("t", tmp_path / "a.csv", ["cat"])
    assert [r.id for r in ds.records] == ["a.png", "b c.png"]
    assert [i.kind for i in ds.issues] == [
        "path leaves the dataset root",  # a NUL: no file name
        "non-finite box dropped",  # xmax of 401 digits
        "malformed rows",  # a quoted field across lines: 3 fields
    ]
