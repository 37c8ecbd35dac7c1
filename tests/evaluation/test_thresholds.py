"""Per-class score thresholds (evaluation/thresholds.py) on hand-built precision/recall curves."""

import math

import numpy as np
import pytest

from frcnn.evaluation.thresholds import (
    as_config,
    choose_thresholds,
    compare,
    describe_comparison,
    describe_single,
    parse_rule,
    pooled_best_f1,
    table,
)
from frcnn.evaluation.voc_eval import evaluate_class

OBJECTS = np.array([[0, 0, 9, 9], [20, 0, 29, 9], [40, 0, 49, 9], [60, 0, 69, 9]], np.float64)
MISS = np.array([100, 100, 109, 109], np.float64)


def curve(scores, hits):
    """One image with the four OBJECTS; detection i scores scores[i] and lands on object i's box
    (a true positive) where hits[i], else on empty ground (a false positive)."""
    boxes, taken = [], 0
    for hit in hits:
        boxes.append(OBJECTS[taken] if hit else MISS)
        taken += bool(hit)
    return evaluate_class([OBJECTS], [np.zeros(4, bool)], np.zeros(len(scores), int), np.array(boxes), np.array(scores))


def test_the_curve_keeps_its_scores_and_verdicts():
    result = curve([0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, 0, 1, 0])
    assert result.scores.tolist() == [0.9, 0.8, 0.7, 0.6, 0.5] and result.verdicts.tolist() == [1, 1, 0, 1, 0]
    difficult = evaluate_class([OBJECTS], [np.array([1, 0, 0, 0], bool)], np.zeros(1, int), OBJECTS[:1], np.ones(1))
    assert difficult.verdicts.tolist() == [-1]  # matched to a difficult object: neither


def test_f1_takes_the_cut_of_the_best_f1():
    # precision 1, 1, 2/3, 3/4, 3/5; recall 1/4, 1/2, 1/2, 3/4, 3/4: F1 best (0.75) at the 4th cut
    (chosen,) = choose_thresholds([curve([0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, 0, 1, 0])], ["a"], "f1")
    assert (chosen.threshold, chosen.precision, chosen.recall, chosen.f1, chosen.rule) == (0.6, 0.75, 0.75, 0.75, "f1")


def test_a_target_precision_takes_the_lowest_score_that_keeps_it():
    result = curve([0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, 0, 1, 0])
    (high,) = choose_thresholds([result], ["a"], "precision=0.9")
    assert (high.threshold, high.precision, high.recall, high.rule) == (0.8, 1.0, 0.5, "precision>=0.9")
    (lower,) = choose_thresholds([result], ["a"], "precision=0.7")
    assert (lower.threshold, lower.recall) == (0.6, 0.75)  # precision 3/4 at 0.6, 3/5 below


def test_equal_scores_stand_or_fall_together():
    # a true and a false positive at 0.9: no cut between them
    (chosen,) = choose_thresholds([curve([0.9, 0.9, 0.5], [1, 0, 1])], ["a"], "f1")
    assert chosen.threshold == 0.5 and chosen.precision == pytest.approx(2 / 3)


def test_an_unreached_precision_switches_the_class_off_and_says_so():
    (chosen,) = choose_thresholds([curve([0.9, 0.8], [0, 1])], ["a"], "precision=0.9")
    assert (chosen.threshold, chosen.recall, chosen.rule) == (1.0, 0.0, "not reached")
    assert "not reached" in table([chosen], "here")[-1]


def test_a_class_without_objects_or_detections_takes_the_single_best_threshold():
    seen = curve([0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, 0, 1, 0])
    unseen = evaluate_class([np.zeros((0, 4))], [np.zeros(0, bool)], np.zeros(0, int), np.zeros((0, 4)), np.zeros(0))
    chosen = choose_thresholds([seen, unseen], ["a", "b"], "f1")
    assert pooled_best_f1([seen, unseen]) == 0.6
    assert (chosen[1].threshold, chosen[1].rule) == (0.6, "fallback") and math.isnan(chosen[1].precision)
    assert as_config(chosen) == [0.0, 0.6, 0.6]


