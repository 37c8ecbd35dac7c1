"""RoIHeads arithmetic on hand-built cases: RoI sampling, the two losses, and detection post-processing.

Boxes are inclusive pixel corners (width = x2 - x1 + 1); expected values are derived in the comments.
"""

import math

import pytest
import torch
from torch import nn

from frcnn.modeling.box_coder import BoxCoder
from frcnn.modeling.poolers.roi_pool import RoIPooler
from frcnn.modeling.roi_heads import BoxPredictor, DetectionSettings, RoIHeads, RoISamplingSettings
from frcnn.modeling.sampling import IgnoreRegions

STDS = (0.1, 0.1, 0.2, 0.2)


def make_heads(num_classes=3, class_agnostic=False, sampling=None, detection=None, sigma=1.0) -> RoIHeads:
    return RoIHeads(
        RoIPooler("align", 2, 1.0 / 16),
        nn.Flatten(1),
        BoxPredictor(4 * 2 * 2, num_classes, class_agnostic),
        num_classes,
        BoxCoder(stds=STDS),
        sampling=sampling,
        detection=detection,
        sigma=sigma,
    )


def softmax(logits):
    exps = [math.exp(z) for z in logits]
    return [e / sum(exps) for e in exps]


def smooth_l1(x: float, beta: float) -> float:
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


# ---- _sample ----------------------------------------------------------------------------------

# Three images, 5 proposal slots and 2 ground-truth slots each. fg_iou 0.5, bg in [0.1, 0.4): the band
# [0.4, 0.5) and IoU < 0.1 are ignored. Expected (label, normalised target) of each foreground candidate:
# targets are (dx / 0.1, dy / 0.1, dw / 0.2, dh / 0.2) from the candidate to its ground truth.
PROPOSALS = [
    [
        [0, 0, 19, 9],  # p0: IoU with g0 200 / 400 = 0.5 -> fg (>= fg_iou), class 3
        [40, 40, 59, 69],  # p1: IoU with g1 400 / 600 = 0.67 -> fg, class 5
        [0, 10, 19, 49],  # p2: IoU with g0 200 / 1000 = 0.2 -> bg
        [0, 0, 19, 0],  # p3: IoU with g0 20 / 400 = 0.05 < 0.1 -> ignored
        [0, 0, 19, 19],  # invalid slot (equal to g0): never a candidate
    ],
    [
        [14, 10, 33, 29],  # q0: IoU with h0 320 / 480 = 0.67 -> fg, class 2
        [60, 60, 79, 79],  # q1: IoU 0 with h0 (equal to the *padded* gt slot) -> ignored
        [10, 20, 29, 39],  # q2: IoU 200 / 600 = 0.33 -> bg (< bg_iou_hi 0.4)
        [10, 10, 29, 29],  # invalid slot (equal to h0)
        [10, 17, 29, 36],  # q4: IoU 260 / 540 = 0.48 -> ignored (in [0.4, 0.5))
    ],
    [
        [0, 0, 9, 9],  # r0: an image without ground truth: every valid proposal is background
        [20, 20, 39, 39],  # r1
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ],
]
PROPOSAL_VALID = [[True] * 4 + [False], [True, True, True, False, True], [True, True, False, False, False]]
GT_BOXES = [[[0, 0, 19, 19], [40, 40, 59, 59]], [[10, 10, 29, 29], [60, 60, 79, 79]], [[0, 0, 0, 0], [0, 0, 0, 0]]]
GT_LABELS = [[3, 5], [2, 7], [0, 0]]
GT_VALID = [[True, True], [True, False], [False, False]]
# p0 (centre (10, 5), 20 x 10) -> g0 (centre (10, 10), 20 x 20): (0, 5 / 10, 0, log 2) -> (0, 5, 0, 5 log 2).
# p1 (centre (50, 55), 20 x 30) -> g1 (centre (50, 50), 20 x 20): (0, -5 / 30, 0, log(20 / 30)).
# q0 (centre (24, 20), 20 x 20) -> h0 (centre (20, 20), 20 x 20): (-4 / 20, 0, 0, 0) -> (-2, 0, 0, 0).
# The ground truth joins the candidates: g0, g1, h0 are foreground of themselves with target 0.
EXPECTED_FG = [
    {
        (0, 0, 19, 9): (3, [0.0, 5.0, 0.0, 5 * math.log(2.0)]),
        (40, 40, 59, 69): (5, [0.0, -5.0 / 3, 0.0, 5 * math.log(2.0 / 3)]),
        (0, 0, 19, 19): (3, [0.0] * 4),
        (40, 40, 59, 59): (5, [0.0] * 4),
    },
    {(14, 10, 33, 29): (2, [-2.0, 0.0, 0.0, 0.0]), (10, 10, 29, 29): (2, [0.0] * 4)},
    {},
]
EXPECTED_BG = [{(0, 10, 19, 49)}, {(10, 20, 29, 39)}, {(0, 0, 9, 9), (20, 20, 39, 39)}]


