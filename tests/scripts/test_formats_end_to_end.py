"""A short training run and an evaluation complete on every dataset format."""

from pathlib import Path

import numpy as np
import pytest
from conftest import CFGS, SMALL_NET

from frcnn.config import build_config
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.datasets.shapes import SHAPES_CLASSES
from frcnn.evaluation.evaluate import evaluate
from frcnn.inference.records import detect_records
from frcnn.inference.torch_detector import load_detector
from frcnn.training.build import TrainOptions, train

SMALL = [*SMALL_NET, "TRAIN.MAX_SIZE", "256", "TEST.MAX_SIZE", "256"]
WNIDS = {name: f"n{1000000 + i:08d}" for i, name in enumerate(SHAPES_CLASSES)}


def make_coco_yaml(root: Path, build, train, test) -> str:
    ids = {name: 3 * i + 2 for i, name in enumerate(SHAPES_CLASSES)}
    build.write_coco(root / "ann" / "train.json", root / "img" / "train", train, ids)
    build.write_coco(root / "ann" / "test.json", root / "img" / "test", test, ids, first_image_id=900)
    (root / "d.yaml").write_text(
        "format: coco\ntrain: {images: img/train, annotations: ann/train.json}\n"
        "test: {images: img/test, annotations: ann/test.json}\n"
        f"classes: {list(SHAPES_CLASSES)}\n"
    )
    return str(root / "d.yaml")


def make_voc_yaml(root: Path, build, train, test) -> str:
    build.write_voc(root / "voc", "trainval", train)
    build.write_voc(root / "voc", "test", test)
    (root / "v.yml").write_text(
        f"format: voc\nroot: voc\ntrain: trainval\ntest: test\nclasses: {list(SHAPES_CLASSES)}\n"
    )
    return str(root / "v.yml")


def make_coco_2017(root: Path, build, train, test) -> str:
    ids = {name: 10 + i for i, name in enumerate(SHAPES_CLASSES)}
    build.write_coco(
        root / "coco" / "annotations" / "instances_train2017.json", root / "coco" / "images" / "train2017", train, ids
    )
    build.write_coco(
        root / "coco" / "annotations" / "instances_val2017.json",
        root / "coco" / "images" / "val2017",
        test,
        ids,
        first_image_id=900,
    )
    return "coco_2017"


def make_imagenet(root: Path, build, train, test) -> str:
    base = root / "imagenet"
    (base / "devkit" / "data").mkdir(parents=True)
    (base / "devkit" / "data" / "map_det.txt").write_text(
        "".join(f"{w} {i + 1} {n}\n" for i, (n, w) in enumerate(WNIDS.items()))
    )
    (base / "ImageSets" / "DET").mkdir(parents=True)
    for split, samples, listing in (("train", train, "train_1.txt"), ("val", test, "val.txt")):
        lines = []
        for i, (image, objects) in enumerate(samples):
            image_id = f"{split}_{i:03d}"
            build.write_image(base / "Data" / "DET" / split / f"{image_id}.JPEG", image)
            build.zero_based_xml(
                base / "Annotations" / "DET" / split / f"{image_id}.xml",
                image.shape[1],
                image.shape[0],
                [(WNIDS[n], b) for n, b, d in objects if not d],
            )
            lines.append(f"{image_id} 1")
        (base / "ImageSets" / "DET" / listing).write_text("\n".join(lines) + "\n")
    return "imagenet"


def make_vg(root: Path, build, train, test) -> str:
    (root / "genome" / "1600-400-20").mkdir(parents=True)
    (root / "genome" / "1600-400-20" / "objects_vocab.txt").write_text("".join(f"{n},{n}s\n" for n in SHAPES_CLASSES))
    for split, samples in (("train", train), ("test", test)):
        lines = []
        for image, objects in samples:
            image_id = f"{len(lines) + (0 if split == 'train' else 500)}"
            build.write_image(root / "vg" / "VG_100K" / f"{image_id}.jpg", image)
            objects = [(f"{n}s" if k % 2 else n.upper(), b) for k, (n, b, d) in enumerate(objects) if not d]
            build.zero_based_xml(root / "genome" / "xml" / f"{image_id}.xml", image.shape[1], image.shape[0], objects)
            lines.append(f"VG_100K/{image_id}.jpg xml/{image_id}.xml")
        (root / "genome" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return "vg"


@pytest.mark.parametrize(
    "make", [make_coco_yaml, make_voc_yaml, make_coco_2017, make_imagenet, make_vg], ids=lambda f: f.__name__[5:]
)
def test_train_then_evaluate(make, tmp_path, build):
    samples = [(im, objs) for im, objs in build.shapes_samples(14, seed=40) if objs]
    train_samples, test_samples = samples[:8], samples[8:11]
    dataset = make(tmp_path, build, train_samples, test_samples)
    cfg = build_config("tiny", CFGS, dataset_spec(dataset, tmp_path).profile, set_cfgs=SMALL)
    opts = TrainOptions(
        dataset=dataset,
        net="tiny",
        batch_size=4,
        epochs=1,
        save_dir=str(tmp_path / "models"),
        data_dir=str(tmp_path),
        lr=0.001,
        optimizer="adam",
    )
    checkpoint = train(opts, cfg)
    assert checkpoint.name == "faster_rcnn_1_1_4.pth"  # 8 images + flips, batch 4
    detector = load_detector(checkpoint)
    test = dataset_spec(dataset, str(tmp_path), detector.cfg.VG_VERSION).test()
    assert detector.classes == test.classes and test.classes[1:] == tuple(
        WNIDS.values() if dataset == "imagenet" else SHAPES_CLASSES
    )
    assert len(test.records) == 3 and sum(len(r.labels) for r in test.records) > 0
    detections = detect_records(detector, test.records, progress=False)
    result = evaluate(test, detections, test.metric)
    assert result.metric == ("coco" if "coco" in make.__name__ else "voc")
    assert 0.0 <= result.mean_ap <= 1.0 and len(result.classes) == 7
    assert all(np.isnan(r.ap) or 0 <= r.ap <= 1 for r in result.classes)
