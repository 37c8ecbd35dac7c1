import math

import pytest
import torch
from torchvision.ops import box_iou

from frcnn.modeling.anchors import AnchorGenerator
from frcnn.modeling.rpn import AnchorTargetSettings, ProposalSettings, RegionProposalNetwork, RPNHead, ScoredAnchors
from frcnn.modeling.sampling import IgnoreRegions


def make_rpn(**targets) -> RegionProposalNetwork:
    gen = AnchorGenerator(stride=16, scales=(2,), ratios=(1,))  # one 32 x 32 anchor per cell
    settings = ProposalSettings(pre_nms_top_n=100, post_nms_top_n=10, nms_thresh=0.7, min_size=0)
    return RegionProposalNetwork(RPNHead(4, 8, 1), gen, settings, settings, AnchorTargetSettings(**targets))


def test_anchor_labels_hand_case():
    rpn = make_rpn()
    anchors = rpn.anchor_generator([(4, 4)], (64, 64))[
        0
    ]  # cell (y, x) has anchor (16x - 8, 16y - 8, 16x + 23, 16y + 23)
    gt = torch.tensor([[[24.0, 24.0, 55.0, 55.0]]])  # exactly the anchor of cell (2, 2)
    labels, matched = rpn._anchor_labels(anchors, torch.tensor([[64, 64]]), gt, torch.tensor([[True]]))
    labels = labels.view(4, 4)
    # Only cells (1..2, 1..2) have anchors inside the 64 x 64 image; the others are ignored (-1).
    assert labels[2, 2] == 1
    assert labels[1, 1] == 0  # IoU 256 / 1792 = 0.14 < 0.3: background
    assert labels[1, 2] == -1 and labels[2, 1] == -1  # IoU 512 / 1536 = 0.33, between 0.3 and 0.7: ignored
    assert (labels[0] == -1).all() and (labels[:, 3] == -1).all()
    assert torch.equal(matched[0, 2 * 4 + 2], gt[0, 0])


def test_best_anchor_is_foreground_below_threshold():
    rpn = make_rpn()
    anchors = rpn.anchor_generator([(4, 4)], (64, 64))[0]
    gt = torch.tensor([[[26.0, 26.0, 45.0, 45.0]]])  # 20 x 20 inside the (2, 2) anchor: IoU 400 / 1024 < 0.7
    labels, _ = rpn._anchor_labels(anchors, torch.tensor([[64, 64]]), gt, torch.tensor([[True]]))
    assert labels.view(4, 4)[2, 2] == 1


def test_image_without_boxes_is_all_background():
    rpn = make_rpn()
    anchors = rpn.anchor_generator([(4, 4)], (64, 64))[0]
    # as pad_targets gives it: one padded, invalid box
    labels, _ = rpn._anchor_labels(
        anchors, torch.tensor([[64, 64]]), torch.zeros(1, 1, 4), torch.zeros(1, 1, dtype=torch.bool)
    )
    inside = labels >= 0
    assert inside.sum() == 4 and (labels[inside] == 0).all()


