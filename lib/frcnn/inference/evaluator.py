"""Evaluating on a dataset's test split: a trained detector's detections, or a saved results file,
through the data check and the metric to the report files (what test_net.py runs).

Results go to <output_dir>/<net>/<dataset>/<checkpoint name>/ (detections.json, ap.txt, ap.json,
pr_curves.png, data_check.txt, vis/), or for a results file to
<output_dir>/detections/<dataset>/<folder>_<file name>/. Under torchrun the processes share the
images and rank 0 gathers the detections and evaluates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..data.datasets.base import DetectionDataset, ImageRecord
from ..data.datasets.factory import dataset_spec
from ..data.loader import read_image
from ..data.validate import DataReport, check_dataset
from ..evaluation.detections_io import from_results, load_results, save_results, to_results
from ..evaluation.evaluate import (
    Evaluation,
    category_maps,
    check_metric,
    evaluate,
    labelled_by_category_id,
    relabel_by_category_id,
)
from ..evaluation.html_report import write_html_report
from ..evaluation.report import save_report
from ..evaluation.thresholds import (
    as_config,
    choose_thresholds,
    compare,
    describe_comparison,
    describe_single,
    pooled_best_f1,
)
from ..evaluation.thresholds import table as threshold_table
from ..runs import distributed
from ..runs.checkpoint import load_checkpoint, save_checkpoint
from ..utils.vis import draw_detections
from .records import detect_sharded
from .torch_detector import Detector, open_detector

log = logging.getLogger("frcnn.test")


@dataclass
class EvalOptions:
    """test_net.py's flags (see its --help)."""

    dataset: str | None = None  # None: the one the checkpoint was trained on
    data_dir: str = "data"
    output_dir: str = "output"
    metric: str | None = None
    strict: bool = False
    batch_size: int = 1
    num_workers: int = 0
    vis: bool = False
    cuda: bool = False
    net: str | None = None
    cfg_files: list[str] = field(default_factory=list)  # applied to the checkpoint's config, then set_cfgs
    set_cfgs: list[str] = field(default_factory=list)
    tile: int | None = None  # tiles of this size (slicing.py); None: the model's own (TILES), 0: none
    overlap: float | None = None
    threshold_rule: str | None = None  # choose per-class thresholds first (evaluation/thresholds.py)
    tta: str | None = None  # test-time augmentation (tta.py): flip, scales=..., flip,scales=...
    iou: float = 0.5  # the VOC metrics' least IoU of a true positive


def evaluate_checkpoint(path: Path, opts: EvalOptions) -> Evaluation | None:
    """Detect on the test split with the checkpoint's model, save the detections and evaluate them
    (rank 0; the other processes return None)."""
    world = distributed.init(opts.cuda)
    device = f"cuda:{world.local_rank}" if opts.cuda else "cpu"
    detector = open_detector(
        path,
        device,
        overrides=opts.set_cfgs,
        cfg_files=opts.cfg_files,
        net=opts.net,
        dataset=opts.dataset,
        data_dir=opts.data_dir,
    )
    name = opts.dataset or detector.dataset
    if name is None:
        raise ValueError(f"{path} does not say which dataset it was trained on; name it with --dataset")
    dataset = dataset_spec(name, opts.data_dir, detector.cfg.VG_VERSION).test()
    check_metric(opts.metric or dataset.metric, opts.iou)  # before the detection, not after it
    by_category_id = labelled_by_category_id(detector.classes, dataset)
    if detector.classes != dataset.classes and not by_category_id:
        raise ValueError(class_mismatch(path, detector.classes[1:], dataset.name, dataset.classes[1:]))
    out_dir = Path(opts.output_dir) / detector.net / Path(name).stem / path.stem
    val_single = None  # one threshold for every class, chosen beside the per-class ones
    if opts.threshold_rule:
        if by_category_id:
            raise ValueError(
                "--threshold_rule: this model's classes are category ids of other data; fine-tune it first"
            )
        val_single = choose_class_thresholds(detector, path, name, opts, world, out_dir)
    report = _check(dataset, opts, out_dir, world.is_main)
    processes = f", {world.world_size} processes" if world.distributed else ""
    log.info("evaluating %s on %s (%d images%s)", path, dataset.name, len(report.kept), processes)
    detections = detect_sharded(
        detector, report.kept, world, opts.batch_size, opts.num_workers, opts.tile, opts.overlap, opts.tta
    )
    distributed.shutdown()
    if detections is None:  # not rank 0: rank 0 evaluates
        return None
    if by_category_id:
        detections = relabel_by_category_id(detections, dataset)
    category_of, _ = category_maps(dataset)
    save_results(out_dir / "detections.json", to_results(report.kept, detections, category_of))
    if opts.vis:
        save_visualisations(out_dir / "vis", report.kept, dataset.classes, detections)
    thresholds = [] if by_category_id else detector.cfg.TEST.CLASS_THRESHOLDS  # one per dataset class
    return _evaluate_and_report(dataset, detections, report, opts, out_dir, thresholds, val_single)


