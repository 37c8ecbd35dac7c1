"""Run a trained Faster R-CNN on a folder of images, a camera or a video.

    python demo.py --dataset shapes --net tiny --image_dir images      # writes images/<name>_det.jpg
    python demo.py --dataset shapes --net tiny --webcam 0              # camera 0
    python demo.py --dataset shapes --net tiny --webcam clip.mp4       # a video file

Class names come from the checkpoint. Without a display, camera and video input are written to an
annotated video (--video_out) instead of a window.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from frcnn.cli import (
    add_bool_flag,
    loading_parser,
    loading_settings,
    resolve_checkpoint,
    run_main,
    score_or_auto,
)
from frcnn.inference.demo import run_folder, run_stream
from frcnn.inference.torch_detector import open_detector

log = logging.getLogger("frcnn.demo")
CFGS_DIR = Path(__file__).resolve().parent / "cfgs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = loading_parser(
        "Detect objects in images, a camera or a video", "accepted for compatibility: the demo runs on one device"
    )
    p.add_argument("--image_dir", default="images", help="folder of images (default: images)")
    p.add_argument("--webcam", "--webcam_num", dest="webcam", help="camera number or video file (-1: the images)")
    p.add_argument("--video_out", default=None, help="annotated video to write for --webcam without a display")
    p.add_argument(
        "--thresh",
        type=score_or_auto,
        default=0.5,
        help="lowest score drawn (default 0.5); auto: each class's, chosen by test_net.py --threshold_rule",
    )
    p.add_argument("--bs", type=int, default=1, help="images per batch (with --tile: tiles per batch)")
    p.add_argument(
        "--tile", type=int, default=None, help="detect whole images in tiles this large (default: the model's; 0: none)"
    )
    p.add_argument("--overlap", type=float, default=None, help="tiles' overlap, a share of --tile (default 0.2)")
    p.add_argument("--max_frames", type=int, default=0, help="stop after this many frames (0: until the stream ends)")
    add_bool_flag(p, "--vis", help="accepted for compatibility: detections are always drawn")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    cfg_files, set_cfgs = loading_settings(args, CFGS_DIR)  # checks --cuda first
    path = resolve_checkpoint(args)
    device = "cuda" if args.cuda else "cpu"
    detector = open_detector(
        path,
        device,
        overrides=set_cfgs,
        cfg_files=cfg_files,
        net=args.net,
        dataset=args.dataset,
        data_dir=args.data_dir,
    )
    log.info("loaded %s (%s, %d classes)", path, detector.net, len(detector.classes) - 1)
    if args.webcam is not None and str(args.webcam) != "-1":  # the original's -1: the image folder
        run_stream(detector, str(args.webcam), args.thresh, args.video_out, args.max_frames)
    else:
        run_folder(detector, Path(args.image_dir), args.thresh, args.bs, args.tile, args.overlap)


if __name__ == "__main__":
    run_main(main)
