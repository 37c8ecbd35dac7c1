import math

import pytest
import torch

from frcnn.modeling.box_coder import DEFAULT_SCALE_CLAMP, BoxCoder


def test_hand_computed_deltas():
    ref = torch.tensor([[0.0, 0.0, 9.0, 9.0]])  # 10 x 10, centre (5, 5)
    boxes = torch.tensor([[5.0, 0.0, 14.0, 9.0], [0.0, 0.0, 19.0, 19.0]])
    deltas = BoxCoder().encode(boxes, ref)
    expected = torch.tensor([[0.5, 0.0, 0.0, 0.0], [0.5, 0.5, math.log(2.0), math.log(2.0)]])
    assert torch.allclose(deltas, expected, atol=1e-6)


def test_normalisation_divides_by_stds():
    coder = BoxCoder(means=(0, 0, 0, 0), stds=(0.1, 0.1, 0.2, 0.2))
    ref = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    box = torch.tensor([[0.0, 0.0, 19.0, 19.0]])
    assert torch.allclose(
        coder.encode(box, ref), torch.tensor([[5.0, 5.0, 5 * math.log(2.0), 5 * math.log(2.0)]]), atol=1e-5
    )


@pytest.mark.parametrize("stds", [(1, 1, 1, 1), (0.1, 0.1, 0.2, 0.2)])
def test_decode_inverts_encode(stds):
    g = torch.Generator().manual_seed(0)
    # sizes 8..300 keep every log size ratio inside decode's clamp, log(1000 / 16)
    xy = torch.rand(500, 2, generator=g) * 500
    refs = torch.cat((xy, xy + torch.rand(500, 2, generator=g) * 292 + 7), dim=1)
    xy = torch.rand(500, 2, generator=g) * 500
    boxes = torch.cat((xy, xy + torch.rand(500, 2, generator=g) * 292 + 7), dim=1)
    coder = BoxCoder(stds=stds)
    assert torch.allclose(coder.decode(coder.encode(boxes, refs), refs), boxes, atol=2e-3)


def test_half_precision_inputs_compute_in_float32():
    refs = torch.tensor([[0.0, 0.0, 99.0, 49.0]])
    deltas = torch.tensor([[0.1, -0.2, 0.3, 0.1]], dtype=torch.bfloat16)
    out = BoxCoder().decode(deltas, refs)
    assert out.dtype == torch.float32


def test_decode_clamps_huge_scales():
    refs = torch.tensor([[0.0, 0.0, 15.0, 15.0]])
    out = BoxCoder().decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), refs)
    assert torch.isfinite(out).all()
    assert (out[0, 2] - out[0, 0] + 1).item() == pytest.approx(1000.0, rel=1e-4)  # 16 * exp(log(1000/16))


# Reference (10, 20, 29, 59): w = 20, h = 40, centre (10 + 10, 20 + 20) = (20, 40).
REF = [10.0, 20.0, 29.0, 59.0]


def test_encode_hand_case_with_and_without_stds():
    ref = torch.tensor([[0.0, 0.0, 9.0, 9.0], REF])
    # (0, 0, 9, 9): w = h = 10, centre (5, 5). (5, 5, 24, 14): w = 20, h = 10, centre (15, 10):
    #   dx = (15 - 5) / 10 = 1, dy = (10 - 5) / 10 = 0.5, dw = log(20 / 10), dh = log(10 / 10) = 0.
    # REF vs (0, 0, 9, 79): w = 10, h = 80, centre (5, 40):
    #   dx = (5 - 20) / 20 = -0.75, dy = 0, dw = log(10 / 20), dh = log(80 / 40).
    boxes = torch.tensor([[5.0, 5.0, 24.0, 14.0], [0.0, 0.0, 9.0, 79.0]])
    raw = [[1.0, 0.5, math.log(2.0), 0.0], [-0.75, 0.0, math.log(0.5), math.log(2.0)]]
    assert torch.allclose(BoxCoder().encode(boxes, ref), torch.tensor(raw), atol=1e-6)
    # normalised: divided by (0.1, 0.1, 0.2, 0.2)
    normalised = [[10.0, 5.0, 5 * math.log(2.0), 0.0], [-7.5, 0.0, 5 * math.log(0.5), 5 * math.log(2.0)]]
    coder = BoxCoder(stds=(0.1, 0.1, 0.2, 0.2))
    assert torch.allclose(coder.encode(boxes, ref), torch.tensor(normalised), atol=1e-5)
    # means are subtracted before dividing: (1 - 0.5) / 0.1 = 5, (0.5 - 0) / 0.1, (log 2 - 0.1) / 0.2, (0 + 0.2) / 0.2
    coder = BoxCoder(means=(0.5, 0.0, 0.1, -0.2), stds=(0.1, 0.1, 0.2, 0.2))
    expected = [5.0, 5.0, (math.log(2.0) - 0.1) / 0.2, 1.0]
    assert torch.allclose(coder.encode(boxes[:1], ref[:1]), torch.tensor([expected]), atol=1e-5)


