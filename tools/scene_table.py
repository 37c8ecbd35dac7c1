"""The ablation table of tools/tree_scenes.py: one row per variant folder (its --out, holding
tree_scenes.json) and mode, one column per held-out scene run, their mean, and the pooled AP
where every fold ran. Each cell is the median over the seeds run; the seeds are counted, and the
runs' training steps (epochs, for the YOLO peer) given as their range: a budget is wall time.

    python -m tools.scene_table output/screens5m/* --baseline output/screens5m/baseline

With --baseline, each row also gives its mean difference from that folder's AP (same mode, or
its first mode) over the scenes both ran, so that a screen reads as "what this change did".
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def load(folder: Path) -> dict:
    summary = folder / "tree_scenes.json"
    if not summary.is_file():
        raise SystemExit(f"{folder}: no tree_scenes.json (not a tools/tree_scenes --out folder)")
    return json.loads(summary.read_text())


def variant_label(results: dict) -> str:
    """What a folder changed from the plain defaults, in the words of its command line."""
    parts = [] if results.get("net", "mobilenet_v2") == "mobilenet_v2" else [f"--net {results['net']}"]
    parts += [f"--set {' '.join(results['set'])}"] if results.get("set") else []
    parts += [f"--test_set {' '.join(results['test_set'])}"] if results.get("test_set") else []
    return " ".join(parts) or "defaults"


def rows(results: dict) -> dict[str, dict]:
    """Per mode: {scene: median AP over seeds}, the seeds counted, the pooled median or None."""
    out = {}
    for mode in results["modes"]:
        scenes, steps, seeds = {}, [], set()
        for scene in results["scenes"]:
            runs = results["runs"].get(f"{scene}/{mode}", {})
            if runs:
                scenes[scene] = statistics.median(r["ap"] for r in runs.values())
                steps += [r["iterations"] for r in runs.values() if r.get("iterations") is not None]
                seeds |= set(runs)
        pooled = results.get("pooled", {}).get(mode)
        out[mode] = {
            "scenes": scenes,
            "seeds": len(seeds),
            "pooled": statistics.median(pooled) if pooled else None,
            "steps": f"{min(steps)}-{max(steps)}" if steps else "",
        }
    return out


def mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def table(folders: list[Path], baseline: Path | None = None) -> str:
    loaded = {folder: load(folder) for folder in folders}
    per_mode = {folder: rows(results) for folder, results in loaded.items()}
    scenes = list(dict.fromkeys(s for modes in per_mode.values() for m in modes.values() for s in m["scenes"]))
    reference = rows(load(baseline)) if baseline else None
    head = ["variant", "folder", "mode", "budget", "seeds", "steps", *scenes, "mean", "pooled"]
    head += ["mean vs baseline"] if reference else []
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for folder, results in loaded.items():
        for mode, row in per_mode[folder].items():
            average = mean(row["scenes"][s] for s in scenes if s in row["scenes"])
            cells = [variant_label(results), folder.name, mode, results["budget"], str(row["seeds"]), row["steps"]]
            cells += [_fmt(row["scenes"].get(s)) for s in scenes] + [_fmt(average), _fmt(row["pooled"])]
            if reference:
                base = (reference.get(mode) or next(iter(reference.values())))["scenes"]
                change = mean(row["scenes"][s] - base[s] for s in row["scenes"] if s in base)
                cells.append("" if change is None else f"{change:+.3f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="tools/tree_scenes --out folders")
    p.add_argument("--baseline", type=Path, default=None, help="the folder each row is compared with")
    args = p.parse_args(argv)
    print(table([f for f in args.folders if (f / "tree_scenes.json").is_file()] or args.folders, args.baseline))


if __name__ == "__main__":
    main()
