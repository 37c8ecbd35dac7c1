"""YOLO (Ultralytics) labels: the layout, data.yaml as --dataset, the box convention, bad rows."""

from __future__ import annotations

import numpy as np
import pytest
from label_writers import drawn_samples, write_image, write_yolo

from frcnn.data.datasets.custom import DatasetFileError
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.datasets.yolo import YOLOFormatDataset, YOLOFormatError, label_path
from frcnn.data.validate import check_records


def blank(root, name, width=100, height=50):
    write_image(root / "images" / "train" / name, np.zeros((height, width, 3), np.uint8))


def test_rows_are_centre_and_size_on_the_continuous_image(tmp_path):
    blank(tmp_path, "a.jpg")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.4\n"  # 20 x 20 px around (50, 25): pixels 40..59, 15..34
        "1 0.05 0.1 0.1 0.2\n"  # the top-left 10 x 10 pixels
        "1 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6\n"  # a polygon (segment labels): its extent, 10..30 x 10..30
    )
    ds = YOLOFormatDataset("t", tmp_path, [tmp_path / "images" / "train"], ["cat", "dog"])
    (record,) = ds.records
    assert (record.id, record.width, record.height) == ("images/train/a.jpg", 100, 50)
    assert record.boxes.tolist() == [[40, 15, 59, 34], [0, 0, 9, 9], [10, 10, 29, 29]]
    assert record.labels.tolist() == [1, 2, 2]  # class i is label i + 1
    assert not ds.issues


def test_label_paths_follow_ultralytics():
    from pathlib import Path

    assert label_path(Path("/d/images/train/x/a.jpg")) == Path("/d/labels/train/x/a.txt")
    assert label_path(Path("/images/d/images/a.png")) == Path("/images/d/labels/a.txt")  # the last images/
    assert label_path(Path("/d/pics/a.jpeg")) == Path("/d/pics/a.txt")  # no images/: beside the image


def test_images_without_labels_or_with_empty_ones_are_negatives(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.png"):
        blank(tmp_path, name)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "labels" / "train" / "b.txt").write_text("")
    ds = YOLOFormatDataset("t", tmp_path, [tmp_path / "images" / "train"], ["cat"])
    assert [len(r.boxes) for r in ds.records] == [1, 0, 0]
    assert [r.boxes.shape for r in ds.records][1:] == [(0, 4), (0, 4)]
    report = check_records("t", ds.records, ds.issues, progress=False, num_classes=2)
    assert len(report.kept) == 3 and not report.issues


def test_a_split_without_any_label_file_is_an_error(tmp_path):
    blank(tmp_path, "a.jpg")
    with pytest.raises(YOLOFormatError, match="none of its 1 images has a label file"):
        _ = YOLOFormatDataset("t", tmp_path, [tmp_path / "images" / "train"], ["cat"]).records


def test_ultralytics_data_yaml_with_a_names_mapping_and_no_test(tmp_path):
    samples = drawn_samples()
    write_yolo(tmp_path / "coco8", "train", samples[:3])
    write_yolo(tmp_path / "coco8", "val", samples[3:])
    (tmp_path / "data.yaml").write_text(
        "# Ultralytics YOLO dataset\npath: coco8\ntrain: images/train\nval: images/val\ntest:  # optional\n"
        "names:\n  0: cat\n  1: dog\n  2: bird\ndownload: https://example.invalid/coco8.zip\n"
    )
    spec = dataset_spec(str(tmp_path / "data.yaml"))
    (train,) = spec.train()
    test, val = spec.test(), spec.val()
    assert train.classes == ("__background__", "cat", "dog", "bird") and test.classes == train.classes
    assert [len(r.boxes) for r in train.records] == [3, 0, 3]
    assert [r.id for r in test.records] == [r.id for r in val.records] == ["images/val/sample_000.png"]
    assert spec.profile == {"ANCHOR_SCALES": "auto", "TILES": {"SIZE": "auto"}}


def test_txt_lists_of_images_and_a_list_of_sources(tmp_path):
    samples = drawn_samples()
    write_yolo(tmp_path, "train", samples)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "a.txt").write_text("../images/train/sample_000.png\n\n./../images/train/sample_002.png\n")
    (tmp_path / "lists" / "b.txt").write_text(
        f"{tmp_path}/images/train/sample_003.png\n../images/train/sample_000.png\n"
    )
    (tmp_path / "d.yaml").write_text(
        "format: yolo\ntrain: [lists/a.txt, lists/b.txt]\nval: images/train\nnames: [cat, dog, bird]\n"
    )
    (train,) = dataset_spec(str(tmp_path / "d.yaml")).train()
    assert [r.id for r in train.records] == [f"images/train/sample_00{i}.png" for i in (0, 2, 3)]  # listed twice: once


