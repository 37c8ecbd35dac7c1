"""Saving evaluation results: the per-class AP table (text and JSON) and precision/recall curves."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from .evaluate import Evaluation
from .voc_eval import ClassResult


def format_ap_lines(class_names: Sequence[str], aps: Sequence[float], mean: float) -> list[str]:
    """`AP for <class> = 0.XXXX` per class, then `Mean AP = 0.XXXX` last."""
    lines = [
        f"AP for {name} = {ap:.4f}" if not math.isnan(ap) else f"AP for {name} = nan (no ground truth)"
        for name, ap in zip(class_names, aps)
    ]
    lines.append(f"Mean AP = {mean:.4f}")
    return lines


def report_lines(evaluation: Evaluation) -> list[str]:
    """What test_net.py prints: COCOeval's summary (coco metric), then the AP lines."""
    lines = evaluation.summary.rstrip().splitlines() if evaluation.summary else []
    return lines + format_ap_lines(evaluation.class_names, [r.ap for r in evaluation.classes], evaluation.mean_ap)


def save_report(out_dir: Path, evaluation: Evaluation, extra: dict | None = None) -> None:
    """Write ap.txt, ap.json and pr_curves.png into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ap.txt").write_text("\n".join(report_lines(evaluation)) + "\n")
    per_class = {
        name: {
            "ap": None if math.isnan(r.ap) else r.ap,
            "num_positives": r.num_positives,
            "num_detections": r.num_detections,
        }
        for name, r in zip(evaluation.class_names, evaluation.classes)
    }
    mean = None if math.isnan(evaluation.mean_ap) else evaluation.mean_ap
    summary = {
        "metric": evaluation.metric,
        "iou": evaluation.iou if evaluation.metric != "coco" else None,
        "mean_ap": mean,
        "stats": evaluation.stats,
        "classes": per_class,
        **(extra or {}),
    }
    (out_dir / "ap.json").write_text(json.dumps(summary, indent=2))
    plot_pr_curves(out_dir / "pr_curves.png", evaluation.class_names, evaluation.classes, evaluation.metric)


def plot_pr_curves(path: Path, class_names: Sequence[str], results: Sequence[ClassResult], metric: str = "voc") -> None:
    """One precision/recall panel per class (for coco: the curve at IoU 0.5, titled with AP .50:.95)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, max(1, len(results)))
    rows = math.ceil(len(results) / cols) if results else 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(results) :]:
        ax.axis("off")
    for ax, name, r in zip(axes.flat, class_names, results):
        if r.recall.size:
            ax.plot(r.recall, r.precision, lw=1.5)
        title = f"{name}: AP {r.ap:.3f}" if not math.isnan(r.ap) else f"{name}: no ground truth"
        # parse_math=False: a class name is text; "$...$" in it is not matplotlib's math (which fails
        # on unknown macros and would leave no figure, and report.html after it, written)
        ax.set_title(title, fontsize=9, parse_math=False)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"precision / recall ({metric}{', curves at IoU 0.5' if metric == 'coco' else ''})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
