"""VOC AP on hand-made cases that separate the devkit's rules."""

import math

import numpy as np
import pytest

from frcnn.evaluation.voc_eval import evaluate_voc, mean_ap, voc_ap

A, B, C, D = [0, 0, 9, 9], [20, 20, 39, 39], [50, 0, 59, 9], [70, 70, 79, 79]


def arr(*boxes):
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def one_image_case():
    """Class 1: A, B, C plus D difficult. Detections by score: A (TP), A again (duplicate: FP),
    D (difficult: ignored), B (TP), nothing (FP). Recall 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 2/3, 1/2."""
    gt = [(arr(A, B, C, D), np.array([1, 1, 1, 1]), np.array([0, 0, 0, 1], dtype=bool))]
    dets = [(arr(A, A, D, B, [100, 100, 110, 110]), np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 1, 1, 1, 1]))]
    return gt, dets


def test_area_ap_hand_computed():
    gt, dets = one_image_case()
    (result,) = evaluate_voc(gt, dets, num_classes=2, use_11_point=False)
    # Envelope: precision 1 up to recall 1/3, 2/3 up to 2/3, 0 beyond: 1/3 + 1/3 * 2/3 = 5/9
    assert result.ap == pytest.approx(5 / 9)
    assert result.num_positives == 3  # the difficult object is not counted
    assert result.recall.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])


def test_11_point_ap_hand_computed():
    gt, dets = one_image_case()
    (result,) = evaluate_voc(gt, dets, num_classes=2, use_11_point=True)
    # recall thresholds 0, .1, .2, .3 -> 1; .4, .5, .6 -> 2/3; .7 .. 1 -> 0: (4 + 2) / 11
    assert result.ap == pytest.approx(6 / 11)


def test_iou_half_uses_the_plus_one_convention():
    gt = [(arr(A), np.array([1]), np.array([False]))]
    # inclusive: 100 / 200 = 0.5 -> a match (>= 0.5); without +1 it would be 81 / 171 = 0.47
    dets = [(arr([0, 0, 9, 19]), np.array([0.9]), np.array([1]))]
    assert evaluate_voc(gt, dets, 2)[0].ap == pytest.approx(1.0)
    dets = [(arr([0, 0, 9, 20]), np.array([0.9]), np.array([1]))]
    assert evaluate_voc(gt, dets, 2)[0].ap == 0.0


def test_detections_of_other_images_and_classes_do_not_match():
    gt = [(arr(A), np.array([1]), np.array([False])), (arr(B), np.array([2]), np.array([False]))]
    dets = [(arr(B, A), np.array([0.9, 0.8]), np.array([2, 2])), (arr(B), np.array([0.7]), np.array([2]))]
    results = evaluate_voc(gt, dets, 3)
    assert results[0].ap == 0.0  # class 1: no detections
    # class 2: B in image 0 (FP), A in image 0 (FP), B in image 1 (TP): precision 1/3 at recall 1
    assert results[1].ap == pytest.approx(1 / 3)


def test_class_without_ground_truth_is_left_out_of_the_mean():
    gt = [(arr(A), np.array([1]), np.array([False]))]
    dets = [(arr(A, B), np.array([0.9, 0.8]), np.array([1, 2]))]
    results = evaluate_voc(gt, dets, 3)
    assert results[0].ap == 1.0 and math.isnan(results[1].ap)
    assert mean_ap(results) == 1.0


def test_voc_ap_on_perfect_and_empty_curves():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]), False) == 1.0
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]), True) == pytest.approx(1.0)
    assert voc_ap(np.array([]), np.array([]), False) == 0.0
