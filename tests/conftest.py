"""Shared fixtures: small generated datasets, so no test needs a download."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from frcnn.data.datasets.pascal_voc import write_voc_annotation
from frcnn.data.datasets.shapes import ShapesDataset, ensure_generated, render
from frcnn.structures import BoxMode

SMALL_SHAPES = {"trainval": 24, "test": 8}
ROOT = Path(__file__).resolve().parents[1]
CFGS = ROOT / "cfgs"
# --set pairs of a tiny net at 128 px: the trainings of the tests take seconds
SMALL_NET = ["TINY.CHANNELS", "[8,16,16,32]", "TINY.HEAD_DIM", "32", "RPN_CHANNELS", "32"]
SMALL_NET += ["TRAIN.SCALES", "[128]", "TEST.SCALES", "[128]"]
TINY_CLASSES = ("__background__", "a", "b", "c")


@pytest.fixture(scope="module")
def random_tiny_detector():
    """The tests' tiny net at 128 px, randomly initialised, its class scores spread out so that it
    finds some hundreds of boxes of three classes in a large image."""
    import torch

    from frcnn.config import build_config
    from frcnn.data.datasets.factory import dataset_spec
    from frcnn.inference.torch_detector import Detector
    from frcnn.modeling import build_model

    cfg = build_config("tiny", CFGS, dataset_spec("shapes").profile, set_cfgs=[*SMALL_NET, "ANCHOR_SCALES", "[2,4,8]"])
    torch.manual_seed(0)
    model, _ = build_model(cfg, "tiny", len(TINY_CLASSES), use_default_weights=False)
    with torch.no_grad():
        model.roi_heads.predictor.cls_score.weight.normal_(std=4.0)
    return Detector(model.eval(), cfg, TINY_CLASSES, "tiny", None, torch.device("cpu"))


@pytest.fixture(scope="session")
def small_shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shapes dataset of 24 trainval and 8 test images (generated once per test session)."""
    root = tmp_path_factory.mktemp("data") / "shapes"
    ensure_generated(root, SMALL_SHAPES, progress=False)
    return root


@pytest.fixture()
def small_shapes(small_shapes_root: Path) -> tuple[ShapesDataset, ShapesDataset]:
    return ShapesDataset("trainval", small_shapes_root), ShapesDataset("test", small_shapes_root)


# ---- builders of tiny datasets in every supported format -------------------------------------


def shapes_samples(count: int, seed: int = 0) -> list:
    """(RGB image, [(class name, 0-based inclusive box, difficult)]) drawn like the shapes dataset."""
    return [render(np.random.default_rng(seed + i)) for i in range(count)]


def write_image(path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))


def write_coco(
    annotation_file, image_dir, samples, category_ids: dict, first_image_id: int = 100, crowd_every: int = 0
) -> dict:
    """A COCO instances JSON: bbox [x, y, w, h] with w = x2 - x1 + 1; every crowd_every-th object a crowd."""
    images, annotations = [], []
    for i, (image, objects) in enumerate(samples):
        image_id = first_image_id + i
        write_image(image_dir / f"img_{image_id}.jpg", image)
        images.append(
            {"id": image_id, "file_name": f"img_{image_id}.jpg", "width": image.shape[1], "height": image.shape[0]}
        )
        for name, box, _ in objects:
            n = len(annotations) + 1
            x, y, w, h = BoxMode.convert(box, BoxMode.XYXY, BoxMode.XYWH)
            annotations.append(
                {
                    "id": n,
                    "image_id": image_id,
                    "category_id": category_ids[name],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(bool(crowd_every) and n % crowd_every == 0),
                }
            )
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name} for name, cid in category_ids.items()],
    }
    annotation_file.parent.mkdir(parents=True, exist_ok=True)
    annotation_file.write_text(json.dumps(data))
    return data


def write_voc(root, split: str, samples, prefix: str = "") -> list[str]:
    ids = []
    for i, (image, objects) in enumerate(samples):
        image_id = f"{prefix}{split}_{i:03d}"
        write_image(root / "JPEGImages" / f"{image_id}.jpg", image)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        write_voc_annotation(
            root / "Annotations" / f"{image_id}.xml", f"{image_id}.jpg", image.shape[1], image.shape[0], objects
        )
        ids.append(image_id)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return ids


