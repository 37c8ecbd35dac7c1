"""Each dataset format loads images, boxes (pixel-exact after its convention), classes and flags."""

import numpy as np
import pytest

from frcnn.data.datasets.coco import COCOFormatDataset
from frcnn.data.datasets.custom import DatasetFileError
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.datasets.imagenet import ImageNetDET
from frcnn.data.datasets.visual_genome import VisualGenome


def test_coco_sparse_ids_crowd_and_xywh(tmp_path, build):
    samples = [
        (np.zeros((40, 50, 3), np.uint8), [("cat", [10, 20, 39, 29], False), ("dog", [0, 0, 49, 39], False)]),
        (np.zeros((30, 30, 3), np.uint8), [("dog", [5, 5, 9, 9], False)]),
    ]
    data = build.write_coco(tmp_path / "ann.json", tmp_path / "img", samples, {"dog": 18, "cat": 3}, crowd_every=3)
    ds = COCOFormatDataset("t", tmp_path / "ann.json", tmp_path / "img")
    assert ds.classes == ("__background__", "cat", "dog")  # in category-id order: 3, 18
    assert ds.category_ids == [3, 18]
    a, b = ds.records
    assert (a.id, a.width, a.height, a.path) == (100, 50, 40, str(tmp_path / "img" / "img_100.jpg"))
    assert data["annotations"][0]["bbox"] == [10, 20, 30, 10]
    assert a.boxes.tolist() == [[10, 20, 39, 29], [0, 0, 49, 39]]  # [x, y, w, h] -> inclusive corners
    assert a.labels.tolist() == [1, 2]
    assert b.crowd.tolist() == [True]  # the third annotation is a crowd region
    assert not a.crowd.any()


def test_coco_explicit_classes_select_and_order(tmp_path, build):
    samples = [(np.zeros((20, 20, 3), np.uint8), [("cat", [1, 1, 5, 5], False), ("dog", [2, 2, 8, 8], False)])]
    build.write_coco(tmp_path / "ann.json", tmp_path / "img", samples, {"dog": 18, "cat": 3})
    ds = COCOFormatDataset("t", tmp_path / "ann.json", tmp_path / "img", classes=["dog"])
    assert ds.category_ids == [18] and ds.records[0].labels.tolist() == [1]
    with pytest.raises(ValueError, match="not categories"):
        _ = COCOFormatDataset("t", tmp_path / "ann.json", tmp_path / "img", classes=["horse"]).category_ids


def test_imagenet_det_wnids_and_zero_based_boxes(tmp_path, build):
    root = tmp_path / "imagenet"
    (root / "devkit" / "data").mkdir(parents=True)
    (root / "devkit" / "data" / "map_det.txt").write_text(
        "n02672831 1 accordion\nn02691156 2 airplane\nn02219486 3 ant\n"
    )
    sets = root / "ImageSets" / "DET"
    sets.mkdir(parents=True)
    (sets / "train_1.txt").write_text("n02672831/a 1\nn02672831/b -1\n")
    (sets / "train_3.txt").write_text("n02219486/c 1\nn02672831/a 1\n")
    (sets / "val.txt").write_text("ILSVRC2012_val_00000001 1\n")
    build.zero_based_xml(
        root / "Annotations" / "DET" / "val" / "ILSVRC2012_val_00000001.xml",
        50,
        40,
        [("n02691156", [0, 0, 10, 20]), ("N02219486", [5.5, 6, 49, 39]), ("n99999999", [1, 1, 2, 2])],
    )
    for image_id in ("n02672831/a", "n02219486/c"):
        build.zero_based_xml(
            root / "Annotations" / "DET" / "train" / f"{image_id}.xml", 30, 30, [(image_id.split("/")[0], [1, 2, 3, 4])]
        )
    val = ImageNetDET("val", root)
    assert val.classes[1:] == ("n02672831", "n02691156", "n02219486")
    assert val.class_names["n02219486"] == "ant"
    (record,) = val.records
    assert record.boxes.tolist() == [[0, 0, 10, 20], [5.5, 6, 49, 39]]  # 0-based: no shift
    assert record.labels.tolist() == [2, 3] and record.path.endswith("Data/DET/val/ILSVRC2012_val_00000001.JPEG")
    train = ImageNetDET("train", root)
    assert [r.id for r in train.records] == ["n02219486/c", "n02672831/a"]  # positives of every list, once


