"""The YOLO peer of the whole-scene benchmark (tools/tree_scenes.py --modes yolo): Ultralytics YOLO
trained from scratch on the same folds, for the same wall time, and scored by this project's
evaluation of the held-out scene.

Ultralytics is AGPL-3.0, so it is never imported here and never a requirement: it runs from its own
virtualenv as separate processes, only when asked. Make that virtualenv once:

    python -m venv /work/yolo-venv
    /work/yolo-venv/bin/pip install torch torchvision ultralytics

A fold, given the fold's dataset YAML (training scenes, held-out scene):
1. every training scene is cut into `tile` px tiles with the sliced runs' overlap (data/tiling.py,
   the same cut and the same rule for boxes at a tile's edge), written as images and YOLO labels
   (`class cx cy w h`, normalised), every tile kept (YOLO's own recipe decides what to do with
   tiles without objects); its data.yaml validates on the training tiles (no held-out pixels);
2. `yolo detect train model=yolov8n.yaml pretrained=False time=<budget in hours>` with YOLO's
   defaults otherwise, downloads switched off (YOLO_OFFLINE=1, amp=False, plots=False, a local
   font in YOLO_CONFIG_DIR), on the CPU;
3. the held-out scene is cut into the same tiles and `yolo predict` (its best.pt, conf 0.001)
   detects each; the boxes go back into the scene and are merged across tiles as this project's
   sliced inference merges its own (inference/slicing.merge_detections, its defaults);
4. the detections are written as a detections file and scored by `test_net.py --detections`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml

from frcnn.config import default_config
from frcnn.data.datasets.base import ImageRecord
from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.tiling import tile_record, tile_windows
from frcnn.evaluation.detections_io import save_results, to_results
from frcnn.inference.slicing import merge_detections
from frcnn.structures import BoxMode

ROOT = Path(__file__).resolve().parents[1]
MODEL = "yolov8n.yaml"  # the nano model's architecture: no weights to download
OVERLAP = default_config().TILES.OVERLAP  # the sliced runs' overlap
PREDICT_CONF = 0.001  # YOLO's own validation threshold: the whole precision-recall curve is scored


def yolo_lines(record: ImageRecord) -> list[str]:
    """A record's boxes as YOLO label lines (class cx cy w h, normalised, class = label - 1); the
    difficult ones (mostly outside the tile) left out, as this project's training leaves them out."""
    kept = ~(record.difficult | record.crowd)
    boxes = np.asarray(record.boxes, np.float64).reshape(-1, 4)[kept]
    exclusive = BoxMode.convert(boxes, BoxMode.XYXY, BoxMode.XYXY_EXCLUSIVE)
    lines = []
    for (x1, y1, x2, y2), label in zip(exclusive, record.labels[kept]):
        cx, cy = (x1 + x2) / 2 / record.width, (y1 + y2) / 2 / record.height
        w, h = (x2 - x1) / record.width, (y2 - y1) / record.height
        lines.append(f"{int(label) - 1} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def write_tiles(
    records: Sequence[ImageRecord], tile: int, overlap: float, images: Path, labels: Path | None
) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Cut each record's image into tiles, written to `images` as PNG (and their label files to
    `labels`, when given); returns (tile file stem, window) in order."""
    images.mkdir(parents=True, exist_ok=True)
    if labels is not None:
        labels.mkdir(parents=True, exist_ok=True)
    written = []
    for record in records:
        image = cv2.imread(record.path)
        if image is None:
            raise FileNotFoundError(f"cannot read {record.path}")
        for window in tile_windows(record.height, record.width, tile, overlap):
            x0, y0, x1, y1 = window
            stem = f"{Path(record.id).stem}_{x0}_{y0}"
            cv2.imwrite(str(images / f"{stem}.png"), image[y0:y1, x0:x1])
            if labels is not None:
                (labels / f"{stem}.txt").write_text(
                    "".join(f"{line}\n" for line in yolo_lines(tile_record(record, window)))
                )
            written.append((stem, window))
    return written


def read_predictions(labels: Path, stem: str, window: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    """One tile's `yolo predict save_txt save_conf` lines (class cx cy w h conf, normalised), as
    boxes (BoxMode.XYXY) in the scene's pixels, scores and labels (class + 1)."""
    x0, y0, x1, y1 = window
    path = labels / f"{stem}.txt"
    rows = np.loadtxt(path, ndmin=2) if path.is_file() and path.stat().st_size else np.zeros((0, 6))
    w, h = x1 - x0, y1 - y0
    cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
    exclusive = np.stack([cx - bw / 2 + x0, cy - bh / 2 + y0, cx + bw / 2 + x0, cy + bh / 2 + y0], axis=1)
    boxes = BoxMode.convert(exclusive, BoxMode.XYXY_EXCLUSIVE, BoxMode.XYXY)
    return {"boxes": boxes, "scores": rows[:, 5].astype(np.float32), "labels": rows[:, 0].astype(np.int64) + 1}


