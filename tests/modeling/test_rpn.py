import torch

from frcnn.modeling.anchors import AnchorGenerator
from frcnn.modeling.rpn import AnchorTargetSettings, ProposalSettings, RegionProposalNetwork, RPNHead


def make_rpn(**targets) -> RegionProposalNetwork:
    gen = AnchorGenerator(stride=16, scales=(2,), ratios=(1,))  # one 32 x 32 anchor per cell
    settings = ProposalSettings(pre_nms_top_n=100, post_nms_top_n=10, nms_thresh=0.7, min_size=0)
    return RegionProposalNetwork(RPNHead(4, 8, 1), gen, settings, settings, AnchorTargetSettings(**targets))


def test_anchor_labels_hand_case():
    rpn = make_rpn()
    anchors = rpn.anchor_generator(4, 4)  # cell (y, x) has anchor (16x - 8, 16y - 8, 16x + 23, 16y + 23)
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
    anchors = rpn.anchor_generator(4, 4)
    gt = torch.tensor([[[26.0, 26.0, 45.0, 45.0]]])  # 20 x 20 inside the (2, 2) anchor: IoU 400 / 1024 < 0.7
    labels, _ = rpn._anchor_labels(anchors, torch.tensor([[64, 64]]), gt, torch.tensor([[True]]))
    assert labels.view(4, 4)[2, 2] == 1


def test_image_without_boxes_is_all_background():
    rpn = make_rpn()
    anchors = rpn.anchor_generator(4, 4)
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
