"""Running a detector over a folder of images, a camera or a video, drawing what it finds (demo.py).

For a folder, each image gets `<name>_det.jpg` (detections drawn) and `<name>_det.json` (the same
detections as data) beside it; images that share a name (photo.jpg, photo.png) get their
extension in it, `photo_jpg_det.jpg` and `photo_png_det.jpg`, so that none overwrites another's.

Without a display, camera and video input are written to an annotated video instead of a window.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..data.loader import ImageReadError, read_image
from ..utils.files import atomic_write
from ..utils.vis import draw_detections
from .detections import Detections
from .slicing import own_tiling
from .torch_detector import Detector

log = logging.getLogger("frcnn.demo")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"--image_dir {folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_det"))


def output_stems(files: Sequence[Path]) -> dict[Path, str]:
    """The name each image's outputs take: its stem, or where images share one, stem_extension."""
    count = Counter(p.stem for p in files)
    return {p: p.stem if count[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.')}" for p in files}


def drawn_from(thresh: float | str) -> float:
    """The lowest score drawn once the detector has applied `thresh` (per class for "auto")."""
    return 0.0 if thresh == "auto" else float(thresh)


def run_folder(
    detector: Detector,
    folder: Path,
    thresh: float | str,
    batch_size: int,
    tile: int | None = None,
    overlap: float | None = None,
) -> int:
    """Detect every image of `folder` and save each one drawn (scores >= thresh; "auto": each
    class's threshold, detections.class_thresholds), with its detections in JSON; with
    tiles (`tile`, or with None the model's own), one image at a time in tiles of that size
    (batch_size tiles per pass). Returns the number of detections drawn."""
    tile, overlap = own_tiling(detector, tile, overlap)
    tiling = {"tile": tile, "overlap": overlap, "progress": True} if tile else {}
    per_pass = 1 if tile else batch_size  # images read and detected together
    files = image_files(folder)
    if not files:
        log.info("no images in %s", folder)
        return 0
    stems = output_stems(files)
    total = 0
    for start in range(0, len(files), per_pass):
        chunk, images = [], []
        for path in files[start : start + per_pass]:
            try:
                images.append(read_image(str(path)))
                chunk.append(path)
            except ImageReadError as e:
                log.warning("skipped: %s", e)
        if not images:
            continue
        tic = time.perf_counter()
        outputs = detector(images, threshold=thresh, batch_size=batch_size if tile else len(images), **tiling)
        elapsed = time.perf_counter() - tic
        for path, image, det in zip(chunk, images, outputs):
            out, count = save_detections(path, image, det, detector.classes, drawn_from(thresh), stems[path])
            total += count
            log.info(
                "%s: %d detections drawn (score >= %s), %.3f s -> %s",
                path.name,
                count,
                "each class's threshold" if thresh == "auto" else f"{thresh:.2f}",
                elapsed / len(images),
                out,
            )
    return total


def save_detections(
    path: Path, image: np.ndarray, det: Detections, classes: Sequence[str], thresh: float, stem: str | None = None
) -> tuple[Path, int]:
    """Write `<stem>_det.jpg` (the image with detections scoring >= thresh drawn) and, beside it,
    `<stem>_det.json` listing the same detections, so that programs need not read boxes off a
    picture; stem defaults to the image's. Returns the image's path and the number drawn."""
    drawn, count = draw_detections(image, det.boxes, det.scores, det.labels, classes, thresh)
    stem = stem or path.stem
    out = path.with_name(f"{stem}_det.jpg")
    cv2.imwrite(str(out), drawn[:, :, ::-1])
    with atomic_write(path.with_name(f"{stem}_det.json"), "w") as f:
        json.dump(detections_json(det, classes, thresh), f, indent=1)
    return out, count


def detections_json(det: Detections, classes: Sequence[str], thresh: float) -> list[dict]:
    """The detections scoring >= thresh (those draw_detections draws), best first, as
    {"box": [x1, y1, x2, y2], "score": s, "label": name}: boxes in the image's own pixels
    (BoxMode.XYXY) to 2 decimals, scores to 4."""
    order = np.argsort(-np.asarray(det.scores, dtype=np.float64), kind="stable")
    return [
        {
            "box": [round(float(v), 2) for v in det.boxes[i]],
            "score": round(float(det.scores[i]), 4),
            "label": classes[int(det.labels[i])],
        }
        for i in order
        if det.scores[i] >= thresh
    ]


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_stream(detector: Detector, source: str, thresh: float | str, video_out: str | None, max_frames: int) -> None:
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
            det = detector(np.ascontiguousarray(rgb), threshold=thresh)
            drawn, _ = draw_detections(rgb, det.boxes, det.scores, det.labels, detector.classes, drawn_from(thresh))
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
