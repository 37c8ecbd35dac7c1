"""What the training boxes look like at the training scale, for a person to read: quantiles of
width, height, sqrt(area) and aspect ratio (h / w), objects per image and image sizes, in the log
and in the run folder (box_stats.json, box_stats.png). Computed from the profile (profile.py) at
the first TRAIN.SCALES entry and MAX_SIZE, as the loader resizes the images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .profile import ScaledBoxes

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class BoxStats:
    """Quantiles (at QUANTILES) of the boxes' width, height, side (sqrt of area) and aspect
    (h / w) in training-scale pixels; objects per image; image sizes (h, w) at the training
    scale; and the raw arrays, for the histograms."""

    images: int
    boxes: int
    quantiles: dict[str, list[float]] = field(default_factory=dict)
    objects_per_image: dict[str, float] = field(default_factory=dict)
    image_sizes: dict[str, list[float]] = field(default_factory=dict)
    widths: np.ndarray = field(default_factory=lambda: np.zeros(0))
    heights: np.ndarray = field(default_factory=lambda: np.zeros(0))


def box_stats(scaled: ScaledBoxes) -> BoxStats:
    """Statistics of a profile's boxes at one scale (BoxProfile.at_scale)."""
    w, h, counts, sizes = scaled.widths, scaled.heights, scaled.objects, scaled.image_sizes
    stats = BoxStats(len(counts), len(w), widths=w, heights=h)
    if len(w):
        for name, values in (("width", w), ("height", h), ("side", scaled.sides), ("aspect", h / w)):
            stats.quantiles[name] = [round(float(v), 3) for v in np.quantile(values, QUANTILES)]
    if len(counts):
        stats.objects_per_image = {
            "mean": round(float(counts.mean()), 3),
            "max": int(counts.max()),
            "empty": int((counts == 0).sum()),
        }
        stats.image_sizes = {"height": [float(sizes[:, 0].min()), float(sizes[:, 0].max())]}
        stats.image_sizes["width"] = [float(sizes[:, 1].min()), float(sizes[:, 1].max())]
    return stats


def describe(stats: BoxStats) -> list[str]:
    """Lines for the log."""
    if not stats.boxes:
        return [f"training boxes: none in {stats.images} images"]
    q = stats.quantiles
    lines = [
        f"training boxes at the training scale: {stats.boxes} in {stats.images} images "
        f"({stats.objects_per_image['mean']:.2f} per image, at most {stats.objects_per_image['max']}, "
        f"{stats.objects_per_image['empty']} images without any)",
        "  quantiles 5/25/50/75/95%:",
    ]
    for name, unit in (("width", " px"), ("height", " px"), ("side", " px (sqrt of area)"), ("aspect", " (h / w)")):
        lines.append(f"    {name:6s} " + " / ".join(f"{v:.3g}" for v in q[name]) + unit)
    return lines


def plot_box_stats(stats: BoxStats, path: Path) -> None:
    """box_stats.png: histograms of side (log scale) and aspect ratio, and width against height."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    if stats.boxes:
        side = np.sqrt(stats.widths * stats.heights)
        bins = np.geomspace(max(side.min(), 1.0), side.max() * 1.01 + 1, 30)
        axes[0].hist(side, bins=bins, color="#4477aa")
        axes[0].set_xscale("log")
        axes[1].hist(np.log2(stats.heights / stats.widths), bins=30, color="#44aa77")
        axes[2].scatter(stats.widths, stats.heights, s=4, alpha=0.4, color="#aa4466")
        axes[2].set_xscale("log")
        axes[2].set_yscale("log")
    axes[0].set_xlabel("sqrt(area), px at the training scale")
    axes[1].set_xlabel("log2(h / w)")
    axes[2].set_xlabel("width, px")
    axes[2].set_ylabel("height, px")
    fig.suptitle(f"{stats.boxes} training boxes in {stats.images} images", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_summary(stats: BoxStats, run_dir: Path) -> None:
    """box_stats.json and box_stats.png in the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = {k: getattr(stats, k) for k in ("images", "boxes", "quantiles", "objects_per_image", "image_sizes")}
    (run_dir / "box_stats.json").write_text(json.dumps({"quantiles_at": QUANTILES, **summary}, indent=1))
    plot_box_stats(stats, run_dir / "box_stats.png")
