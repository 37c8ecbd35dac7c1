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
    anchors = gen([(2, 3)], (0, 0))[0]
    assert anchors.shape == (2 * 3 * a, 4)
    base = gen.base_anchors
    for y in range(2):
        for x in range(3):
            for k in range(a):
                shift = torch.tensor([16.0 * x, 16.0 * y, 16.0 * x, 16.0 * y])
                assert torch.equal(anchors[(y * 3 + x) * a + k], base[k] + shift)


def test_grid_anchor_at_a_hand_computed_cell_of_a_non_square_map():
    # 3 rows x 5 columns, stride 16, ratios (0.5, 1, 2) x scale 8: A = 3, M = 3 * 5 * 3 = 45.
    gen = AnchorGenerator(stride=16, scales=(8,), ratios=(0.5, 1, 2))
    anchors = gen([(3, 5)], (0, 0))[0]
    assert anchors.shape == (45, 4)
    # Ratio 1, scale 8: a 128 x 128 box centred on 7.5 -> (7.5 - 63.5, ..., 7.5 + 63.5) = (-56, -56, 71, 71).
    # Cell (y=2, x=4) shifts it by (16 * 4, 16 * 2) = (64, 32): (8, -24, 135, 103); index (2 * 5 + 4) * 3 + 1 = 43.
    assert anchors[43].tolist() == [8.0, -24.0, 135.0, 103.0]
    # Cell (y=0, x=4), ratio 0.5 (23 -> 184 wide, 12 -> 96 high): (-84, -40, 99, 55) + (64, 0): index 4 * 3 + 0 = 12.
    assert anchors[12].tolist() == [-20.0, -40.0, 163.0, 55.0]
    # Cell (y=2, x=0), ratio 2 (11 -> 88 wide, 22 -> 176 high): (-36, -80, 51, 95) + (0, 32): index 10 * 3 + 2 = 32.
    assert anchors[32].tolist() == [-36.0, -48.0, 51.0, 127.0]


def test_base_anchor_of_another_stride_is_centred_on_its_cell():
    # base 8: centre (8 - 1) / 2 = 3.5; ratio 1 keeps 8 x 8, scale 2 makes it 16 x 16: 3.5 -/+ 7.5.
    assert generate_base_anchors(8, (1,), (2,)).tolist() == [[-4.0, -4.0, 11.0, 11.0]]
    gen = AnchorGenerator(stride=8, scales=(2,), ratios=(1,))
    assert gen.num_anchors == 1
    # a 2 x 3 map: cell (y=1, x=2) is index 1 * 3 + 2 = 5, shifted by (16, 8)
    assert gen([(2, 3)], (0, 0))[0][5].tolist() == [12.0, 4.0, 27.0, 19.0]


def test_base_anchor_sides_round_half_to_even():
    # base 18, ratio 0.5: width round(sqrt(324 / 0.5)) = round(25.46) = 25, height round(25 * 0.5) = round(12.5)
    # = 12 (half to even, as numpy in py-faster-rcnn; half up would give 13). Centre 8.5: x 8.5 -/+ 12,
    # y 8.5 -/+ 5.5.
    assert generate_base_anchors(18, (0.5,), (1,)).tolist() == [[-3.5, 3.0, 20.5, 14.0]]