def choose_class_thresholds(
    detector: Detector, path: Path, name: str, opts: EvalOptions, world: distributed.World, out_dir: Path
) -> float:
    """--threshold_rule: score thresholds per class chosen on the dataset's val split (its test
    split when it has none, which flatters the test figures: said in the log), written into the
    checkpoint file's config and the detector's; their table logged and saved as thresholds.txt,
    with the settings the detections were made with (--tta, --tile): scores differ without them.
    Returns the one threshold for every class of the best F1 on the same images, to compare with."""
    if world.distributed or path.suffix == ".onnx":
        raise ValueError("--threshold_rule runs in one process on a .pth checkpoint (export it afterwards)")
    state = load_checkpoint(path)
    if "config" not in state:
        raise ValueError(f"--threshold_rule: {path} is not this project's checkpoint; fine-tune or convert it first")
    dataset, is_val = evaluation_split(name, opts.data_dir, detector.cfg.VG_VERSION)
    if not is_val:
        log.warning("--threshold_rule: %s has no val: split; the thresholds are chosen on the test split", name)
    report = _check(dataset, opts, out_dir / "thresholds", world.is_main)
    detections = detect_sharded(
        detector, report.kept, world, opts.batch_size, opts.num_workers, opts.tile, opts.overlap, opts.tta
    )
    results = evaluate(dataset, detections, "voc", report.kept, opts.iou).classes
    chosen = choose_thresholds(results, dataset.classes[1:], opts.threshold_rule)
    detector.cfg.TEST.CLASS_THRESHOLDS = state["config"]["TEST"]["CLASS_THRESHOLDS"] = as_config(chosen)
    save_checkpoint(path, {k: v for k, v in state.items() if k != "format_version"})
    made = "".join(
        f", {flag} {value}" for flag, value in (("--tta", opts.tta), ("--tile", opts.tile)) if value is not None
    )
    lines = threshold_table(chosen, f"rule {opts.threshold_rule}, on {len(report.kept)} images of {dataset.name}{made}")
    single = pooled_best_f1(results)
    lines.append(describe_single(results, [t.threshold for t in chosen], single))
    for line in lines:
        log.info("%s", line)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "thresholds.txt").write_text("\n".join(lines) + "\n")
    log.info("per-class thresholds written into %s (TEST.CLASS_THRESHOLDS; threshold='auto' uses them)", path)
    return single


def evaluate_results_file(results_file: Path, opts: EvalOptions, vg_version: str) -> Evaluation:
    """Evaluate a saved COCO results JSON (test_net.py --detections) on the test split."""
    dataset = dataset_spec(opts.dataset, opts.data_dir, vg_version).test()
    results = results_file.resolve()  # test_net.py names its files detections.json: keep the folder
    out_dir = Path(opts.output_dir) / "detections" / Path(opts.dataset).stem / f"{results.parent.name}_{results.stem}"
    report = _check(dataset, opts, out_dir)
    _, label_of = category_maps(dataset)
    skipped_ids = {r.id for r in dataset.records} - {r.id for r in report.kept}
    detections = from_results(load_results(results_file), report.kept, label_of, skipped_ids, results_file)
    log.info("evaluating %s on %s (%d images)", results_file, dataset.name, len(report.kept))
    return _evaluate_and_report(dataset, detections, report, opts, out_dir)