def test_proposals_stay_inside_each_image_and_are_capped():
    torch.manual_seed(0)
    rpn = make_rpn().eval()
    features = torch.randn(2, 4, 6, 8)
    sizes = torch.tensor([[96, 128], [50, 70]])
    proposals, valid, losses = rpn(features, sizes, torch.ones(2))
    assert losses == {}
    assert proposals.shape[1] <= 10 and valid.any(1).all()
    for i, (h, w) in enumerate(sizes.tolist()):
        p = proposals[i][valid[i]]
        assert (p[:, 0] >= 0).all() and (p[:, 2] <= w - 1).all() and (p[:, 3] <= h - 1).all()


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def smooth_l1(x: float, beta: float) -> float:
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def hand_case():
    """The RPN, anchors, image sizes, ground truth and head outputs of the losses' hand case."""
    # 4 x 4 map of one 32 x 32 anchor per cell: cell (y, x) = anchor y * 4 + x = (16x - 8, 16y - 8, 16x + 23, 16y + 23).
    # In a 64 x 64 image only anchors 5 (8, 8, 39, 39), 6 (24, 8, 55, 39), 9 (8, 24, 39, 55) and
    # 10 (24, 24, 55, 55) lie inside. 256 per image, half foreground: every labelled anchor is sampled.
    rpn = make_rpn(batch_size_per_image=256)
    anchors = rpn.anchor_generator([(4, 4)], (64, 64))[0]
    sizes = torch.tensor([[64, 64], [64, 64]])
    # Image 0, gt (20, 24, 55, 55) (36 x 32, centre (38, 40)), IoU (intersection / union):
    #   a10 1024 / 1152 = 0.89 fg, a5 320 / 1856 = 0.17 bg, a6 512 / 1664 = 0.31 and a9 640 / 1536 = 0.42 ignored.
    # Image 1, gt (8, 12, 39, 43) (32 x 32, centre (24, 28)):
    #   a5 896 / 1152 = 0.78 fg, a6 448 / 1600 = 0.28 bg, a10 320 / 1728 = 0.19 bg, a9 640 / 1408 = 0.45 ignored.
    gt = torch.tensor([[[20.0, 24.0, 55.0, 55.0]], [[8.0, 12.0, 39.0, 43.0]]])
    valid = torch.ones(2, 1, dtype=torch.bool)
    # Unsampled anchors get extreme logits and deltas: counting them would change both losses.
    logits = torch.full((2, 16), 7.0)
    logits[0, [10, 5]] = torch.tensor([1.0, -0.5])
    logits[1, [5, 6, 10]] = torch.tensor([2.0, 0.0, 1.5])
    deltas = torch.full((2, 16, 4), 5.0)
    deltas[0, 10] = torch.tensor([0.0, 0.05, 0.3, -0.5])
    deltas[1, 5] = torch.tensor([0.1, 0.125, -0.2, 0.0])
    deltas[0, 5] = deltas[1, 6] = deltas[1, 10] = torch.tensor([-3.0, 2.0, 1.0, 4.0])  # background: no box loss
    return rpn, anchors, sizes, gt, valid, logits, deltas


def hand_case_box_losses() -> tuple[float, float]:
    """Each image's box loss summed over its one foreground anchor (before the sampling weights)."""
    # Targets (no normalisation), anchors 32 x 32: image 0 a10 centre (40, 40) -> gt centre (38, 40), 36 x 32:
    # (-2 / 32, 0, log(36 / 32), 0). Image 1 a5 centre (24, 24) -> (24, 28), 32 x 32: (0, 4 / 32, 0, 0).
    # Smooth L1 with beta = 1 / sigma^2 = 1 / 9 on (delta - target), summed over the 4 coordinates.
    beta = 1.0 / 9
    t0 = [-2 / 32, 0.0, math.log(36 / 32), 0.0]
    t1 = [0.0, 4 / 32, 0.0, 0.0]
    box0 = sum(smooth_l1(d - t, beta) for d, t in zip([0.0, 0.05, 0.3, -0.5], t0))
    box1 = sum(smooth_l1(d - t, beta) for d, t in zip([0.1, 0.125, -0.2, 0.0], t1))
    return box0, box1