def merged_scene(labels: Path, tiles: Sequence[tuple[str, tuple[int, int, int, int]]]) -> dict[str, np.ndarray]:
    """The scene's detections: every tile's, merged as sliced inference merges them (its defaults)."""
    parts = [read_predictions(labels, stem, window) for stem, window in tiles]
    boxes = np.concatenate([p["boxes"] for p in parts]).reshape(-1, 4)
    scores = np.concatenate([p["scores"] for p in parts])
    labels_ = np.concatenate([p["labels"] for p in parts])
    return merge_detections(boxes, scores, labels_, "greedy_nmm", "ios", 0.5, False)


def write_data_yaml(data: Path, names: list[str]) -> Path:
    """Ultralytics' data.yaml of the tiles under `data`; it validates on the training tiles."""
    spec = {"path": str(data), "train": "images/train", "val": "images/train", "names": names}
    (data / "data.yaml").write_text(yaml.safe_dump(spec))
    return data / "data.yaml"


def yolo_environment(config_dir: Path) -> dict[str, str]:
    """The variables that keep Ultralytics offline: no update checks, no font download (a local
    DejaVu Sans from matplotlib stands in for its Arial)."""
    import matplotlib

    config_dir.mkdir(parents=True, exist_ok=True)
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (config_dir / name).is_file():
            shutil.copy(font, config_dir / name)
    return {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(config_dir), "YOLO_VERBOSE": "True"}


def yolo_command(venv: Path, *arguments: str) -> list[str]:
    return [str(venv / "bin" / "yolo"), *arguments]


def logged(command: list[str], log: Path, **kwargs) -> None:
    with log.open("a") as f:
        subprocess.run(command, check=True, stdout=f, stderr=subprocess.STDOUT, **kwargs)


def train_yolo(
    venv: Path,
    records: list[ImageRecord],
    names: list[str],
    budget_s: float,
    seed: int,
    run_dir: Path,
    env: dict,
    log: Path,
    tile: int,
    batch: int,
) -> Path:
    """YOLO trained from scratch on the records' tiles for budget_s seconds; its best.pt."""
    data = run_dir / "yolo_data"
    write_tiles(records, tile, OVERLAP, data / "images" / "train", data / "labels" / "train")
    train_args = [f"model={MODEL}", f"data={write_data_yaml(data, names)}", f"imgsz={tile}", f"batch={batch}"]
    train_args += [f"time={budget_s / 3600:.4f}", "pretrained=False", "amp=False", "plots=False", "device=cpu"]
    train_args += [f"seed={seed}", f"project={run_dir}", "name=train", "exist_ok=True"]
    logged(yolo_command(venv, "detect", "train", *train_args), log, env=env)
    return run_dir / "train" / "weights" / "best.pt"


def detect_scenes(
    venv: Path, weights: Path, records: list[ImageRecord], run_dir: Path, env: dict, log: Path, tile: int
) -> list[dict[str, np.ndarray]]:
    """Each record's image detected tile by tile by `yolo predict`, the tiles' boxes merged."""
    tiles = [write_tiles([r], tile, OVERLAP, run_dir / "test_tiles", None) for r in records]
    predict_args = [f"model={weights}", f"source={run_dir / 'test_tiles'}", f"imgsz={tile}", f"conf={PREDICT_CONF}"]
    predict_args += ["save=False", "save_txt=True", "save_conf=True", "device=cpu"]
    predict_args += [f"project={run_dir}", "name=predict", "exist_ok=True"]
    logged(yolo_command(venv, "detect", "predict", *predict_args), log, env=env)
    return [merged_scene(run_dir / "predict" / "labels", own) for own in tiles]


def run_fold(
    venv: Path, dataset: Path, budget_s: float, seed: int, run_dir: Path, tile: int, batch: int, log: Path
) -> dict:
    """Train YOLO on the fold's training scenes' tiles, detect the held-out scene tile by tile and
    score it; returns {ap, tile, test_s, iterations (epochs here), detections}."""
    spec = dataset_spec(str(dataset))
    test, env = spec.test(), yolo_environment(run_dir / "yolo_config")
    records = [r for d in spec.train() for r in d.records]
    weights = train_yolo(venv, records, list(test.classes[1:]), budget_s, seed, run_dir, env, log, tile, batch)
    started = time.perf_counter()
    detections = detect_scenes(venv, weights, test.records, run_dir, env, log, tile)
    results = run_dir / "detections.json"
    save_results(results, to_results(test.records, detections, lambda label: test.classes[label]))
    evals = run_dir / "eval"
    command = [sys.executable, str(ROOT / "test_net.py"), "--dataset", str(dataset), "--detections", str(results)]
    logged(command + ["--output_dir", str(evals)], log, cwd=ROOT)
    epochs = run_dir / "train" / "results.csv"  # one line per epoch after its header
    return {
        "ap": json.loads(next(evals.rglob("ap.json")).read_text())["mean_ap"],
        "tile": tile,
        "test_s": round(time.perf_counter() - started, 1),
        "iterations": len(epochs.read_text().splitlines()) - 1 if epochs.is_file() else None,
        "detections": str(results),
    }