def test_sample_hand_case():
    # 7 per image (of 7 candidates: 5 proposals + 2 gt), at most int(7 x 0.6) = 4 foreground: no image has more
    # than 4 fg, nor more bg than the rest, so every labelled candidate is taken.
    settings = RoISamplingSettings(
        batch_size_per_image=7, positive_fraction=0.6, fg_iou=0.5, bg_iou_hi=0.4, bg_iou_lo=0.1
    )
    heads = make_heads(num_classes=8, sampling=settings)
    rois, labels, targets, weights = heads._sample(
        torch.tensor(PROPOSALS, dtype=torch.float32),
        torch.tensor(PROPOSAL_VALID),
        torch.tensor(GT_BOXES, dtype=torch.float32),
        torch.tensor(GT_LABELS),
        torch.tensor(GT_VALID),
    )
    assert rois.shape == (3 * 7, 5) and labels.shape == (21,) and targets.shape == (21, 4) and weights.shape == (21,)
    rois, labels, targets, weights = rois.view(3, 7, 5), labels.view(3, 7), targets.view(3, 7, 4), weights.view(3, 7)
    for i in range(3):
        assert (rois[i, :, 0] == i).all()
        fg, bg = EXPECTED_FG[i], EXPECTED_BG[i]
        n_fg, count = len(fg), len(fg) + len(bg)  # 5, 3 and 2 chosen
        # weight 1 / (chosen in the image x 3 images); chosen first (fg, then bg), zero-weight padding after
        assert torch.allclose(weights[i, :count], torch.full((count,), 1.0 / (count * 3)))
        assert (weights[i, count:] == 0).all() and (labels[i, count:] == 0).all()
        boxes = [tuple(int(v) for v in b) for b in rois[i, :, 1:].tolist()]
        assert set(boxes[:n_fg]) == set(fg) and len(set(boxes[:n_fg])) == n_fg
        assert set(boxes[n_fg:count]) == bg
        for j in range(n_fg):
            label, target = fg[boxes[j]]
            assert labels[i, j].item() == label
            assert torch.allclose(targets[i, j], torch.tensor(target), atol=1e-5), (i, boxes[j])
        assert (labels[i, n_fg:count] == 0).all()


def test_ignore_regions_take_background_rois_out_of_the_sample():
    # Image 0's region is its background p2, image 2's (no ground truth) is r1; image 1's is padding.
    # Each image's sample is the hand case's without those: 4 fg, 2 fg + 1 bg, and r0 alone.
    settings = RoISamplingSettings(
        batch_size_per_image=7, positive_fraction=0.6, fg_iou=0.5, bg_iou_hi=0.4, bg_iou_lo=0.1
    )
    regions = IgnoreRegions(
        torch.tensor([[[0.0, 10.0, 19.0, 49.0]], [[0.0, 0.0, 0.0, 0.0]], [[20.0, 20.0, 39.0, 39.0]]]),
        torch.tensor([[True], [False], [True]]),
    )
    rois, labels, _, weights = make_heads(num_classes=8, sampling=settings)._sample(
        torch.tensor(PROPOSALS, dtype=torch.float32),
        torch.tensor(PROPOSAL_VALID),
        torch.tensor(GT_BOXES, dtype=torch.float32),
        torch.tensor(GT_LABELS),
        torch.tensor(GT_VALID),
        ignore=regions,
    )
    rois, labels, weights = rois.view(3, 7, 5), labels.view(3, 7), weights.view(3, 7)
    expected_bg = [set(), EXPECTED_BG[1], {(0, 0, 9, 9)}]
    for i in range(3):
        fg, bg = EXPECTED_FG[i], expected_bg[i]
        count = len(fg) + len(bg)
        boxes = [tuple(int(v) for v in b) for b in rois[i, :count, 1:].tolist()]
        assert set(boxes) == set(fg) | bg and len(boxes) == count
        assert torch.allclose(weights[i, :count], torch.full((count,), 1.0 / (count * 3)))
        assert (weights[i, count:] == 0).all()
        assert (labels[i, len(fg) : count] == 0).all()


