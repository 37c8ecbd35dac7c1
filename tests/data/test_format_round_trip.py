"""One small dataset written in every format from the same boxes reads back as the same records."""

from __future__ import annotations

import numpy as np
import pytest
from label_writers import CLASSES, drawn_samples, write_csv, write_labelme, write_yolo

from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.validate import check_records

FORMATS = ("voc", "coco", "yolo", "labelme", "csv")


def write_every_format(root, build) -> dict:
    """The same samples in each format, each with a dataset YAML; format -> YAML path."""
    samples = drawn_samples()
    triples = [(image[:, :, ::-1], [(cls, box, False) for cls, box in objects]) for image, objects in samples]
    classes = f"classes: [{', '.join(CLASSES)}]\n"
    build.write_voc(root / "voc", "all", triples)
    build.write_coco(
        root / "coco" / "all.json", root / "coco" / "images", triples, {c: 1 + i for i, c in enumerate(CLASSES)}
    )
    write_yolo(root / "yolo", "all", samples)
    write_labelme(root / "labelme" / "all", samples)
    write_csv(root / "csv" / "all.csv", root / "csv" / "images", samples)
    texts = {
        "voc": "format: voc\ntrain: all\ntest: all\n" + classes,
        "coco": "format: coco\ntrain: {images: images, annotations: all.json}\n"
        "test: {images: images, annotations: all.json}\n" + classes,
        "yolo": f"path: .\ntrain: images/all\nval: images/all\nnames: [{', '.join(CLASSES)}]\n",
        "labelme": "format: labelme\ntrain: {folder: all}\ntest: {folder: all}\n" + classes,
        "csv": "format: csv\ntrain: {csv: all.csv, images: images}\ntest: {csv: all.csv, images: images}\n" + classes,
    }
    specs = {}
    for name, text in texts.items():
        specs[name] = root / name / "data.yaml"
        specs[name].write_text(text)
    return specs


@pytest.fixture(scope="module")
def every_format(tmp_path_factory, build):
    return write_every_format(tmp_path_factory.mktemp("round_trip"), build)


def test_every_format_gives_the_same_records(every_format):
    samples = drawn_samples()
    for name, spec_file in every_format.items():
        spec = dataset_spec(str(spec_file))
        (train,) = spec.train()
        assert train.classes[1:] == CLASSES, name
        assert not train.issues, (name, train.issues)
        assert len(train.records) == len(samples), name
        for record, (image, objects) in zip(train.records, samples):
            assert (record.width, record.height) == (image.shape[1], image.shape[0]), (name, record.id)
            expected = np.array([box for _, box in objects], np.float32).reshape(-1, 4)
            # YOLO's numbers are normalised and written with 6 digits: within 0.5 px, the rest exact
            np.testing.assert_allclose(record.boxes, expected, atol=0.5 if name == "yolo" else 0, err_msg=name)
            assert record.labels.tolist() == [CLASSES.index(c) + 1 for c, _ in objects], name
            assert record.boxes.dtype == np.float32 and record.labels.dtype == np.int64


def test_yolo_boxes_come_back_within_a_thousandth_of_a_pixel(every_format):
    (train,) = dataset_spec(str(every_format["yolo"])).train()
    for record, (_, objects) in zip(train.records, drawn_samples()):
        expected = np.array([box for _, box in objects], np.float32).reshape(-1, 4)
        np.testing.assert_allclose(record.boxes, expected, atol=1e-3)


def test_every_format_passes_the_data_check_alike(every_format):
    reports = {}
    for name, spec_file in every_format.items():
        spec = dataset_spec(str(spec_file))
        test = spec.test()
        report = check_records(test.name, test.records, test.issues, progress=False, num_classes=test.num_classes)
        reports[name] = report
        assert not report.issues, (name, report.issues)  # nothing clipped: the far-corner box fits every format
    kept = {name: [r.boxes.shape[0] for r in report.kept] for name, report in reports.items()}
    assert len(set(map(tuple, kept.values()))) == 1, kept