def test_losses_hand_case_every_labelled_anchor_sampled():
    rpn, anchors, sizes, gt, valid, logits, deltas = hand_case()
    exclusive = torch.tensor([0.0, 0.0, 1.0, 1.0])  # torchvision's box_iou wants exclusive (x2, y2)
    iou = box_iou(anchors[[5, 6, 9, 10]] + exclusive, gt[:, 0] + exclusive).T
    assert torch.allclose(
        iou,
        torch.tensor(
            [[320 / 1856, 512 / 1664, 640 / 1536, 1024 / 1152], [896 / 1152, 448 / 1600, 640 / 1408, 320 / 1728]]
        ),
    )
    labels, _ = rpn._anchor_labels(anchors, sizes, gt, valid)
    expected_labels = torch.full((2, 16), -1.0)
    expected_labels[0, [10, 5]] = torch.tensor([1.0, 0.0])
    expected_labels[1, [5, 6, 10]] = torch.tensor([1.0, 0.0, 0.0])
    assert torch.equal(labels, expected_labels)

    losses = rpn._losses(logits, deltas, anchors, sizes, gt, valid, None)
    # Binary cross entropy: -log sigmoid(z) = softplus(-z) for foreground, softplus(z) for background;
    # each image's mean over its sampled anchors (2 and 3), then the mean over the 2 images.
    cls = (softplus(-1.0) + softplus(-0.5)) / (2 * 2) + (softplus(-2.0) + softplus(0.0) + softplus(1.5)) / (3 * 2)
    assert losses["rpn_cls"].item() == pytest.approx(cls, rel=1e-6)
    box0, box1 = hand_case_box_losses()
    assert losses["rpn_box"].item() == pytest.approx(box0 / (2 * 2) + box1 / (3 * 2), rel=1e-5)


def test_an_ignore_region_takes_its_background_anchors_out_of_the_losses():
    rpn, anchors, sizes, gt, valid, logits, deltas = hand_case()
    # Image 0's region is its background anchor a5 (IoU 1). Image 1's (8, 24, 55, 55), 48 x 32, holds a9
    # (already neither) and a10 (IoU 1024 / 1536 = 0.67: no longer background); a6 stays background
    # (512 / 2048 = 0.25 < 0.3) and a5 foreground.
    regions = IgnoreRegions(
        torch.tensor([[[8.0, 8.0, 39.0, 39.0]], [[8.0, 24.0, 55.0, 55.0]]]), torch.ones(2, 1, dtype=torch.bool)
    )
    losses = rpn._losses(logits, deltas, anchors, sizes, gt, valid, None, regions)
    cls = softplus(-1.0) / (1 * 2) + (softplus(-2.0) + softplus(0.0)) / (2 * 2)
    assert losses["rpn_cls"].item() == pytest.approx(cls, rel=1e-6)
    box0, box1 = hand_case_box_losses()
    assert losses["rpn_box"].item() == pytest.approx(box0 / (1 * 2) + box1 / (2 * 2), rel=1e-5)


def test_box_loss_beta_follows_sigma():
    # sigma 1: beta 1, so |0.5| < beta falls in the quadratic part: 0.5 * 0.5^2 = 0.125.
    rpn = make_rpn(batch_size_per_image=256)
    rpn.sigma = 1.0
    anchors = rpn.anchor_generator([(4, 4)], (64, 64))[0]
    gt = torch.tensor([[[24.0, 24.0, 55.0, 55.0]]])  # exactly anchor 10: target 0; anchor 5 background
    deltas = torch.zeros(1, 16, 4)
    deltas[0, 10, 0] = 0.5
    losses = rpn._losses(
        torch.zeros(1, 16), deltas, anchors, torch.tensor([[64, 64]]), gt, torch.ones(1, 1, dtype=torch.bool), None
    )
    assert losses["rpn_box"].item() == pytest.approx(0.125 / 2)  # 2 sampled anchors (10 fg, 5 bg)
    assert losses["rpn_cls"].item() == pytest.approx(math.log(2.0))  # logit 0: log 2 for either label


