"""Evaluate a trained Faster R-CNN: python test_net.py --dataset shapes --net tiny

Prints `AP for <class> = 0.XXXX` per class and, last, `Mean AP = 0.XXXX` (VOC metrics: mean AP at
IoU 0.5; coco: AP at IoU .50:.95). Detections (COCO results JSON), the AP table (text, JSON) and
precision/recall curves go to <output_dir>/<net>/<dataset>/<checkpoint name>/.
With --detections FILE, a saved results file is evaluated instead of running a model.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2

from frcnn.cli import add_bool_flag, add_checkpoint_flags, add_model_flags, build_config, resolve_checkpoint, run_main
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.loader import read_image
from frcnn.engine.inference import detect_records, load_detector
from frcnn.evaluation.detections_io import from_results, load_results, save_results, to_results
from frcnn.evaluation.evaluate import METRICS, category_maps, evaluate
from frcnn.evaluation.report import report_lines, save_report
from frcnn.utils.vis import draw_detections

log = logging.getLogger("frcnn.test")
CFGS_DIR = Path(__file__).resolve().parent / "cfgs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate a Faster R-CNN network")
    add_model_flags(p)
    add_checkpoint_flags(p)
    add_bool_flag(p, "--vis", help="also save the test images with their detections drawn")
    p.add_argument("--metric", choices=METRICS, default=None, help="default: voc07 for VOC 2007, coco for COCO-format data, voc otherwise")
    p.add_argument("--detections", default=None, help="evaluate this COCO results JSON instead of running a model")
    p.add_argument("--output_dir", default="output", help="where results go (default: output)")
    p.add_argument("--bs", type=int, default=1, help="images per inference batch")
    p.add_argument("--nw", type=int, default=0, help="data loading worker processes")
    add_bool_flag(p, "--mGPUs", help="accepted for compatibility; evaluation uses one device")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.detections:
        cfg = build_config(args.dataset, args.net, CFGS_DIR, args.cfg_file, args.set_cfgs, args.ls, args.cag, args.data_dir)
        dataset = dataset_spec(args.dataset, args.data_dir, cfg.VG_VERSION).test()
        _, label_of = category_maps(dataset)
        detections = from_results(load_results(Path(args.detections)), dataset.records, label_of)
        out_dir = Path(args.output_dir) / "detections" / Path(args.detections).stem
        log.info("evaluating %s on %s (%d images)", args.detections, dataset.name, len(dataset.records))
    else:
        path = resolve_checkpoint(args)
        detector = load_detector(path, "cuda" if args.cuda else "cpu", args.set_cfgs, args.cfg_file)
        dataset = dataset_spec(args.dataset, args.data_dir, detector.cfg.VG_VERSION).test()
        if detector.classes != dataset.classes:
            raise ValueError(
                f"{path} was trained on {len(detector.classes) - 1} classes {list(detector.classes[1:6])}... "
                f"but {dataset.name} has {len(dataset.classes) - 1}: {list(dataset.classes[1:6])}...; "
                "evaluate it on the data it was trained for"
            )
        log.info("evaluating %s on %s (%d images)", path, dataset.name, len(dataset.records))
        detections = detect_records(detector, dataset.records, args.bs, args.nw)
        out_dir = Path(args.output_dir) / detector.net / Path(args.dataset).stem / path.stem
        category_of, _ = category_maps(dataset)
        save_results(out_dir / "detections.json", to_results(dataset.records, detections, category_of))
        if args.vis:
            save_visualisations(out_dir / "vis", dataset, detections)
    evaluation = evaluate(dataset, detections, args.metric or dataset.metric)
    save_report(out_dir, evaluation)
    log.info("results in %s (metric %s)", out_dir, evaluation.metric)
    print("\n".join(report_lines(evaluation)))


def save_visualisations(folder: Path, dataset, detections) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for record, det in zip(dataset.records, detections):
        drawn, _ = draw_detections(read_image(record.path), det["boxes"], det["scores"], det["labels"], dataset.classes, thresh=0.5)
        cv2.imwrite(str(folder / f"{Path(str(record.id)).name}_det.jpg"), drawn[:, :, ::-1])


if __name__ == "__main__":
    run_main(main)
