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
import os
import time
from pathlib import Path

import cv2

from frcnn.cli import add_checkpoint_flags, add_model_flags, resolve_checkpoint, run_main
from frcnn.data.loader import ImageReadError, read_image
from frcnn.engine.inference import Detector, detect_images, load_detector
from frcnn.utils.vis import draw_detections

log = logging.getLogger("frcnn.demo")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Detect objects in images, a camera or a video")
    add_model_flags(p, loading=True)
    add_checkpoint_flags(p)
    p.add_argument("--image_dir", default="images", help="folder of images (default: images)")
    p.add_argument("--webcam", "--webcam_num", dest="webcam", default=None, help="camera number, or a video file path")
    p.add_argument("--video_out", default=None, help="annotated video to write for --webcam without a display")
    p.add_argument("--thresh", type=float, default=0.5, help="lowest score drawn (default 0.5)")
    p.add_argument("--bs", type=int, default=1, help="images per batch")
    p.add_argument("--max_frames", type=int, default=0, help="stop after this many frames (0: until the stream ends)")
    return p.parse_args(argv)


def image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"--image_dir {folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_det"))


def run_folder(detector: Detector, folder: Path, thresh: float, batch_size: int) -> int:
    files = image_files(folder)
    if not files:
        log.info("no images in %s", folder)
        return 0
    total = 0
    for start in range(0, len(files), batch_size):
        chunk, images = [], []
        for path in files[start : start + batch_size]:
            try:
                images.append(read_image(str(path)))
                chunk.append(path)
            except ImageReadError as e:
                log.warning("skipped: %s", e)
        if not images:
            continue
        tic = time.perf_counter()
        outputs = detect_images(detector, images)
        elapsed = time.perf_counter() - tic
        for path, image, det in zip(chunk, images, outputs):
            drawn, count = draw_detections(image, det["boxes"], det["scores"], det["labels"], detector.classes, thresh)
            out = path.with_name(f"{path.stem}_det.jpg")
            cv2.imwrite(str(out), drawn[:, :, ::-1])
            total += count
            log.info(
                "%s: %d detections drawn (score >= %.2f), %.3f s -> %s",
                path.name,
                count,
                thresh,
                elapsed / len(images),
                out,
            )
    return total


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_stream(detector: Detector, source: str, thresh: float, video_out: str | None, max_frames: int) -> None:
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open camera or video {source!r}")
    show = has_display() and video_out is None
    writer, frames, tic = None, 0, time.perf_counter()
    try:
        while max_frames <= 0 or frames < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            rgb = frame[:, :, ::-1]
            det = detect_images(detector, [rgb])[0]
            drawn, _ = draw_detections(rgb, det["boxes"], det["scores"], det["labels"], detector.classes, thresh)
            bgr = drawn[:, :, ::-1].copy()
            frames += 1
            if show:
                cv2.imshow("detections (q to quit)", bgr)
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
            else:
                if writer is None:
                    path = video_out or (
                        f"{Path(source).stem}_det.mp4" if not source.isdigit() else f"webcam{source}_det.mp4"
                    )
                    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
                    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (bgr.shape[1], bgr.shape[0]))
                    log.info("no display: writing annotated video to %s", path)
                writer.write(bgr)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if show:
            cv2.destroyAllWindows()
    log.info("%d frames, %.1f frames/s", frames, frames / max(time.perf_counter() - tic, 1e-9))


def main() -> None:
    args = parse_args()
    path = resolve_checkpoint(args)
    detector = load_detector(path, "cuda" if args.cuda else "cpu", args.set_cfgs, args.cfg_file, args.net)
    log.info("loaded %s (%s, %d classes)", path, detector.net, len(detector.classes) - 1)
    if args.webcam is not None:
        run_stream(detector, str(args.webcam), args.thresh, args.video_out, args.max_frames)
    else:
        run_folder(detector, Path(args.image_dir), args.thresh, args.bs)


if __name__ == "__main__":
    run_main(main)