def test_visual_genome_synonyms_and_version(tmp_path, build):
    genome = tmp_path / "genome"
    (genome / "1600-400-20").mkdir(parents=True)
    (genome / "1600-400-20" / "objects_vocab.txt").write_text("man,men,guy\ntree\nshirt\n")
    (genome / "train.txt").write_text("VG_100K/1.jpg xml/1.xml\nVG_100K/2.jpg xml/2.xml\nVG_100K_2/3.jpg xml/3.xml\n")
    build.zero_based_xml(
        genome / "xml" / "1.xml",
        100,
        80,
        [("Men", [0, 0, 10, 10]), ("guy", [5, 5, 20, 20]), ("tree", [1, 2, 3, 4]), ("sky", [0, 0, 99, 79])],
    )
    build.zero_based_xml(genome / "xml" / "2.xml", 100, 80, [("sky", [0, 0, 99, 79])])  # nothing of the vocabulary
    build.zero_based_xml(genome / "xml" / "3.xml", 60, 40, [("shirt", [0, 0, 59, 39])])
    ds = VisualGenome("train", "1600-400-20", tmp_path)
    assert ds.classes[1:] == ("man", "tree", "shirt")
    first, third = ds.records  # image 2 has no object of the vocabulary
    assert first.labels.tolist() == [1, 1, 2]  # men and guy are man
    assert first.boxes.tolist() == [[0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4]]
    assert third.path == str(tmp_path / "vg" / "VG_100K_2" / "3.jpg")
    with pytest.raises(FileNotFoundError, match="150-50-50"):
        VisualGenome("train", "150-50-50", tmp_path)


def test_dataset_yaml_coco(tmp_path, build):
    samples = build.shapes_samples(3)
    names = sorted({name for _, objects in samples for name, _, _ in objects})
    ids = {name: 10 + 7 * i for i, name in enumerate(names)}
    build.write_coco(
        tmp_path / "data" / "annotations" / "train.json", tmp_path / "data" / "images" / "train", samples[:2], ids
    )
    build.write_coco(
        tmp_path / "data" / "annotations" / "val.json",
        tmp_path / "data" / "images" / "val",
        samples[2:],
        ids,
        first_image_id=500,
    )
    spec_file = tmp_path / "mine.yaml"
    spec_file.write_text(
        "format: coco\nroot: data\n"
        "train: {images: images/train, annotations: annotations/train.json}\n"
        "test: {images: images/val, annotations: annotations/val.json}\n"
        "config: {ANCHOR_SCALES: [2, 4, 8]}\n"
    )
    spec = dataset_spec(str(spec_file))
    (train,), test = spec.train(), spec.test()
    assert train.classes[1:] == tuple(names) and test.classes == train.classes
    assert test.metric == "coco" and spec.profile == {"ANCHOR_SCALES": [2, 4, 8], "TILES": {"SIZE": "auto"}}
    assert [r.id for r in test.records] == [500]
    assert test.records[0].boxes.tolist() == [box for _, box, _ in samples[2][1]]


def test_dataset_yaml_voc_reads_classes_from_data(tmp_path, build):
    samples = build.shapes_samples(4, seed=10)
    build.write_voc(tmp_path, "trainval", samples[:3])
    build.write_voc(tmp_path, "test", samples[3:])
    (tmp_path / "voc.yml").write_text("format: voc\ntrain: trainval\ntest: test\n")
    spec = dataset_spec(str(tmp_path / "voc.yml"))
    (train,) = spec.train()
    seen = sorted({name for _, objects in samples[:3] for name, _, _ in objects})
    assert train.classes[1:] == tuple(seen)
    test = spec.test()
    assert test.metric == "voc" and test.classes == train.classes
    record = train.records[0]
    assert record.boxes.tolist() == [box for _, box, _ in samples[0][1]]
    assert record.difficult.tolist() == [d for _, _, d in samples[0][1]]


def test_voc_class_discovery_reads_no_annotation_outside_the_root(tmp_path, build):
    """A split that lists ../../secret: the image was skipped, but class discovery (no classes:
    in the YAML) read <root>/Annotations/../../secret.xml, outside the root, for its names."""
    root = tmp_path / "data"
    ids = build.write_voc(root, "trainval", build.shapes_samples(2, seed=4))
    build.zero_based_xml(tmp_path / "secret.xml", 80, 60, [("password", [1, 1, 9, 9])])
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join([*ids, "../../secret"]) + "\n")
    (root / "voc.yml").write_text("format: voc\ntrain: trainval\ntest: trainval\n")
    (train,) = dataset_spec(str(root / "voc.yml")).train()
    assert "password" not in train.classes and len(train.classes) > 1
    assert [r.id for r in train.records] == ids
    assert [i.kind for i in train.issues] == ["path leaves the dataset root"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("format: voc\ntrain: ../../../../etc/x\ntest: b\n", "leaves the dataset root"),
        ("format: voc\ntrain: a\ntest: b\nclasses: [cat, dog, cat]\n", r"classes lists \['cat'\] more than once"),
        ("format: voc\nroot: [1]\ntrain: a\ntest: b\n", "root should be a path or name"),
        ("format: tfrecord\ntrain: a\ntest: b\n", "format must be coco or voc"),
        ("format: voc\ntrain: a\n", "missing 'test'"),
        (
            "format: coco\ntrain: {images: ../../etc, annotations: a.json}\ntest: {images: x, annotations: y.json}\n",
            "leaves the dataset root",
        ),
        ("- just\n- a list\n", "expected a mapping"),
        ("format: voc\ntrain: a\ntest: b\nclasses: cat\n", "classes must be a list"),
    ],
)
def test_bad_dataset_yaml_is_a_clear_error(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    spec = None
    with pytest.raises(DatasetFileError, match=message):
        spec = dataset_spec(str(tmp_path / "bad.yaml"))
        spec.train()