def test_bad_rows_are_dropped_and_named_by_file_and_line(tmp_path):
    blank(tmp_path, "a.jpg")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    rows = [
        "0 0.5 0.5 0.2 0.4",
        "0 nan 0.5 0.2 0.4",
        "5 0.5 0.5 0.2 0.4",
        "0.5 0.5 0.5 0.2 0.4",
        "0 1.5 0.5 0.2 0.4",
        "0 60 25 20 20",
        "0 0.5 0.5 0 0.4",
        "0 0.5 0.5 0.2",
        "cat 0.5 0.5 0.2 0.4",
        "0 1.0 1.0 0.015 0.03",  # 1.5 px beyond the far corner
        "",
        "1 0.25 0.5 0.1 0.1",
    ]
    (tmp_path / "labels" / "train" / "a.txt").write_text("\n".join(rows) + "\n")
    ds = YOLOFormatDataset("t", tmp_path, [tmp_path / "images" / "train"], ["cat", "dog"])
    (record,) = ds.records
    assert record.labels.tolist() == [1, 2]
    where = {i.where.rsplit(":", 1)[1]: i.kind for i in ds.issues}
    assert all(i.where.startswith(str(tmp_path / "labels" / "train" / "a.txt:")) for i in ds.issues)
    assert where == {
        "2": "non-finite box dropped",
        "3": "objects of unknown classes dropped",
        "4": "objects of unknown classes dropped",
        "5": "rows not normalised",
        "6": "rows not normalised",
        "7": "degenerate box dropped",
        "8": "malformed rows",
        "9": "malformed rows",
        "10": "box outside the image dropped",
    }
    assert all(i.action == "dropped" for i in ds.issues)
    report = check_records("t", ds.records, ds.issues, progress=False, num_classes=3)
    assert len(report.kept) == 1 and len(report.issues) == 9


def test_unreadable_label_files_and_paths_leaving_the_root_skip_images(tmp_path):
    root = tmp_path / "data"
    blank(root, "a.jpg")
    blank(root, "b.jpg")
    blank(tmp_path, "outside.jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_bytes(b"0 0.5 0.5 \xff\xfe 0.1\n")
    (root / "labels" / "train" / "b.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "list.txt").write_text("images/train/a.jpg\nimages/train/b.jpg\n../images/train/outside.jpg\n")
    ds = YOLOFormatDataset("t", root, [root / "list.txt"], ["cat"])
    assert [r.id for r in ds.records] == ["images/train/b.jpg"]
    assert sorted(i.kind for i in ds.issues) == ["label files unreadable", "path leaves the dataset root"]
    assert all(i.action == "skipped" for i in ds.issues)


@pytest.mark.parametrize(
    "text, message",
    [
        ("path: .\ntrain: images/train\nval: images/train\nnames: {0: cat, 2: dog}\n", "names must map 0, 1"),
        ("path: .\ntrain: images/train\nnames: [cat]\n", "missing 'val'"),
        ("format: yolo\ntrain: images/train\nval: images/train\n", "YOLO data needs names"),
        ("path: .\ntrain: images/train\nval: images/train\nnames: [cat, dog]\nnc: 3\n", "nc is 3"),
        ("path: .\ntrain: ../../elsewhere\nval: images/train\nnames: [cat]\n", "leaves the dataset root"),
    ],
)
def test_bad_yolo_yaml_is_a_clear_error(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(DatasetFileError, match=message):
        dataset_spec(str(tmp_path / "bad.yaml")).train()


def test_a_missing_split_folder_is_named(tmp_path):
    (tmp_path / "d.yaml").write_text("path: .\ntrain: images/nowhere\nval: images/nowhere\nnames: [cat]\n")
    (train,) = dataset_spec(str(tmp_path / "d.yaml")).train()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _ = train.records


def test_garbage_never_raises_past_the_reader(tmp_path):
    blank(tmp_path, "a.jpg")
    blank(tmp_path, "b.jpg")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    junk = "".join(chr(c) for c in rng.integers(0, 0x3000, 4000) if not 0xD800 <= c < 0xE000)
    (tmp_path / "labels" / "train" / "a.txt").write_text(
        junk + "\n0 0.5 0.5 0.1 0.1\n0 " + "9" * 400 + " 0.5 0.1 0.1\n"
    )
    (tmp_path / "labels" / "train" / "b.txt").write_text("\x00\n0 0.5\x00 0.5 0.1 0.1\n")
    (tmp_path / "list.txt").write_text("images/train/a.jpg\nimages/\x00/b.jpg\nimages/train/b.jpg\n")
    ds = YOLOFormatDataset("t", tmp_path, [tmp_path / "list.txt"], ["cat"])
    assert [r.id for r in ds.records] == ["images/train/a.jpg", "images/train/b.jpg"]
    assert ds.records[0].labels.tolist() == [1] and len(ds.issues) > 2
    check_records("t", ds.records, ds.issues, progress=False, num_classes=2)
