import numpy as np
import pytest
import torch
from torchvision.ops import box_convert

from frcnn.structures import BoxMode

# One box in every mode: 20 pixels wide (x 10..29) and 40 high (y 20..59).
SAME_BOX = {
    BoxMode.XYXY: (10, 20, 29, 59),
    BoxMode.XYWH: (10, 20, 20, 40),
    BoxMode.XYXY_EXCLUSIVE: (10, 20, 30, 60),
    BoxMode.CXCYWH: (20, 40, 20, 40),
}
PAIRS = [(a, b) for a in BoxMode for b in BoxMode]


@pytest.mark.parametrize("from_mode, to_mode", PAIRS, ids=lambda m: m.name)
def test_hand_values(from_mode, to_mode):
    assert BoxMode.convert(SAME_BOX[from_mode], from_mode, to_mode) == SAME_BOX[to_mode]
    assert BoxMode.convert(list(SAME_BOX[from_mode]), from_mode, to_mode) == list(SAME_BOX[to_mode])
    array = BoxMode.convert(np.array(SAME_BOX[from_mode], np.float32), from_mode, to_mode)
    np.testing.assert_array_equal(array, np.array(SAME_BOX[to_mode], np.float32))
    tensor = BoxMode.convert(torch.tensor(SAME_BOX[from_mode], dtype=torch.float64), from_mode, to_mode)
    assert torch.equal(tensor, torch.tensor(SAME_BOX[to_mode], dtype=torch.float64))


def test_one_pixel_box():
    assert BoxMode.convert([5, 7, 5, 7], BoxMode.XYXY, BoxMode.XYWH) == [5, 7, 1, 1]
    assert BoxMode.convert([5, 7, 5, 7], BoxMode.XYXY, BoxMode.XYXY_EXCLUSIVE) == [5, 7, 6, 8]


def _boxes(rng, shape, integer):
    xy = rng.uniform(-50, 500, shape + (2,))
    wh = rng.uniform(1, 300, shape + (2,))
    boxes = np.concatenate((xy, xy + wh), axis=-1)
    # integers, and fractions the float32 arithmetic keeps exact (multiples of 1/8 below 2**16)
    return np.round(boxes) if integer else np.round(boxes * 8) / 8


@pytest.mark.parametrize("integer", [True, False])
@pytest.mark.parametrize("from_mode, to_mode", PAIRS, ids=lambda m: m.name)
def test_round_trips_are_exact(from_mode, to_mode, integer):
    rng = np.random.default_rng(0)
    for shape in [(4,), (7, 4), (2, 3, 4), (0, 4)]:
        boxes = _boxes(rng, shape[:-1], integer)
        for dtype in (np.float32, np.float64):
            a = boxes.astype(dtype)
            there = BoxMode.convert(a, from_mode, to_mode)
            back = BoxMode.convert(there, to_mode, from_mode)
            assert there.dtype == dtype and back.dtype == dtype and back.shape == a.shape
            np.testing.assert_array_equal(back, a)
        for dtype in (torch.float32, torch.float64):
            t = torch.as_tensor(boxes, dtype=dtype)
            back = BoxMode.convert(BoxMode.convert(t, from_mode, to_mode), to_mode, from_mode)
            assert back.dtype == dtype and back.shape == t.shape and torch.equal(back, t)
    as_list = [float(v) for v in _boxes(rng, (), integer)]
    back = BoxMode.convert(BoxMode.convert(as_list, from_mode, to_mode), to_mode, from_mode)
    assert isinstance(back, list) and back == as_list
    as_tuple = tuple(int(v) for v in _boxes(rng, (), True))
    back = BoxMode.convert(BoxMode.convert(as_tuple, from_mode, to_mode), to_mode, from_mode)
    assert isinstance(back, tuple) and back == as_tuple