def test_sample_caps_foreground_at_the_positive_fraction():
    # 4 per image x 0.25 = 1 foreground at most; image 0 has 4 fg candidates and 1 bg -> 1 fg + 1 bg,
    # weight 1 / (2 x 3), then 2 padding RoIs.
    settings = RoISamplingSettings(
        batch_size_per_image=4, positive_fraction=0.25, fg_iou=0.5, bg_iou_hi=0.4, bg_iou_lo=0.1
    )
    heads = make_heads(num_classes=8, sampling=settings)
    _, labels, _, weights = heads._sample(
        torch.tensor(PROPOSALS, dtype=torch.float32),
        torch.tensor(PROPOSAL_VALID),
        torch.tensor(GT_BOXES, dtype=torch.float32),
        torch.tensor(GT_LABELS),
        torch.tensor(GT_VALID),
        seeds=[0, 1, 2],
    )
    labels, weights = labels.view(3, 4), weights.view(3, 4)
    assert (labels[:, 0] > 0).tolist() == [True, True, False]
    assert (labels[:, 1:] == 0).all()
    assert torch.allclose(weights[0], torch.tensor([1 / 6, 1 / 6, 0, 0]))
    assert torch.allclose(weights[1], torch.tensor([1 / 6, 1 / 6, 0, 0]))
    assert torch.allclose(weights[2], torch.tensor([1 / 6, 1 / 6, 0, 0]))


# ---- _losses ----------------------------------------------------------------------------------

# 4 RoIs, K = 3, weighted as per_image_weights weighs 2 images: image 0 sampled a class-2 and a class-1 RoI
# (1 / (2 x 2) each), image 1 a background RoI (1 / (1 x 2)) and has a zero-weight padding RoI.
LOGITS = [[1.0, 2.0, 0.5], [0.0, 0.0, 0.0], [2.0, -1.0, 0.0], [5.0, -5.0, 9.0]]
LABELS = [2, 1, 0, 0]
WEIGHTS = [0.25, 0.25, 0.5, 0.0]
TARGETS = [[0.5, -0.2, 0.1, 0.0], [0.3, 0.0, 0.0, 0.4], [1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]]
# the deltas of each RoI's true class (anything for background and padding: they carry no box loss)
TRUE_DELTAS = [[0.0, 1.8, 0.1, -3.0], [0.3, 0.5, 0.0, 0.4], [-4.0, 4.0, 3.0, 3.0], [7.0, 7.0, 7.0, 7.0]]


def expected_losses(beta: float) -> tuple[float, float]:
    # cross entropy = logsumexp(z) - z_label, weighted
    cls = sum(w * (math.log(sum(math.exp(z) for z in zs)) - zs[y]) for zs, y, w in zip(LOGITS, LABELS, WEIGHTS))
    # smooth L1 over the 4 coordinates of the true class's deltas, foreground RoIs only, weighted.
    # beta 1: RoI 0 differences (-0.5, 2, 0, -3) -> 0.125 + 1.5 + 0 + 2.5 = 4.125; RoI 1 (0, 0.5, 0, 0) -> 0.125.
    box = sum(
        w * sum(smooth_l1(d - t, beta) for d, t in zip(ds, ts))
        for ds, ts, y, w in zip(TRUE_DELTAS, TARGETS, LABELS, WEIGHTS)
        if y > 0
    )
    return cls, box


@pytest.mark.parametrize("sigma", [1.0, 2.0])
@pytest.mark.parametrize("class_agnostic", [False, True])
def test_losses_hand_case(class_agnostic, sigma):
    heads = make_heads(num_classes=3, class_agnostic=class_agnostic, sigma=sigma)
    if class_agnostic:
        deltas = torch.tensor(TRUE_DELTAS)
    else:
        # (R, 4K): every other class's deltas are wildly wrong, so only the true class's may be used
        deltas = torch.full((4, 3, 4), -9.0)
        deltas[torch.arange(4), torch.tensor(LABELS)] = torch.tensor(TRUE_DELTAS)
        deltas = deltas.view(4, 12)
    losses = heads._losses(
        torch.tensor(LOGITS), deltas, torch.tensor(LABELS), torch.tensor(TARGETS), torch.tensor(WEIGHTS)
    )
    cls, box = expected_losses(beta=1.0 / sigma**2)
    assert losses["rcnn_cls"].item() == pytest.approx(cls, rel=1e-6)
    assert losses["rcnn_box"].item() == pytest.approx(box, rel=1e-6)
    if sigma == 1.0:
        # cls: 0.25 * (log(e + e^2 + e^0.5) - 0.5) + 0.25 * log 3 + 0.5 * (log(e^2 + e^-1 + 1) - 2)
        #    = 0.25 * 1.96437 + 0.25 * 1.09861 + 0.5 * 0.16985
        assert cls == pytest.approx(0.25 * 1.96437 + 0.25 * 1.09861 + 0.5 * 0.16985, abs=1e-5)
        assert box == pytest.approx(0.25 * 4.125 + 0.25 * 0.125)


