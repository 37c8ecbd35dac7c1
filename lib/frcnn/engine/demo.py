"""Running a detector over a folder of images, a camera or a video, drawing what it finds (demo.py).

Without a display, camera and video input are written to an annotated video instead of a window.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cv2

from ..data.loader import ImageReadError, read_image
from ..utils.vis import draw_detections
from .inference import Detector, detect_images

log = logging.getLogger("frcnn.demo")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


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
