"""How far one graph's detections are from another's on the same images, in the boxes and scores
themselves rather than through the AP: a finer ruler for int8 against fp32, or for an imperceptible
change of the inputs (noise, a JPEG re-save) as the yardstick of what the test set can tell apart.

    python -m tools.detection_agreement eval_fp32/.../detections.json eval_int8/.../detections.json

Each detection of the first file scoring at least --min_score is matched to the second file's
detection of the same image and class that overlaps it most. Printed: how many were matched, the
mean score difference (a match under --iou counts as its whole score: the detection is lost), the
median of the best IoUs, and the share of them above 0.9. Both files are test_net.py's results
lists ({image_id, category_id, bbox [x, y, w, h], score}; lib/frcnn/evaluation/detections_io.py).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from frcnn.evaluation.detections_io import load_results
from frcnn.evaluation.voc_eval import iou_one_to_many
from frcnn.structures import BoxMode


def by_image_and_class(results: list[dict]) -> dict[tuple, np.ndarray]:
    """(image_id, category_id) -> (D, 5) float64 rows of XYXY box and score."""
    groups: dict[tuple, list] = defaultdict(list)
    for r in results:
        box = BoxMode.convert([float(v) for v in r["bbox"]], BoxMode.XYWH, BoxMode.XYXY)
        groups[(r["image_id"], r["category_id"])].append([*box, float(r["score"])])
    return {key: np.asarray(rows, np.float64) for key, rows in groups.items()}


def agreement(reference: list[dict], other: list[dict], min_score: float = 0.3, iou: float = 0.5) -> dict:
    """The measures of the module docstring for `other` against `reference`."""
    theirs = by_image_and_class(other)
    best_ious, differences = [], []
    for key, rows in by_image_and_class(reference).items():
        candidates = theirs.get(key, np.zeros((0, 5)))
        for row in rows[rows[:, 4] >= min_score]:
            overlaps = iou_one_to_many(row[:4], candidates[:, :4]) if len(candidates) else np.zeros(1)
            j = int(overlaps.argmax())
            best_ious.append(float(overlaps[j]))
            differences.append(abs(row[4] - candidates[j, 4]) if overlaps[j] >= iou else row[4])
    if not best_ious:
        return {
            "detections": 0,
            "mean_score_difference": float("nan"),
            "median_iou": float("nan"),
            "iou_above_0.9": 0.0,
        }
    return {
        "detections": len(best_ious),
        "mean_score_difference": float(np.mean(differences)),
        "median_iou": float(np.median(best_ious)),
        "iou_above_0.9": float(np.mean(np.asarray(best_ious) > 0.9)),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reference", type=Path, help="detections.json of the reference (e.g. the fp32 graph)")
    p.add_argument("other", type=Path, help="detections.json to compare with it (e.g. the int8 graph)")
    p.add_argument("--min_score", type=float, default=0.3, help="reference detections compared (default 0.3)")
    p.add_argument("--iou", type=float, default=0.5, help="a match under this IoU is a lost detection (0.5)")
    args = p.parse_args(argv)
    a = agreement(load_results(args.reference), load_results(args.other), args.min_score, args.iou)
    print(
        f"{a['detections']} detections: mean score difference {a['mean_score_difference']:.4f}, "
        f"median IoU {a['median_iou']:.3f}, IoU above 0.9 for {a['iou_above_0.9']:.1%}"
    )


if __name__ == "__main__":
    main()