def test_per_class_thresholds_beat_one_threshold_on_uneven_classes():
    # class a scores high (right at >= 0.8), class b, rare and unsure, right at 0.3-0.4 only
    a = curve([0.95, 0.9, 0.85, 0.8, 0.5, 0.45], [1, 1, 1, 1, 0, 0])
    b = curve([0.4, 0.35, 0.3, 0.2], [1, 1, 0, 0])
    chosen = [t.threshold for t in choose_thresholds([a, b], ["a", "b"], "f1")]
    assert chosen == [0.8, 0.35]
    result = compare([a, b], ["a", "b"], chosen)
    # per class: 4 + 2 true positives, no false one, of 4 + 4 objects: precision 1, recall 6/8
    assert result["f1_at_class_thresholds"] == pytest.approx(2 * 0.75 / 1.75)
    # one threshold: 0.35 keeps a's 2 false positives too; 0.8 loses b entirely
    assert result["f1_at_single_threshold"] < result["f1_at_class_thresholds"]
    assert result["per_class"]["b"] == {"threshold": 0.35, "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3)}


def test_the_comparison_names_one_threshold_chosen_on_the_same_images():
    a = curve([0.95, 0.9, 0.85, 0.8, 0.5, 0.45], [1, 1, 1, 1, 0, 0])
    b = curve([0.4, 0.35, 0.3, 0.2], [1, 1, 0, 0])
    # chosen elsewhere: per class 0.8 and 0.35; one threshold for both 0.8 (b's detections all below it)
    result = compare([a, b], ["a", "b"], [0.8, 0.35], val_single=0.8)
    assert result["f1_at_val_single_threshold"] == pytest.approx(2 / 3)  # 4 of 8 objects, no false positive
    assert result["mean_class_f1_at_val_single_threshold"] == pytest.approx(0.5)  # a 1, b 0
    assert result["mean_class_f1_at_class_thresholds"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["per_class"]["b"]["f1_at_val_single"] is None and result["per_class"]["a"]["f1_at_val_single"] == 1
    text = describe_comparison(result)
    assert "0.857 at the per-class thresholds, 0.667 at one threshold chosen on the same images (0.800)" in text
    assert "mean of the classes' F1 0.833 against 0.500" in text and "(0.350, an upper bound)" in text
    assert "val_single_threshold" not in compare([a, b], ["a", "b"], [0.8, 0.35])


def test_the_table_of_thresholds_ends_with_what_one_threshold_gives():
    a = curve([0.95, 0.9, 0.85, 0.8, 0.5, 0.45], [1, 1, 1, 1, 0, 0])
    b = curve([0.4, 0.35, 0.3, 0.2], [1, 1, 0, 0])
    # one threshold: 0.35 (6 right and 2 wrong of 8: F1 0.75); a's F1 there 0.8, b's 2/3
    assert pooled_best_f1([a, b]) == 0.35
    assert describe_single([a, b], [0.8, 0.35], 0.35) == (
        "one threshold for every class here: 0.350, F1 over all classes 0.750 (mean of the classes' F1 0.733); "
        "at the per-class thresholds 0.857 (0.833)"
    )


@pytest.mark.parametrize("text", ["f2", "precision", "precision=1.5", "precision=0", "precision=x", "recall=0.9"])
def test_a_bad_rule_says_what_is_wanted(text):
    with pytest.raises(ValueError, match="f1 or precision=P"):
        parse_rule(text)
    assert parse_rule("precision=0.9") == ("precision", 0.9) and parse_rule("f1") == ("f1", None)


def test_a_class_with_objects_but_nothing_right_is_switched_off():
    (chosen,) = choose_thresholds([curve([0.9, 0.8], [0, 0])], ["a"], "f1")
    assert (chosen.threshold, chosen.recall, chosen.rule) == (1.0, 0.0, "none right")
