"""Export a trained detector to ONNX: python export.py --load_name FILE --format onnx --out model.onnx

The graph goes from the resized RGB image (1, 3, H, W) float 0..255, any H and W, and its (x, y)
scale to final detections in original-image pixels; ONNX Runtime runs it with the Python API:
Detector.from_file("model.onnx"), or demo.py --load_name model.onnx. --load_name takes any file
test_net.py takes (this project's, torchvision's, the original's with --net and --dataset); the
checkpoint flags (--net, --dataset, --checkepoch ...) find one as in test_net.py. --set applies to
the exported graph (e.g. --set TEST.SCALES [800] TEST.NMS 0.5).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from frcnn.cli import loading_parser, loading_settings, resolve_checkpoint, run_main
from frcnn.export.onnx import MIN_OPSET, detector_metadata, export_onnx
from frcnn.export.quantize import calibration_images, export_int8
from frcnn.inference.torch_detector import load_detector

log = logging.getLogger("frcnn.export")
CFGS_DIR = Path(__file__).resolve().parent / "cfgs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = loading_parser("Export a trained Faster R-CNN (ONNX)", "accepted for compatibility: export runs on the CPU")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="export format (default: onnx)")
    p.add_argument("--out", default=None, help="file to write (default: the checkpoint's name with .onnx)")
    p.add_argument("--opset", type=int, default=18, help=f"ONNX opset (default 18; at least {MIN_OPSET})")
    p.add_argument("--quantize", choices=("int8",), default=None, help="static int8 quantisation (ONNX Runtime)")
    p.add_argument("--calibration", default="train", help="images to calibrate on: a folder or a split (train)")
    p.add_argument("--calibration_images", type=int, default=32, help="calibration inputs (images or tiles)")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    path = resolve_checkpoint(args)
    cfg_files, set_cfgs = loading_settings(args, CFGS_DIR)
    detector = load_detector(
        path, "cpu", overrides=set_cfgs, cfg_files=cfg_files, net=args.net, dataset=args.dataset, data_dir=args.data_dir
    )
    metadata = detector_metadata(detector)
    out = Path(args.out) if args.out else path.with_suffix(".onnx")
    tic = time.perf_counter()
    if args.quantize:
        images = calibration_images(
            args.calibration, args.dataset or detector.dataset, args.data_dir, args.calibration_images
        )
        export_int8(detector.model, metadata, out, args.opset, images, args.calibration_images)
    else:
        export_onnx(detector.model, metadata, out, args.opset)
    log.info(
        "wrote %s (%s, %d classes) in %.0f s", out, detector.net, len(detector.classes) - 1, time.perf_counter() - tic
    )
    log.info(
        "inputs: image (1, 3, H, W) float32 RGB 0..255 resized to shorter side %d (longer at most %d) and scale (2,),"
        " its x and y factors; outputs: boxes (D, 4) in original-image pixels, scores (D,), labels (D,). "
        "Run it with Detector.from_file or demo.py --load_name %s",
        detector.cfg.TEST.SCALES[0],
        detector.cfg.TEST.MAX_SIZE,
        out,
    )


if __name__ == "__main__":
    run_main(main)