def test_decode_hand_case_with_and_without_stds():
    ref = torch.tensor([REF])
    # raw (0.5, -0.25, log 2, log 0.5): centre (0.5 * 20 + 20, -0.25 * 40 + 40) = (30, 30), w = 40, h = 20
    # -> (30 - 20, 30 - 10, 30 + 20 - 1, 30 + 10 - 1) = (10, 20, 49, 39)
    expected = torch.tensor([[10.0, 20.0, 49.0, 39.0]])
    raw = torch.tensor([[0.5, -0.25, math.log(2.0), math.log(0.5)]])
    assert torch.allclose(BoxCoder().decode(raw, ref), expected, atol=1e-4)
    coder = BoxCoder(stds=(0.1, 0.1, 0.2, 0.2))
    normalised = torch.tensor([[5.0, -2.5, 5 * math.log(2.0), 5 * math.log(0.5)]])
    assert torch.allclose(coder.decode(normalised, ref), expected, atol=1e-4)
    # means are added back after multiplying: 4 * 0.1 + 0.1 = 0.5, ...
    coder = BoxCoder(means=(0.1, 0.05, 0.0, 0.0), stds=(0.1, 0.1, 0.2, 0.2))
    shifted = torch.tensor([[4.0, -3.0, 5 * math.log(2.0), 5 * math.log(0.5)]])
    assert torch.allclose(coder.decode(shifted, ref), expected, atol=1e-4)


def test_decode_clamp_is_log_1000_over_16_after_the_stds_and_only_above():
    assert DEFAULT_SCALE_CLAMP == pytest.approx(math.log(1000.0 / 16))
    ref = torch.tensor([[0.0, 0.0, 15.0, 15.0]])  # 16 x 16, centre (8, 8)
    # dw = 10 is clamped to log(1000 / 16): w = 1000; dh = log 2 is not: h = 32.
    # -> (8 - 500, 8 - 16, 8 + 500 - 1, 8 + 16 - 1)
    out = BoxCoder().decode(torch.tensor([[0.0, 0.0, 10.0, math.log(2.0)]]), ref)
    assert torch.allclose(out, torch.tensor([[-492.0, -8.0, 507.0, 23.0]]), atol=1e-3)
    # The clamp applies to the de-normalised delta: 25 * 0.2 = 5 > 4.135 is clamped (w = 1000),
    # 20 * 0.2 = 4 < 4.135 is not (h = 16 e^4 = 873.55).
    out = BoxCoder(stds=(0.1, 0.1, 0.2, 0.2)).decode(torch.tensor([[0.0, 0.0, 25.0, 20.0]]), ref)
    h = 16 * math.exp(4.0)
    assert torch.allclose(out, torch.tensor([[-492.0, 8 - h / 2, 507.0, 8 + h / 2 - 1]]), atol=1e-3)
    # No lower bound: dw = -5 gives w = 16 e^-5 = 0.1078 (x1 = 8 - 0.0539, x2 = 8 + 0.0539 - 1).
    out = BoxCoder().decode(torch.tensor([[0.0, 0.0, -5.0, 0.0]]), ref)
    w = 16 * math.exp(-5.0)
    assert torch.allclose(out, torch.tensor([[8 - w / 2, 0.0, 8 + w / 2 - 1, 15.0]]), atol=1e-5)
    # a coder's own clamp: log 2 caps w at 32
    out = BoxCoder(scale_clamp=math.log(2.0)).decode(torch.tensor([[0.0, 0.0, 3.0, 0.0]]), ref)
    assert torch.allclose(out, torch.tensor([[-8.0, 0.0, 23.0, 15.0]]), atol=1e-4)