def evaluation_split(dataset: str, data_dir: str | Path, vg_version: str) -> tuple[DetectionDataset, bool]:
    """The split to evaluate on during training: the dataset's val split when it names one
    (True), else its test split (False)."""
    spec = dataset_spec(dataset, data_dir, vg_version)
    if spec.val is not None:
        return spec.val(), True
    return spec.test(), False


def evaluate_detector(
    detector: Detector,
    dataset: DetectionDataset,
    records: Sequence[ImageRecord],
    world: distributed.World,
    batch_size: int = 1,
) -> Evaluation | None:
    """The dataset's own metric of `detector` on `records` (those of `dataset` that passed the data
    check), detected across the processes; rank 0 gets the Evaluation, the others None."""
    detections = detect_sharded(detector, records, world, batch_size)
    if detections is None:
        return None
    return evaluate(dataset, detections, dataset.metric, records)


def _check(dataset: DetectionDataset, opts: EvalOptions, out_dir: Path, main: bool = True) -> DataReport:
    records, issues = dataset.records, dataset.issues
    details = out_dir / "data_check.txt"
    return check_dataset(dataset.name, records, issues, dataset.num_classes, opts.data_dir, details, opts.strict, main)


def _evaluate_and_report(
    dataset: DetectionDataset,
    detections: list,
    report: DataReport,
    opts: EvalOptions,
    out_dir: Path,
    class_thresholds: Sequence[float] = (),
    val_single: float | None = None,
) -> Evaluation:
    evaluation = evaluate(dataset, detections, opts.metric or dataset.metric, report.kept, opts.iou)
    if report.skipped:
        log.info(
            "%d of %d test images skipped by the data check (their objects are not counted): see %s",
            len(report.skipped),
            report.total,
            out_dir / "data_check.txt",
        )
    extra = None
    if class_thresholds:  # how the detector's per-class thresholds do on these images
        voc = evaluation if evaluation.metric != "coco" else evaluate(dataset, detections, "voc", report.kept, opts.iou)
        extra = {"class_thresholds": compare(voc.classes, dataset.classes[1:], class_thresholds[1:], val_single)}
        log.info("%s", describe_comparison(extra["class_thresholds"]))
    save_report(out_dir, evaluation, extra)
    write_html_report(
        out_dir / "report.html", evaluation, report.kept, detections, dataset.classes, out_dir / "pr_curves.png"
    )
    metric = evaluation.metric + (f" at IoU {evaluation.iou:g}" if evaluation.metric != "coco" else "")
    log.info("results in %s (metric %s; report.html shows the errors)", out_dir, metric)
    return evaluation


def class_mismatch(checkpoint: Path, trained: Sequence[str], data_name: str, data_classes: Sequence[str]) -> str:
    """The error for a checkpoint evaluated on data with other classes, with the fix when only the order differs."""

    def show(names: Sequence[str]) -> str:
        return f"{list(names[:8])}{'...' if len(names) > 8 else ''}"

    message = (
        f"{checkpoint} was trained on {len(trained)} classes {show(trained)} "
        f"but {data_name} has {len(data_classes)}: {show(data_classes)}"
    )
    if sorted(trained) == sorted(data_classes):
        fix = f"list them in the dataset YAML as classes: [{', '.join(trained)}]"
        return f"{message}; the same classes in another order: {fix}"
    return f"{message}; evaluate it on the data it was trained for"


def save_visualisations(
    folder: Path, records: Sequence[ImageRecord], classes: Sequence[str], detections: Sequence[dict[str, np.ndarray]]
) -> None:
    """Each test image with its detections scoring 0.5 or more drawn, as <id>_det.jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    for record, det in zip(records, detections):
        image = read_image(record.path)
        drawn, _ = draw_detections(image, det["boxes"], det["scores"], det["labels"], classes, thresh=0.5)
        cv2.imwrite(str(folder / f"{Path(str(record.id)).name}_det.jpg"), drawn[:, :, ::-1])
