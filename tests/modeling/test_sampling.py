import torch

from frcnn.modeling.sampling import IgnoreRegions, ignore_background, match, per_image_weights, sample_balanced


def test_balanced_sampling_respects_quota_and_labels():
    labels = torch.full((2, 200), -1.0)
    labels[0, :10] = 1
    labels[0, 10:110] = 0
    labels[1, :3] = 1
    labels[1, 50:150] = 0
    fg, bg = sample_balanced(labels, batch_size_per_image=32, positive_fraction=0.25)
    assert fg.sum(1).tolist() == [8, 3]  # quota 8; the second image has only 3
    assert bg.sum(1).tolist() == [24, 29]  # the rest of 32 is background
    assert (labels[fg] == 1).all() and (labels[bg] == 0).all()
    assert not (fg & bg).any()


def test_per_image_seeds_make_choices_independent_of_the_batch():
    labels = torch.zeros(3, 1000)
    together = sample_balanced(labels, 16, 0.5, seeds=[1, 2, 3])[1]
    alone = sample_balanced(labels[:1], 16, 0.5, seeds=[2])[1]
    assert torch.equal(together[1], alone[0])  # image 2's choice does not depend on its neighbours
    assert not torch.equal(together[0], together[1])
    assert together.sum(1).tolist() == [16, 16, 16]


def test_per_image_weights_average_images():
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    w = per_image_weights(mask)
    assert torch.allclose(w, torch.tensor([[0.25, 0.25, 0, 0], [0.5, 0, 0, 0]]))


def test_match_ignores_padded_ground_truth():
    candidates = torch.tensor([[0.0, 0.0, 9.0, 9.0], [20.0, 20.0, 29.0, 29.0]])
    gt = torch.tensor([[[20.0, 20.0, 29.0, 29.0], [0.0, 0.0, 9.0, 9.0]]])
    best, _ = match(candidates, gt, torch.tensor([[True, False]]))
    assert best.iou.tolist() == [[0.0, 1.0]]
    assert best.gt_index[0, 1].item() == 0
    best, _ = match(candidates, gt[:, :0], torch.zeros(1, 0, dtype=torch.bool))
    assert best.iou.tolist() == [[-1.0, -1.0]]


def test_ignore_background_unsets_background_over_a_region_only():
    # c1 (20, 20, 29, 29) lies inside the region (20, 20, 29, 39): IoU 100 / 200 = 0.5 exactly.
    candidates = torch.tensor([[0.0, 0.0, 9.0, 9.0], [20.0, 20.0, 29.0, 29.0], [40.0, 40.0, 49.0, 49.0]])
    labels = torch.tensor([[0.0, 0.0, 1.0]])
    regions = IgnoreRegions(
        torch.tensor([[[20.0, 20.0, 29.0, 39.0], [40.0, 40.0, 49.0, 49.0], [0.0, 0.0, 9.0, 9.0]]]),
        torch.tensor([[True, True, False]]),  # the third is padding: c0 stays background
    )
    assert ignore_background(labels, candidates, regions, 0.5).tolist() == [[0.0, -1.0, 1.0]]  # foreground stays
    assert ignore_background(labels, candidates, regions, 0.51).tolist() == [[0.0, 0.0, 1.0]]
    assert ignore_background(labels, candidates, None, 0.5) is labels
