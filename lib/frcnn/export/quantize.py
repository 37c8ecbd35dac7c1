"""Static int8 quantisation of an exported graph (export.py --quantize int8) with ONNX Runtime's
own tools: QDQ format, weights int8 per output channel, activations uint8 (the U8S8 scheme ONNX
Runtime recommends for x86 CPUs), scales calibrated (min / max) on the user's own images as the
model sees them (resized, and cut into the model's tiles when it was trained on tiles).

What is quantised was chosen by measurement (docs/deploy.md, Int8): the convolutions and fully
connected layers but those making the predictions, each activation (Clip, Relu) right after one,
the adds joining two of them (MobileNetV2's residual connections), so that the feature extractor
runs in int8 from end to end instead of converting back to float around every ReLU6: quantising
the convolutions alone was 1.3-1.5x faster than fp32 on a 2-core CPU, this 1.9-2.0x. MobileNetV3's
hard-swish, x * HardSigmoid(x), and squeeze-excitation, x * HardSigmoid(conv(...)), are products
of a quantised output and a gate: ONNX Runtime has no int8 HardSigmoid, so the gate stays float
and the product is quantised (QLinearMul), where a float Mul on dequantised tensors had cost as
much as a sixth of the int8 graph's time (ORT's profiler, one thread). Squeeze-excitation's
spatial mean exports as ReduceMean, which ONNX Runtime runs only in float; it is rewritten as
GlobalAveragePool, the same mean, which runs in int8 (mobilenet_v3_fpn's int8 graph 7% faster).
Everything else stays float: box decoding, clipping, proposals, NMS and RoI pooling work on
coordinates, where int8 steps of a few pixels would move boxes, and take a tenth of the time.

onnx and onnxruntime are optional dependencies (pip install -e .[onnx]).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from easydict import EasyDict
from PIL import Image, UnidentifiedImageError

from ..data.datasets.factory import dataset_spec
from ..data.datasets.label_files import IMAGE_SUFFIXES
from ..data.loader import read_image
from ..data.tiling import tile_windows
from .onnx import METADATA_KEY, export_onnx, resize_for_model

log = logging.getLogger("frcnn.export")

WEIGHTED = ("Conv", "Gemm")
# The layers that make the predictions, the RPN's objectness and box deltas and the box head's class
# scores and box deltas (found by their weights' names), stay float: their rounding goes straight
# into the scores and boxes, and they are a few small layers (docs/deploy.md, Int8).
PREDICTORS = ("rpn.head.objectness.", "rpn.head.deltas.", "roi_heads.predictor.")
ACTIVATIONS = ("Clip", "Relu", "GlobalAveragePool")  # one input, run in int8 after a chosen node
JOINS = ("Add", "Mul")


def int8_nodes(graph) -> list[str]:
    """Names of the nodes to quantise (module docstring) in an onnx GraphProto, whose nodes are in
    topological order."""
    producer = {output: node.name for node in graph.node for output in node.output}
    chosen: set[str] = set()
    gates: set[str] = set()  # HardSigmoid of a chosen node: float (no int8 kernel), its product int8
    for node in graph.node:
        from_chosen = [producer.get(name) in chosen for name in node.input if name]
        from_either = [producer.get(name) in chosen or producer.get(name) in gates for name in node.input if name]
        if node.op_type in WEIGHTED and not any(name in node.input[1] for name in PREDICTORS):
            chosen.add(node.name)
        elif node.op_type in ACTIVATIONS and from_chosen[:1] == [True]:
            chosen.add(node.name)
        elif node.op_type == "HardSigmoid" and from_chosen[:1] == [True]:
            gates.add(node.name)
        elif node.op_type in JOINS and from_either and all(from_either) and any(from_chosen):
            chosen.add(node.name)
    return sorted(chosen)


def spatial_means_as_pooling(model) -> int:
    """Rewrite, in an onnx ModelProto whose shapes are inferred, each ReduceMean over the last two
    axes of a 4-d tensor, keeping them, as GlobalAveragePool (the same mean: module docstring).
    Returns how many were rewritten."""
    from onnx import numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    constants |= {  # Constant nodes holding a tensor (not value_ints and the like)
        n.output[0]: numpy_helper.to_array(a.t)
        for n in model.graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    }
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in [*model.graph.input, *model.graph.value_info]
        if v.type.tensor_type.HasField("shape")
    }
    rewritten = 0
    for node in model.graph.node:
        if node.op_type != "ReduceMean":
            continue
        attributes = {a.name: a for a in node.attribute}
        if len(node.input) == 2 and node.input[1] in constants:  # opset 18: the axes are an input
            axes = np.atleast_1d(constants[node.input[1]]).tolist()
        elif len(node.input) == 1 and "axes" in attributes:  # opset 17: an attribute
            axes = list(attributes["axes"].ints)
        else:
            continue
        keepdims = attributes["keepdims"].i if "keepdims" in attributes else 1
        if ranks.get(node.input[0]) == 4 and keepdims == 1 and sorted(a % 4 for a in axes) == [2, 3]:
            node.op_type = "GlobalAveragePool"
            del node.input[1:]
            del node.attribute[:]
            rewritten += 1
    return rewritten


def calibration_inputs(
    images: Iterable[np.ndarray], cfg: EasyDict, count: int, per_image: Sequence[int] | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """The graph's inputs for `count` calibration inputs: each RGB image resized as the model
    resizes it, or with tiles (cfg.TILES.SIZE) up to `per_image[i]` of image i's tiles (all by
    default; tile_quotas shares them), spread evenly over it, so that the inputs come from many
    images rather than the first."""
    given = 0
    for index, image in enumerate(images):
        windows = model_windows(image.shape[:2], cfg)
        if per_image is not None and len(windows) > per_image[index]:
            windows = [windows[i] for i in np.linspace(0, len(windows) - 1, per_image[index]).round().astype(int)]
        for x0, y0, x1, y1 in windows:
            if given == count:
                return
            tensor, scale = resize_for_model(np.ascontiguousarray(image[y0:y1, x0:x1]), cfg)
            yield {"image": tensor, "scale": scale}
            given += 1


def model_windows(shape: tuple[int, int], cfg: EasyDict) -> list[tuple[int, int, int, int]]:
    """The windows (x0, y0, x1, y1) the model sees of an image of `shape` (h, w): its tiles, or the
    whole image."""
    h, w = shape
    tile = cfg.TILES.SIZE if isinstance(cfg.TILES.SIZE, int) else 0
    return tile_windows(h, w, tile, cfg.TILES.OVERLAP) if tile else [(0, 0, w, h)]


def tile_quotas(available: Sequence[int], count: int) -> list[int]:
    """`count` calibration inputs shared among images holding `available` windows each, as evenly
    as they allow: an image with fewer windows than its share gives the rest to the others (a
    scene smaller than a tile is one input, and asking for 32 must not give 13)."""
    quotas = [0] * len(available)
    left = count
    open_images = [i for i, n in enumerate(available) if n > 0]
    while left > 0 and open_images:
        share = max(1, left // len(open_images))
        for i in list(open_images):
            take = min(share, available[i] - quotas[i], left)
            quotas[i] += take
            left -= take
            if quotas[i] == available[i]:
                open_images.remove(i)
    return quotas


def quantize_int8(fp32: str | Path, out: str | Path, inputs: Iterable[dict[str, np.ndarray]]) -> dict:
    """Write the int8 graph of the exported file `fp32` to `out`, calibrated on `inputs`; its
    metadata gains {"quantization": ...}. Returns that entry."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibration = list(inputs)
    if not calibration:
        raise ValueError("no calibration images: give --calibration a folder of images or a dataset split")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.inputs, None)

    root = logging.getLogger()  # the tools warn on the root logger to pre-process, which is done here
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        with tempfile.TemporaryDirectory(dir=Path(out).parent) as scratch:
            prepared = Path(scratch) / "prepared.onnx"
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)  # folds and fuses first
            model = onnx.load(str(prepared))
            if spatial_means_as_pooling(model):
                onnx.save(model, str(prepared))
            nodes = int8_nodes(model.graph)
            quantize_static(
                str(prepared),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=nodes,
            )
    finally:
        root.setLevel(level)
    entry = {
        "scheme": "int8 QDQ, weights per channel, uint8 activations",
        "nodes": len(nodes),
        "images": len(calibration),
    }
    _add_metadata(out, entry)
    return entry


