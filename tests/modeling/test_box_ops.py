import torch

from frcnn.modeling import box_ops


def test_iou_inclusive_convention():
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    b = torch.tensor([[5.0, 5.0, 14.0, 14.0], [10.0, 10.0, 20.0, 20.0], [0.0, 0.0, 9.0, 9.0]])
    iou = box_ops.box_iou(a, b)
    assert torch.allclose(iou, torch.tensor([[25.0 / 175.0, 0.0, 1.0]]))


def test_iou_broadcasts_over_batches():
    a = torch.rand(3, 5, 2) * 50
    a = torch.cat((a, a + 10), -1)
    b = torch.rand(3, 4, 2) * 50
    b = torch.cat((b, b + 20), -1)
    batched = box_ops.box_iou(a, b)
    assert batched.shape == (3, 5, 4)
    for i in range(3):
        assert torch.allclose(batched[i], box_ops.box_iou(a[i], b[i]))


def test_nms_uses_inclusive_iou():
    # Inclusive IoU 50/150 = 0.333 > 0.3: suppressed. Treated as exclusive it would be 0.286: kept.
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 5.0, 9.0, 14.0]])
    keep = box_ops.batched_nms(boxes, torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.long), 0.3)
    assert keep.tolist() == [0]
    keep_other_group = box_ops.batched_nms(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.3)
    assert sorted(keep_other_group.tolist()) == [0, 1]


def test_clip_boxes_per_image():
    boxes = torch.tensor([[[-5.0, -5.0, 100.0, 100.0]], [[-5.0, -5.0, 100.0, 100.0]]])
    clipped = box_ops.clip_boxes(boxes, torch.tensor([[50, 60], [20, 30]]))
    assert clipped.tolist() == [[[0.0, 0.0, 59.0, 49.0]], [[0.0, 0.0, 29.0, 19.0]]]


def test_top_per_group():
    groups = torch.tensor([1, 0, 1, 0, 1, 2])
    scores = torch.tensor([0.1, 0.9, 0.8, 0.3, 0.5, 0.2])
    keep = box_ops.top_per_group(groups, scores, num_groups=3, k=2)
    assert keep.tolist() == [1, 3, 2, 4, 5]