def zero_based_xml(path, width: int, height: int, objects, extra: str = "") -> None:
    """VOC-style XML with 0-based boxes, as ImageNet DET and Visual Genome write them."""
    body = "".join(
        f"<object><name>{name}</name>{extra}<bndbox><xmin>{b[0]:g}</xmin><ymin>{b[1]:g}</ymin><xmax>{b[2]:g}</xmax><ymax>{b[3]:g}</ymax></bndbox></object>"
        for name, b in objects
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><size><width>{width}</width><height>{height}</height></size>{body}</annotation>")


# ---- a VOC folder holding one image of every kind of bad input ----


def bad_xml(objects, size=(80, 60)) -> str:
    body = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    return f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>{body}</annotation>"


def good_image(path: Path, h=60, w=80, channels=3, dtype=np.uint8) -> None:
    rng = np.random.default_rng(len(str(path)))
    top = 65535 if dtype == np.uint16 else 255
    image = rng.integers(0, top, (h, w, channels) if channels > 1 else (h, w), endpoint=True).astype(dtype)
    cv2.imwrite(str(path), image)


def bad_voc(root: Path) -> None:
    """One image of every kind of problem, plus good ones."""
    jpg, ann = root / "JPEGImages", root / "Annotations"
    jpg.mkdir(parents=True)
    ann.mkdir()
    box = [(("circle", [10, 10, 40, 40]))]
    entries = {
        "good": box,
        "good2": [("square", [5, 5, 30, 50])],
        "empty": [],
        "missing": box,
        "zerobytes": box,
        "truncated": box,
        "corrupt": box,
        "notimage": box,
        "tiny": box,
        "gray": box,
        "alpha": box,
        "deep": box,
        "badxml": None,
        "noxml": box,
        "boxes": [
            ("circle", [-5, 10, 30, 70]),
            ("circle", [30, 30, 20, 40]),
            ("square", ["nan", 1, 5, 5]),
            ("square", [1, 1, "inf", 5]),
            ("circle", [100, 100, 120, 120]),
            ("unicorn", [1, 1, 9, 9]),
            ("square", [1, 1, 20, 20]),
        ],
        "../../escape": box,
    }
    for name, objects in entries.items():
        if name == "../../escape":
            continue
        if name != "noxml":
            (ann / f"{name}.xml").write_text(
                "<annotation><object><name>circle" if objects is None else bad_xml(objects)
            )
    for name in ("good", "good2", "empty", "badxml", "noxml", "boxes"):
        good_image(jpg / f"{name}.jpg")
    (jpg / "zerobytes.jpg").write_bytes(b"")
    good_image(jpg / "truncated.jpg", 200, 200)
    data = (jpg / "truncated.jpg").read_bytes()
    (jpg / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (jpg / "corrupt.jpg").write_bytes(
        b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8))
    )
    (jpg / "notimage.jpg").write_text("this is a text file\n")
    good_image(jpg / "tiny.jpg", 3, 4)
    good_image(jpg / "gray.jpg", channels=1)
    good_image(jpg / "alpha.png", channels=4)
    good_image(jpg / "deep.png", dtype=np.uint16)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(entries) + "\n")
    (root / "ImageSets" / "Main" / "none.txt").write_text("\n")


@pytest.fixture(scope="session")
def build():
    """The dataset builders above, for tests: build.write_coco(...), build.write_voc(...), ..."""
    from types import SimpleNamespace

    return SimpleNamespace(
        shapes_samples=shapes_samples,
        write_image=write_image,
        write_coco=write_coco,
        write_voc=write_voc,
        zero_based_xml=zero_based_xml,
        bad_voc=bad_voc,
        good_image=good_image,
    )


# ---- a tiny ONNX detector file (export.py's inputs, outputs and metadata), for the readers ----

TINY_ONNX_METADATA = {
    "classes": ["__background__", "circle", "square"],
    "net": "tiny",
    "dataset": "shapes",
    "config": {"TEST": {"SCALES": [64], "MAX_SIZE": 128}},
}


def tiny_onnx(metadata: dict | str | None = None) -> bytes:
    """The bytes of an .onnx file with export.py's graph signature (image, scale -> boxes, scores,
    labels) whose graph gives one constant detection, and `metadata` (default TINY_ONNX_METADATA)
    as its frcnn metadata (a str is stored as it is)."""
    import json

    from onnx import TensorProto, helper

    outputs = {
        "boxes": np.array([[4.0, 6.0, 20.0, 30.0]], np.float32),
        "scores": np.array([0.9], np.float32),
        "labels": np.array([1], np.int64),
    }
    nodes = [
        helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_value", *_onnx_tensor(v)))
        for name, v in outputs.items()
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, [2]),
        ],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["d", 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["d"]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, ["d"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    meta = TINY_ONNX_METADATA if metadata is None else metadata
    helper.set_model_props(model, {"frcnn": meta if isinstance(meta, str) else json.dumps(meta)})
    return model.SerializeToString()


def _onnx_tensor(value: np.ndarray) -> tuple:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(value.dtype), value.shape, value.flatten().tolist()