# ---- _detect ----------------------------------------------------------------------------------

# K = 3 (classes 1 and 2); score threshold float32(1/3) (strictly greater), NMS 0.3 per class, 4 per image.
# (image, box, logits) of each RoI and, below, its nonzero normalised deltas per class.
ROIS = [
    (0, [10, 10, 29, 29], [0.0, 2.0, 1.5]),  # 0: p = (.077, .574, .348)
    (0, [12, 10, 31, 29], [0.0, 2.5, 0.0]),  # 1: p = (.071, .859, .071)
    (0, [50, 40, 89, 59], [0.0, 0.0, 1.0]),  # 2: p = (.212, .212, .576)
    (0, [14, 12, 33, 31], [0.0, 1.0, 1.2]),  # 3: p = (.142, .386, .472)
    (0, [60, 0, 79, 19], [0.0, 0.0, 0.0]),  # 4: p = 1/3 each: at the threshold, not above it
    (1, [20, 0, 39, 19], [0.0, 3.0, 0.0]),  # 5: p = (.045, .909, .045)
    (1, [0, 20, 19, 39], [0.0, 0.0, 2.0]),  # 6: p = (.107, .107, .787)
    (1, [20, 20, 39, 39], [0.0, 1.0, 1.3]),  # 7: p = (.135, .368, .497)
    (1, [25, 25, 54, 54], [0.0, -1.0, 1.5]),  # 8: p = (.171, .063, .766)
    (1, [0, 0, 19, 19], [0.0, 0.5, 0.0]),  # 9: p = (.274, .452, .274)
    (2, [0, 0, 9, 9], [5.0, 0.0, 0.0]),  # 10: background
]
DELTAS = {
    (0, 1): [0.1, 0.0, 0.0, 0.0],  # raw dx 0.01 x 20: (10.2, 10, 29.2, 29)
    (0, 2): [0.0, 0.0, 5 * math.log(2.0), 0.0],  # raw dw log 2: width 40 about centre 20: (0, 10, 39, 29)
    (1, 0): [3.0, 3.0, 1.0, 1.0],  # background deltas: never used
    (1, 1): [0.5, 0.0, 0.0, 5 * math.log(1.1)],  # raw (0.05, 0, 0, log 1.1): centre (23, 20), 20 x 22: (13, 9, 32, 30)
    (1, 2): [-3.0, 2.0, 1.0, 1.0],
    (3, 2): [0.0, -0.5, 0.0, 0.0],  # raw dy -0.05 x 20: (14, 11, 33, 30)
}
# Candidates (score > 1/3) and per-class NMS at 0.3 (inclusive IoU):
# image 0, class 1: RoI 1 (13, 9, 32, 30) .859 suppresses RoI 0 (10.2, 10, 29.2, 29) .574 (IoU 344 / 496 = 0.69)
#   and RoI 3 (14, 12, 33, 31) .386 (IoU 361 / 479 = 0.75).
# image 0, class 2: RoI 2 (50, 40, 89, 59) clipped to (50, 40, 79, 59) .576; RoI 3 (14, 11, 33, 30) .472; RoI 0
#   (0, 10, 39, 29) .348 is suppressed by RoI 3 (IoU 380 / 820 = 0.46: it would survive NMS at 0.5). RoI 3's
#   class-2 box overlaps RoI 1's class-1 box (IoU 0.68): different classes do not suppress each other.
#   RoI 4 scores exactly the threshold in both classes: no candidate (it would be a 4th and 5th detection).
# image 1: class 1 RoI 5 .909, RoI 9 .452, RoI 7 .368 (disjoint); class 2 RoI 6 .787, RoI 8 clipped to
#   (25, 25, 39, 39) .766, RoI 7 (20, 20, 39, 39) .497 suppressed by RoI 8 (IoU 225 / 400 = 0.56; unclipped
#   it would be 225 / 1075 = 0.21 and survive). Five survivors, the cap of 4 drops the worst, RoI 7 class 1.
# image 2: nothing.
EXPECTED = [
    [(1, 1, [13.0, 9.0, 32.0, 30.0]), (2, 2, [50.0, 40.0, 79.0, 59.0]), (3, 2, [14.0, 11.0, 33.0, 30.0])],
    [
        (5, 1, [20.0, 0.0, 39.0, 19.0]),
        (6, 2, [0.0, 20.0, 19.0, 39.0]),
        (8, 2, [25.0, 25.0, 39.0, 39.0]),
        (9, 1, [0.0, 0.0, 19.0, 19.0]),
    ],
    [],
]


