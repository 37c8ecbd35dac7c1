"""Score thresholds per class, chosen on held-out images (test_net.py --threshold_rule).

One score for every class serves uneven classes badly: a rare class's detections score lower than
a common one's, and a single threshold trades one class's recall for another's precision. Per
class, from its VOC precision/recall curve at IoU 0.5 (voc_eval.ClassResult: detections by
decreasing score, each a true or false positive), a threshold keeps the detections scoring at or
above it; the rules:

- `f1`: the threshold where the class's F1 is highest;
- `precision=P`: the lowest threshold at which the class's precision is still at least P (the most
  recall at that precision); a class that never reaches P gets 1.0, which switches it off, and the
  table says so ("not reached"), as for a class with objects but no detection right ("none right").

Only cuts between different scores are candidates (detections of equal score stand or fall
together). A class without objects or detections in the images takes the single threshold of
the best F1 over all classes together (the evaluation report's). The thresholds are stored as
config TEST.CLASS_THRESHOLDS, one per class index (0, the background, unused), so they travel in
the checkpoint and the ONNX metadata; `Detector(...)(image, threshold="auto")` and `demo.py
--thresh auto` use them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .html_report import best_f1_threshold
from .voc_eval import ClassResult

RULES = ("f1", "precision=P")


@dataclass(frozen=True)
class ClassThreshold:
    name: str
    threshold: float
    precision: float  # at the threshold, on the images it was chosen on (NaN: not measurable there)
    recall: float
    f1: float
    rule: str  # what chose it: the rule, "fallback" or "not reached"


def parse_rule(text: str) -> tuple[str, float | None]:
    """`f1` -> ("f1", None); `precision=0.9` -> ("precision", 0.9); else ValueError."""
    if text == "f1":
        return "f1", None
    name, _, value = text.partition("=")
    try:
        target = float(value)
    except ValueError:
        target = math.nan
    if name != "precision" or not 0.0 < target <= 1.0:
        raise ValueError(f"--threshold_rule is f1 or precision=P with 0 < P <= 1; got {text!r}")
    return "precision", target


def cuts(scores: np.ndarray, precision: np.ndarray, recall: np.ndarray) -> tuple[np.ndarray, ...]:
    """(scores, precision, recall) of a curve (by decreasing score) at each cut between different
    scores, best first."""
    ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True]) if len(scores) else np.zeros(0, int)
    return scores[ends], precision[ends], recall[ends]


def f1_of(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return 2 * precision * recall / np.maximum(precision + recall, 1e-12)


def class_threshold(name: str, result: ClassResult, rule: str, target: float | None, fallback: float) -> ClassThreshold:
    scores, precision, recall = cuts(result.scores, result.precision, result.recall)
    if result.num_positives == 0 or len(scores) == 0:
        return ClassThreshold(name, fallback, math.nan, math.nan, math.nan, "fallback")
    f1 = f1_of(precision, recall)
    if not (result.verdicts == 1).any():  # found nothing right: any threshold keeps only mistakes
        return ClassThreshold(name, 1.0, 0.0, 0.0, 0.0, "none right")
    if rule == "f1":
        best = int(np.argmax(f1))
    else:
        meeting = np.flatnonzero(precision >= target)
        if len(meeting) == 0:
            return ClassThreshold(name, 1.0, math.nan, 0.0, math.nan, "not reached")
        best = int(meeting[-1])
    return ClassThreshold(name, float(scores[best]), float(precision[best]), float(recall[best]), float(f1[best]), rule)


def pooled_best_f1(results: Sequence[ClassResult]) -> float:
    """The single threshold of the best F1 over all classes together, as the evaluation report
    finds it (html_report.best_f1_threshold); 0.5 where nothing is measurable."""
    scores = np.concatenate([np.zeros(0), *(r.scores for r in results)])
    verdicts = np.concatenate([np.zeros(0, np.int64), *(r.verdicts for r in results)])
    positives = sum(r.num_positives for r in results)
    judged = verdicts >= 0  # a match to a difficult object counts neither way
    if positives == 0 or not judged.any():
        return 0.5
    return best_f1_threshold(np.stack([scores[judged], verdicts[judged]], axis=1), positives)[0]


def choose_thresholds(results: Sequence[ClassResult], names: Sequence[str], rule_text: str) -> list[ClassThreshold]:
    """One ClassThreshold per class 1..K-1 (results and names in class order)."""
    rule, target = parse_rule(rule_text)
    fallback = pooled_best_f1(results)
    shown = "f1" if rule == "f1" else f"precision>={target:g}"
    chosen = [class_threshold(n, r, rule, target, fallback) for n, r in zip(names, results)]
    return [
        c if c.rule != rule else ClassThreshold(c.name, c.threshold, c.precision, c.recall, c.f1, shown) for c in chosen
    ]


def at_threshold(result: ClassResult, threshold: float) -> tuple[float, float, float]:
    """(precision, recall, F1) of the detections scoring at least `threshold` (NaN where none)."""
    kept = int((result.scores >= threshold).sum())
    if kept == 0 or result.num_positives == 0:
        return math.nan, 0.0 if result.num_positives else math.nan, math.nan
    precision, recall = float(result.precision[kept - 1]), float(result.recall[kept - 1])
    return precision, recall, float(f1_of(np.array(precision), np.array(recall)))


def as_config(thresholds: Sequence[ClassThreshold]) -> list[float]:
    """TEST.CLASS_THRESHOLDS: index 0 (the background) 0.0, then one per class, unrounded (a
    threshold is a detection's own score: rounded up, it would drop that detection)."""
    return [0.0] + [float(t.threshold) for t in thresholds]


def table(thresholds: Sequence[ClassThreshold], where: str) -> list[str]:
    """Lines of a table: each class's threshold and its precision, recall and F1 there."""

    def show(value: float) -> str:
        return "  -  " if math.isnan(value) else f"{value:.3f}"

    width = max([5, *(len(t.name) for t in thresholds)])
    lines = [f"score thresholds per class ({where})", f"{'class':<{width}}  thresh  prec   recall  F1     chosen by"]
    for t in thresholds:
        cells = f"{t.threshold:.3f}   {show(t.precision)}  {show(t.recall)}   {show(t.f1)}  {t.rule}"
        lines.append(f"{t.name:<{width}}  {cells}")
    return lines


def pooled_f1(results: Sequence[ClassResult], thresholds: Sequence[float]) -> float:
    """F1 over all classes together of the detections scoring at least their class's threshold."""
    tp = fp = positives = 0
    for result, threshold in zip(results, thresholds):
        kept = result.verdicts[result.scores >= threshold]
        tp, fp, positives = tp + int((kept == 1).sum()), fp + int((kept == 0).sum()), positives + result.num_positives
    precision, recall = tp / max(tp + fp, 1), tp / max(positives, 1)
    return float(f1_of(np.array(precision), np.array(recall)))


def mean_class_f1(results: Sequence[ClassResult], thresholds: Sequence[float]) -> float:
    """The mean over the classes with objects of each class's F1 at its threshold (a class with no
    detection kept counts 0): a rare class weighs as much as a common one."""
    f1s = [at_threshold(r, t)[2] for r, t in zip(results, thresholds) if r.num_positives]
    return float(np.mean([0.0 if math.isnan(f) else f for f in f1s])) if f1s else math.nan


def compare(
    results: Sequence[ClassResult], names: Sequence[str], chosen: Sequence[float], val_single: float | None = None
) -> dict:
    """On other images (the test split): each class at its chosen threshold, and F1 over all
    classes (pooled, and the mean of the classes' F1) at the chosen thresholds against one threshold
    for every class: `val_single`, chosen on the same images as the per-class ones (the fair
    comparison, where the caller knows it), and the single best-F1 threshold of these same images
    (an upper bound for any single threshold: it is chosen on the images it is scored on)."""
    single = pooled_best_f1(results)
    per_class = {}
    for name, result, threshold in zip(names, results, chosen):
        precision, recall, f1 = at_threshold(result, threshold)
        shown = (_json_number(v) for v in (precision, recall, f1))
        per_class[name] = dict(zip(("threshold", "precision", "recall", "f1"), (threshold, *shown)))
        if val_single is not None:
            per_class[name]["f1_at_val_single"] = _json_number(at_threshold(result, val_single)[2])
    comparison = {
        "per_class": per_class,
        "f1_at_class_thresholds": pooled_f1(results, chosen),
        "mean_class_f1_at_class_thresholds": _json_number(mean_class_f1(results, chosen)),
        "single_threshold": single,
        "f1_at_single_threshold": at_one_threshold(results, single)[0],
    }
    if val_single is not None:
        pooled, mean = at_one_threshold(results, val_single)
        comparison |= {
            "val_single_threshold": val_single,
            "f1_at_val_single_threshold": pooled,
            "mean_class_f1_at_val_single_threshold": _json_number(mean),
        }
    return comparison


def at_one_threshold(results: Sequence[ClassResult], threshold: float) -> tuple[float, float]:
    """(pooled F1, mean of the classes' F1) with `threshold` for every class."""
    every = [threshold] * len(results)
    return pooled_f1(results, every), mean_class_f1(results, every)


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value  # JSON has no NaN


def describe_comparison(comparison: dict) -> str:
    text = f"F1 over all classes: {comparison['f1_at_class_thresholds']:.3f} at the per-class thresholds"
    if "val_single_threshold" in comparison:
        text += (
            f", {comparison['f1_at_val_single_threshold']:.3f} at one threshold chosen on the same images "
            f"({comparison['val_single_threshold']:.3f}); mean of the classes' F1 "
            f"{_shown(comparison['mean_class_f1_at_class_thresholds'])} against "
            f"{_shown(comparison['mean_class_f1_at_val_single_threshold'])}"
        )
    return text + (
        f"; {comparison['f1_at_single_threshold']:.3f} at the single best threshold of these images "
        f"({comparison['single_threshold']:.3f}, an upper bound)"
    )


def describe_single(results: Sequence[ClassResult], chosen: Sequence[float], single: float) -> str:
    """One line under the table of thresholds chosen on `results`' images: what `single`, one
    threshold for every class chosen on the same images (pooled_best_f1), gives instead."""
    pooled, mean = at_one_threshold(results, single)
    return (
        f"one threshold for every class here: {single:.3f}, F1 over all classes {pooled:.3f} (mean of the "
        f"classes' F1 {_shown(mean)}); at the per-class thresholds "
        f"{pooled_f1(results, chosen):.3f} ({_shown(mean_class_f1(results, chosen))})"
    )


def _shown(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"