def test_kind_dtype_and_input_are_kept():
    ints = np.array([[10, 20, 29, 59]], dtype=np.int64)
    out = BoxMode.convert(ints, BoxMode.XYXY, BoxMode.XYWH)
    assert out.dtype == np.int64 and out.tolist() == [[10, 20, 20, 40]]
    assert ints.tolist() == [[10, 20, 29, 59]], "the input must not change"
    half = torch.tensor([[10.0, 20.0, 29.0, 59.0]], dtype=torch.float16)
    out = BoxMode.convert(half, BoxMode.XYXY, BoxMode.XYXY_EXCLUSIVE)
    assert out.dtype == torch.float16 and out.tolist() == [[10, 20, 30, 60]]
    assert half.tolist() == [[10, 20, 29, 59]]
    same = BoxMode.convert(half, BoxMode.XYXY, BoxMode.XYXY)
    assert torch.equal(same, half) and same is not half


def test_gradients_flow_through_tensors():
    boxes = torch.tensor([[10.0, 20.0, 29.0, 59.0]], requires_grad=True)
    BoxMode.convert(boxes, BoxMode.XYXY, BoxMode.XYWH).sum().backward()
    # w = x2 - x1 + 1: x1 feeds x and -w, x2 feeds w
    assert boxes.grad.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_agrees_with_torchvision_for_exclusive_and_xywh():
    rng = np.random.default_rng(1)
    boxes = torch.as_tensor(_boxes(rng, (50,), False), dtype=torch.float32)
    # torchvision's "xywh" is measured from its exclusive "xyxy"
    ours = BoxMode.convert(boxes, BoxMode.XYXY_EXCLUSIVE, BoxMode.XYWH)
    assert torch.equal(ours, box_convert(boxes, "xyxy", "xywh"))
    assert torch.equal(BoxMode.convert(ours, BoxMode.XYWH, BoxMode.XYXY_EXCLUSIVE), box_convert(ours, "xywh", "xyxy"))
    # and our inclusive XYXY is torchvision's xyxy less one pixel at the far corner
    inclusive = BoxMode.convert(boxes, BoxMode.XYXY_EXCLUSIVE, BoxMode.XYXY)
    assert torch.equal(BoxMode.convert(inclusive, BoxMode.XYXY, BoxMode.XYWH), box_convert(boxes, "xyxy", "xywh"))


def test_cxcywh_is_torchvision_cxcywh_of_the_exclusive_box_and_needs_floats():
    rng = np.random.default_rng(2)
    boxes = torch.as_tensor(_boxes(rng, (50,), False), dtype=torch.float32)
    ours = BoxMode.convert(boxes, BoxMode.XYXY_EXCLUSIVE, BoxMode.CXCYWH)
    assert torch.equal(ours, box_convert(boxes, "xyxy", "cxcywh"))
    # a 10-pixel box from pixel 0 to pixel 9: its centre is at 5, the middle of its area
    assert BoxMode.convert([0, 0, 9, 9], BoxMode.XYXY, BoxMode.CXCYWH) == [5, 5, 10, 10]
    with pytest.raises(TypeError, match="floating"):
        BoxMode.convert(np.array([[0, 0, 9, 9]]), BoxMode.XYXY, BoxMode.CXCYWH)
    with pytest.raises(TypeError, match="floating"):
        BoxMode.convert(torch.tensor([[5, 5, 10, 10]]), BoxMode.CXCYWH, BoxMode.XYXY)


def test_modes_are_accepted_as_ints_and_bad_input_refused():
    assert BoxMode.convert([10, 20, 29, 59], 0, 2) == [10, 20, 20, 40]
    with pytest.raises(ValueError):
        BoxMode.convert([1, 2, 3], BoxMode.XYXY, BoxMode.XYWH)
    with pytest.raises(ValueError):
        BoxMode.convert(np.zeros((3, 5)), BoxMode.XYXY, BoxMode.XYWH)
    with pytest.raises(ValueError):
        BoxMode.convert(torch.tensor(1.0), BoxMode.XYXY, BoxMode.XYWH)
    with pytest.raises(ValueError):
        BoxMode.convert([10, 20, 29, 59], BoxMode.XYXY, 7)
    with pytest.raises(TypeError):
        BoxMode.convert({"x": 1}, BoxMode.XYXY, BoxMode.XYWH)