def test_detect_hand_case():
    threshold = float(torch.tensor(1.0 / 3))  # float32(1/3): what softmax gives for equal logits
    heads = make_heads(num_classes=3, detection=DetectionSettings(threshold, 0.3, 4))
    rois = torch.tensor([[i, *box] for i, box, _ in ROIS], dtype=torch.float32)
    logits = torch.tensor([z for _, _, z in ROIS])
    deltas = torch.zeros(len(ROIS), 3, 4)
    for (r, c), d in DELTAS.items():
        deltas[r, c] = torch.tensor(d)
    sizes = torch.tensor([[60, 80], [40, 40], [30, 30]])
    out = heads._detect(logits, deltas.view(len(ROIS), 12), rois, sizes, 3)
    assert len(out) == 3
    for det, expected in zip(out, EXPECTED):
        assert det["boxes"].shape == (len(expected), 4)
        assert det["labels"].tolist() == [c for _, c, _ in expected]
        assert torch.allclose(det["boxes"], torch.tensor([b for _, _, b in expected]).view(-1, 4), atol=1e-4)
        scores = [softmax(ROIS[r][2])[c] for r, c, _ in expected]
        assert torch.allclose(det["scores"], torch.tensor(scores), atol=1e-6)


def test_detect_class_agnostic_uses_one_box_for_every_class():
    # One RoI (10, 10, 29, 29), deltas (R, 4) raw (0.05, 0, 0, log 1.1): centre (21, 20), 20 x 22 ->
    # (11, 9, 30, 30) for both classes; p = softmax(0, 1, 1) = (.155, .422, .422), both above 0.05.
    heads = make_heads(num_classes=3, class_agnostic=True, detection=DetectionSettings(0.05, 0.3, 100))
    deltas = torch.tensor([[0.5, 0.0, 0.0, 5 * math.log(1.1)]])
    out = heads._detect(
        torch.tensor([[0.0, 1.0, 1.0]]), deltas, torch.tensor([[0.0, 10, 10, 29, 29]]), torch.tensor([[60, 80]]), 1
    )
    assert sorted(out[0]["labels"].tolist()) == [1, 2]
    assert torch.allclose(out[0]["boxes"], torch.tensor([[11.0, 9.0, 30.0, 30.0]] * 2), atol=1e-4)
    assert torch.allclose(out[0]["scores"], torch.tensor(softmax([0.0, 1.0, 1.0])[1:]), atol=1e-6)


@pytest.mark.parametrize("max_per_image", [4, 100])
def test_detect_one_equals_detect_for_one_image(max_per_image):
    """The one-image path (the one ONNX export traces) gives _detect's detections, in its order."""
    torch.manual_seed(0)
    heads = make_heads(num_classes=3, detection=DetectionSettings(0.2, 0.3, max_per_image)).eval()
    features = [torch.randn(1, 4, 4, 5)]
    proposals = torch.tensor([[0.0, 0, 30, 30], [10, 10, 50, 40], [12, 8, 52, 44], [40, 20, 79, 63], [5, 30, 35, 63]])
    sizes = torch.tensor([[64, 80]])
    with torch.no_grad():
        heads.predictor.cls_score.weight.normal_(std=2.0)
        boxes, scores, labels = heads.detect_one(features, proposals, sizes)
        _, expected = heads(features, proposals[None], torch.ones(1, 5, dtype=torch.bool), sizes)
    assert 0 < len(scores) <= max_per_image and torch.equal(labels, expected[0]["labels"])
    assert torch.equal(boxes, expected[0]["boxes"]) and torch.equal(scores, expected[0]["scores"])
