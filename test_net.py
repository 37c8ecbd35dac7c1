"""Evaluate a trained Faster R-CNN: python test_net.py --dataset shapes --net tiny

Prints `AP for <class> = 0.XXXX` per class and, last, `Mean AP = 0.XXXX` (VOC metrics: mean AP at
IoU 0.5; coco: AP at IoU .50:.95). Detections (COCO results JSON), the AP table (text, JSON) and
precision/recall curves go to <output_dir>/<net>/<dataset>/<checkpoint name>/.
With --detections FILE, a saved results file is evaluated instead of running a model.
Started by torchrun (e.g. torchrun --nproc_per_node 4 test_net.py ...), the processes share the
images and rank 0 gathers the detections and evaluates.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2

from frcnn.cli import add_bool_flag, add_checkpoint_flags, add_model_flags, build_config, resolve_checkpoint, run_main
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.loader import read_image
from frcnn.data.validate import DataReport, check_records
from frcnn.engine import distributed
from frcnn.engine.inference import detect_records, load_detector
from frcnn.evaluation.detections_io import from_results, load_results, save_results, to_results
from frcnn.evaluation.evaluate import METRICS, category_maps, evaluate
from frcnn.evaluation.report import report_lines, save_report
from frcnn.utils.vis import draw_detections

log = logging.getLogger("frcnn.test")
CFGS_DIR = Path(__file__).resolve().parent / "cfgs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate a Faster R-CNN network")
    add_model_flags(p, loading=True)
    add_checkpoint_flags(p)
    add_bool_flag(p, "--vis", help="also save the test images with their detections drawn")
    p.add_argument(
        "--metric",
        choices=METRICS,
        default=None,
        help="default: voc07 for VOC 2007, coco for COCO-format data, voc otherwise",
    )
    p.add_argument("--detections", default=None, help="evaluate this COCO results JSON instead of running a model")
    p.add_argument("--output_dir", default="output", help="where results go (default: output)")
    p.add_argument("--bs", type=int, default=1, help="images per inference batch")
    p.add_argument("--nw", type=int, default=0, help="data loading worker processes")
    add_bool_flag(p, "--strict", help="stop on any unusable test image or annotation instead of skipping it")
    add_bool_flag(
        p,
        "--mGPUs",
        help="accepted for compatibility; to evaluate on several processes, start test_net.py with torchrun",
    )
    return p.parse_args(argv)


def class_mismatch(checkpoint: Path, trained: list[str], data_name: str, data_classes: list[str]) -> str:
    """The error for a checkpoint evaluated on data with other classes, with the fix when only the order differs."""
    show = lambda names: f"{list(names[:8])}{'...' if len(names) > 8 else ''}"  # noqa: E731
    message = (
        f"{checkpoint} was trained on {len(trained)} classes {show(trained)} but {data_name} has "
        f"{len(data_classes)}: {show(data_classes)}"
    )
    if sorted(trained) == sorted(data_classes):
        return f"{message}; the same classes in another order: list them in the dataset YAML as classes: [{', '.join(trained)}]"
    return f"{message}; evaluate it on the data it was trained for"


def main() -> None:
    args = parse_args()
    if args.detections:
        cfg = build_config(
            args.dataset, args.net or "tiny", CFGS_DIR, args.cfg_file, args.set_cfgs, args.ls, args.cag, args.data_dir
        )
        dataset = dataset_spec(args.dataset, args.data_dir, cfg.VG_VERSION).test()
        results = Path(args.detections).resolve()  # test_net.py names its files detections.json: keep the folder
        out_dir = (
            Path(args.output_dir) / "detections" / Path(args.dataset).stem / f"{results.parent.name}_{results.stem}"
        )
        report = check_test_data(dataset, args, out_dir)
        _, label_of = category_maps(dataset)
        skipped_ids = {r.id for r in dataset.records} - {r.id for r in report.kept}
        detections = from_results(load_results(Path(args.detections)), report.kept, label_of, skipped_ids)
        log.info("evaluating %s on %s (%d images)", args.detections, dataset.name, len(report.kept))
    else:
        world = distributed.init(args.cuda)
        path = resolve_checkpoint(args)
        detector = load_detector(
            path, f"cuda:{world.local_rank}" if args.cuda else "cpu", args.set_cfgs, args.cfg_file, args.net
        )
        dataset = dataset_spec(args.dataset, args.data_dir, detector.cfg.VG_VERSION).test()
        if detector.classes != dataset.classes:
            raise ValueError(class_mismatch(path, detector.classes[1:], dataset.name, dataset.classes[1:]))
        out_dir = Path(args.output_dir) / detector.net / Path(args.dataset).stem / path.stem
        report = check_test_data(dataset, args, out_dir, world.is_main)
        log.info(
            "evaluating %s on %s (%d images%s)",
            path,
            dataset.name,
            len(report.kept),
            f", {world.world_size} processes" if world.distributed else "",
        )
        detections = detect_sharded(detector, report.kept, world, args.bs, args.nw)
        distributed.shutdown()
        if detections is None:  # not rank 0: rank 0 evaluates
            return
        category_of, _ = category_maps(dataset)
        save_results(out_dir / "detections.json", to_results(report.kept, detections, category_of))
        if args.vis:
            save_visualisations(out_dir / "vis", report.kept, dataset.classes, detections)
    evaluation = evaluate(dataset, detections, args.metric or dataset.metric, report.kept)
    if report.skipped:
        log.info(
            "%d of %d test images skipped by the data check (their objects are not counted): see %s",
            len(report.skipped),
            report.total,
            out_dir / "data_check.txt",
        )
    save_report(out_dir, evaluation)
    log.info("results in %s (metric %s)", out_dir, evaluation.metric)
    print("\n".join(report_lines(evaluation)))


def detect_sharded(detector, records, world: distributed.World, batch_size: int, num_workers: int) -> list | None:
    """Each process detects its share of the images (every world_size-th); rank 0 gets them all,
    in record order, and the others None."""
    mine = list(range(world.rank, len(records), world.world_size))
    found = detect_records(detector, [records[i] for i in mine], batch_size, num_workers, progress=world.is_main)
    gathered = distributed.gather_to_main(list(zip(mine, found)))
    return None if gathered is None else [det for _, det in sorted(gathered, key=lambda pair: pair[0])]


def check_test_data(dataset, args: argparse.Namespace, out_dir: Path, main: bool = True) -> DataReport:
    """The data check of the test split (data/validate.py), its details written beside the results."""
    report = check_records(
        dataset.name,
        dataset.records,
        dataset.issues,
        args.strict,
        Path(args.data_dir) / "cache" / "image_check.json",
        main,
        dataset.num_classes,
    )
    log.info("%s", report.summary())
    if report.issues and main:
        report.write(out_dir / "data_check.txt")
    return report


def save_visualisations(folder: Path, records, classes, detections) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for record, det in zip(records, detections):
        drawn, _ = draw_detections(
            read_image(record.path), det["boxes"], det["scores"], det["labels"], classes, thresh=0.5
        )
        cv2.imwrite(str(folder / f"{Path(str(record.id)).name}_det.jpg"), drawn[:, :, ::-1])


if __name__ == "__main__":
    run_main(main)
