import math

import pytest
import torch

from frcnn.modeling.box_coder import BoxCoder


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