def export_int8(
    model, metadata: dict, out: str | Path, opset: int, images: Sequence[np.ndarray] | Iterable[np.ndarray], count: int
) -> dict:
    """export_onnx, then quantize_int8 calibrated on `count` inputs made from `images` (with
    tiles, shared among the images by tile_quotas when `images` has a length); the fp32 graph is
    written beside `out` only for the time of the quantisation. Logs both sizes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        fp32 = export_onnx(model, metadata, Path(scratch) / "fp32.onnx", opset)
        cfg = EasyDict(metadata["config"])
        per_image = None
        if hasattr(images, "__len__"):
            shapes = images.shapes() if isinstance(images, LazyImages) else [image.shape[:2] for image in images]
            per_image = tile_quotas([len(model_windows(shape, cfg)) for shape in shapes], count)
        entry = quantize_int8(fp32, out, calibration_inputs(images, cfg, count, per_image))
        before, after = file_sizes(fp32, out)
    log.info(
        "int8: %d nodes quantised, calibrated on %d inputs; %.1f MB -> %.1f MB",
        entry["nodes"],
        entry["images"],
        before,
        after,
    )
    return entry


def _add_metadata(path: str | Path, entry: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    props = {p.key: p for p in model.metadata_props}
    meta = json.loads(props[METADATA_KEY].value)
    props[METADATA_KEY].value = json.dumps({**meta, "quantization": entry})
    onnx.save(model, str(path))


def file_sizes(*paths: str | Path) -> Sequence[float]:
    """Sizes in MB."""
    return [Path(p).stat().st_size / 1e6 for p in paths]


def calibration_images(source: str, dataset: str | None, data_dir: str | Path, count: int) -> LazyImages:
    """RGB images to calibrate on, read when used: a folder's images, or a split (train, val,
    test) of the dataset, at most `count` of them spread evenly over it."""
    folder = Path(source)
    if folder.is_dir():
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif source in ("train", "val", "test"):
        if dataset is None:
            raise ValueError(f"--calibration {source}: name the dataset with --dataset")
        spec = dataset_spec(dataset, data_dir)
        if source == "val" and spec.val is None:
            raise ValueError(f"--calibration val: {dataset} has no val: split")
        splits = spec.train() if source == "train" else [spec.val() if source == "val" else spec.test()]
        paths = [Path(r.path) for split in splits for r in split.records]
    else:
        raise ValueError(f"--calibration is a folder of images or a split (train, val, test); got {source!r}")
    step = max(1, len(paths) // max(count, 1))
    return LazyImages(paths[::step][:count])


class LazyImages:
    """Images read from their paths one at a time as they are iterated (a list of decoded scenes
    would hold them all); has a length."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (read_image(str(path)) for path in self.paths)

    def shapes(self) -> list[tuple[int, int]]:
        """Each image's (h, w) as stored, from its header: the tiles' shares are known before any
        image is decoded (a 2472 x 2299 PNG takes about 0.2 s)."""
        shapes = []
        for path in self.paths:
            try:
                with Image.open(path) as image:
                    shapes.append((image.height, image.width))
            except (OSError, UnidentifiedImageError):  # what PIL cannot read, OpenCV may (or says why not)
                shapes.append(read_image(str(path)).shape[:2])
        return shapes
