"""The coco metric equals pycocotools' COCOeval run directly on the same files."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn.data.datasets.coco import COCOFormatDataset
from frcnn.evaluation.detections_io import from_results, to_results
from frcnn.evaluation.evaluate import category_maps, evaluate


def noisy_detections(records, seed=0):
    """Ground truth jittered, some labels swapped, some false positives, random scores."""
    rng = np.random.default_rng(seed)
    out = []
    for r in records:
        boxes = r.boxes + rng.normal(0, 3, r.boxes.shape).astype(np.float32)
        labels = np.where(rng.random(len(r.labels)) < 0.2, 1 + (r.labels % 2), r.labels)
        extra = rng.uniform(0, 40, (2, 2)).astype(np.float32)
        boxes = np.concatenate([boxes, np.concatenate([extra, extra + 15], 1)])
        labels = np.concatenate([labels, [1, 2]])
        out.append(
            {"boxes": boxes, "scores": rng.random(len(labels)).astype(np.float32), "labels": labels.astype(np.int64)}
        )
    return out


def test_coco_metric_equals_cocoeval(tmp_path, build):
    samples = build.shapes_samples(6, seed=3)
    for _, objects in samples:  # two classes with sparse ids
        objects[:] = [(("a" if i % 2 else "b"), box, False) for i, (_, box, _) in enumerate(objects)]
    build.write_coco(tmp_path / "gt.json", tmp_path / "img", samples, {"b": 7, "a": 42}, crowd_every=5)
    ds = COCOFormatDataset("t", tmp_path / "gt.json", tmp_path / "img")
    detections = noisy_detections(ds.records)
    ours = evaluate(ds, detections, "coco")

    category_of, label_of = category_maps(ds)
    results = to_results(ds.records, detections, category_of)
    (tmp_path / "dt.json").write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        direct = COCOeval(gt, gt.loadRes(str(tmp_path / "dt.json")), "bbox")
        direct.evaluate()
        direct.accumulate()
        direct.summarize()
    assert ours.mean_ap == pytest.approx(direct.stats[0], abs=1e-6)
    assert [ours.stats[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")] == pytest.approx(
        list(direct.stats[:6]), abs=1e-6
    )
    for k, cat in enumerate(ds.category_ids):  # per-class AP in label order
        p = direct.eval["precision"][:, :, direct.params.catIds.index(cat), 0, -1]
        assert ours.classes[k].ap == pytest.approx(p[p > -1].mean(), abs=1e-6)
    # the results file reads back to the same detections
    again = from_results(results, ds.records, label_of)
    assert evaluate(ds, again, "coco").mean_ap == pytest.approx(ours.mean_ap, abs=1e-4)


def test_coco_metric_on_voc_format_ignores_difficult(tmp_path, build):
    from frcnn.data.datasets.pascal_voc import VOCFormatDataset

    samples = [(np.zeros((60, 60, 3), np.uint8), [("a", [0, 0, 19, 19], False), ("a", [30, 30, 49, 49], True)])]
    build.write_voc(tmp_path, "test", samples)
    ds = VOCFormatDataset("t", tmp_path, "test", ("a",))
    perfect = [
        {
            "boxes": np.array([[0, 0, 19, 19]], np.float32),
            "scores": np.array([0.9], np.float32),
            "labels": np.array([1]),
        }
    ]
    with_difficult = [
        {
            "boxes": np.array([[0, 0, 19, 19], [30, 30, 49, 49]], np.float32),
            "scores": np.array([0.9, 0.95], np.float32),
            "labels": np.array([1, 1]),
        }
    ]
    assert evaluate(ds, perfect, "coco").mean_ap == pytest.approx(1.0)
    assert evaluate(ds, with_difficult, "coco").mean_ap == pytest.approx(
        1.0
    )  # a detected difficult object costs nothing
    assert evaluate(ds, with_difficult, "voc").mean_ap == pytest.approx(1.0)
    assert evaluate(ds, with_difficult, "voc07").mean_ap == pytest.approx(1.0)


def one_image_coco(tmp_path, annotations, size=(80, 60)):
    """A COCO split of one 80 x 60 image with `annotations` (category 3, "a"), checked as
    test_net.py checks it: the dataset and the records the data check keeps."""
    from conftest import good_image

    from frcnn.data.validate import check_records

    (tmp_path / "img").mkdir(exist_ok=True)
    good_image(tmp_path / "img" / "a.jpg", h=size[1], w=size[0])
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": size[0], "height": size[1]}],
        "annotations": [{"id": n + 1, "image_id": 7, "category_id": 3, **a} for n, a in enumerate(annotations)],
        "categories": [{"id": 3, "name": "a"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(data))  # NaN as JSON's NaN, as tools write it
    ds = COCOFormatDataset("t", tmp_path / "gt.json", tmp_path / "img")
    return ds, check_records(ds.name, ds.records, ds.issues, progress=False).kept


def found(*boxes):
    n = len(boxes)
    return {
        "boxes": np.array(boxes, np.float32).reshape(-1, 4),
        "scores": np.linspace(0.9, 0.5, n).astype(np.float32),
        "labels": np.ones(n, np.int64),
    }


def test_annotations_without_iscrowd_or_area_are_evaluated(tmp_path):
    """Annotation tools leave out iscrowd and area: absent iscrowd is 0, absent area the box's
    w * h (a 10 x 10 box is small); a given area is kept (4000 px: medium, whatever the box)."""
    ds, kept = one_image_coco(tmp_path, [{"bbox": [5, 5, 10, 10]}, {"bbox": [40, 20, 10, 10], "area": 4000}])
    result = evaluate(ds, [found([5, 5, 14, 14], [40, 20, 49, 29])], "coco", kept)
    assert result.mean_ap == pytest.approx(1.0)
    assert result.stats["APs"] == pytest.approx(1.0) and result.stats["APm"] == pytest.approx(1.0)
    assert result.stats["APl"] == -1  # no large object
    assert result.classes[0].num_positives == 2


def test_boxes_the_data_check_drops_are_gone_from_the_coco_metric(tmp_path):
    """One good box, one NaN box and one outside the image: the check drops two, and perfect
    detections of the one left score 1.0 in every metric (the raw file gave 0.3366; 0.5049 with
    the NaN box alone)."""
    boxes = [[5, 5, 20, 20], [float("nan"), 5, 20, 20], [200, 200, 10, 10]]
    ds, kept = one_image_coco(tmp_path, [{"bbox": b, "iscrowd": 0, "area": 400} for b in boxes])
    assert kept[0].boxes.tolist() == [[5, 5, 24, 24]]
    for metric in ("coco", "voc", "voc07"):
        result = evaluate(ds, [found([5, 5, 24, 24])], metric, kept)
        assert result.mean_ap == pytest.approx(1.0), metric
        assert result.classes[0].num_positives == 1, metric