def test_proposals_hand_case():
    # Six anchors shared by two images (zero deltas decode to the anchor itself):
    anchors = torch.tensor(
        [
            [0.0, 0.0, 19.0, 19.0],  # A0
            [2.0, 0.0, 21.0, 19.0],  # A1: IoU with A0 360 / 440 = 0.82
            [30.0, 30.0, 69.0, 49.0],  # A2: 40 x 20, crosses the right edge of both images
            [40.0, 0.0, 44.0, 19.0],  # A3: 5 wide
            [0.0, 4.0, 19.0, 23.0],  # A4
            [10.0, 10.0, 29.0, 29.0],  # A5
        ]
    )
    sizes = torch.tensor([[50, 60], [40, 40]])  # (h, w)
    scales = torch.tensor([1.0, 2.0])  # min size 8 pixels times the scale: 8 and 16
    in_image = torch.ones(2, 6, dtype=torch.bool)
    in_image[1, 1] = False  # A1 is centred in image 1's padding: never a proposal there
    logits = torch.tensor([[3.0, 4.0, 2.0, 5.0, 1.0, 0.5], [1.0, 9.0, 3.0, 2.0, 4.0, 2.5]])
    deltas = torch.zeros(2, 6, 4)
    deltas[0, 4] = torch.tensor([-0.25, 0.0, 0.0, 0.0])  # centre x 10 - 5: (-5, 4, 14, 23), clipped to (0, 4, 14, 23)
    deltas[1, 0] = torch.tensor([0.25, 0.0, 0.0, 0.0])  # centre x 10 + 5: (5, 0, 24, 19)
    # Image 0: the 5 best are A3 5, A1 4, A0 3, A2 2, A4 1 (A5 0.5 is cut before NMS, though it would survive it).
    #   A2 is clipped to (30, 30, 59, 49); A3 (5 wide) is under 8; NMS 0.7: A1 suppresses A0 (0.82),
    #   keeps A4' (IoU with A1 208 / 492 = 0.42). Left, by score: A1, A2', A4'.
    # Image 1: A1 is masked; the 5 best are A4 4, A2 3, A5 2.5, A3 2, A0' 1. Clipped to 40 x 40, A2 is
    #   (30, 30, 39, 39), 10 < 16 (it would pass unscaled, or unclipped); A3 is under 16. NMS keeps
    #   A4, A5 (IoU 140 / 660 = 0.21) and A0' (IoU with A4 240 / 560 = 0.43, with A5 150 / 650 = 0.23).
    rpn = make_rpn()
    settings = ProposalSettings(pre_nms_top_n=5, post_nms_top_n=10, nms_thresh=0.7, min_size=8)
    scored = ScoredAnchors(logits, deltas, anchors, in_image, [len(anchors)])
    proposals, valid = rpn._proposals(scored, sizes, scales, settings)
    assert proposals.shape == (2, 5, 4)  # min(post_nms_top_n, pre_nms_top_n) slots
    assert valid.tolist() == [[True, True, True, False, False]] * 2
    assert proposals[0, :3].tolist() == [[2.0, 0.0, 21.0, 19.0], [30.0, 30.0, 59.0, 49.0], [0.0, 4.0, 14.0, 23.0]]
    assert proposals[1, :3].tolist() == [[0.0, 4.0, 19.0, 23.0], [10.0, 10.0, 29.0, 29.0], [5.0, 0.0, 24.0, 19.0]]
    assert (proposals[~valid] == 0).all()
    # post_nms_top_n = 2 keeps the 2 best that survived NMS (capping before NMS would leave image 0 A1 alone).
    settings.post_nms_top_n = 2
    proposals, valid = rpn._proposals(scored, sizes, scales, settings)
    assert valid.all() and proposals.shape == (2, 2, 4)
    assert proposals[0].tolist() == [[2.0, 0.0, 21.0, 19.0], [30.0, 30.0, 59.0, 49.0]]
    assert proposals[1].tolist() == [[0.0, 4.0, 19.0, 23.0], [10.0, 10.0, 29.0, 29.0]]


@pytest.mark.parametrize("size", [(96, 128), (50, 70), (16, 16)])
def test_propose_one_gives_forwards_valid_proposals_in_order(size):
    """The one-image path (the one ONNX export traces) equals forward on a batch of one image,
    with more anchors than pre_nms_top_n (96 x 128: 48) and fewer (16 x 16: 1)."""
    torch.manual_seed(1)
    rpn = make_rpn().eval()
    h, w = size
    features = torch.randn(1, 4, -(-h // 16), -(-w // 16))
    sizes, scales = torch.tensor([[h, w]]), torch.ones(1)
    proposals, valid, _ = rpn(features, sizes, scales)
    one = rpn.propose_one([features], sizes, scales, input_size=tuple(x * 16 for x in features.shape[-2:]))
    assert one.shape[0] == int(valid.sum()) > 0 and torch.equal(one, proposals[0][valid[0]])
