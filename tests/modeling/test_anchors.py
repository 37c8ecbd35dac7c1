import torch

from frcnn.modeling.anchors import AnchorGenerator, generate_base_anchors

# The original's 9 anchors for base size 16, ratios (0.5, 1, 2) x scales (8, 16, 32).
CANONICAL = [
    (-84, -40, 99, 55),
    (-176, -88, 191, 103),
    (-360, -184, 375, 199),
    (-56, -56, 71, 71),
    (-120, -120, 135, 135),
    (-248, -248, 263, 263),
    (-36, -80, 51, 95),
    (-80, -168, 95, 183),
    (-168, -344, 183, 359),
]


def test_nine_canonical_anchors():
    anchors = generate_base_anchors(16, (0.5, 1, 2), (8, 16, 32))
    assert anchors.tolist() == [list(map(float, a)) for a in CANONICAL]


def test_anchor_sizes_keep_area_and_ratio():
    anchors = generate_base_anchors(16, (1,), (2, 4))
    widths = anchors[:, 2] - anchors[:, 0] + 1
    assert widths.tolist() == [32.0, 64.0]
    assert torch.equal(anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1])


def test_grid_order_is_y_x_anchor():
    gen = AnchorGenerator(stride=16, scales=(8, 16), ratios=(0.5, 1, 2))
    a = gen.num_anchors
    anchors = gen(2, 3)
    assert anchors.shape == (2 * 3 * a, 4)
    base = gen.base_anchors
    for y in range(2):
        for x in range(3):
            for k in range(a):
                shift = torch.tensor([16.0 * x, 16.0 * y, 16.0 * x, 16.0 * y])
                assert torch.equal(anchors[(y * 3 + x) * a + k], base[k] + shift)
