"""safe_torch_load: any file from elsewhere loads as tensors and plain values or is refused in one
line that names it, unsafe (it asks for code) or unreadable (anything else)."""

import os
import pickle

import pytest
import torch

from frcnn.utils.safe_load import UnreadableFileError, UnsafeFileError, safe_torch_load


def test_a_file_of_tensors_loads(tmp_path):
    torch.save({"w": torch.arange(3.0), "n": 2}, tmp_path / "ok.pth")
    state = safe_torch_load(tmp_path / "ok.pth")
    assert state["n"] == 2 and state["w"].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "an empty file (0 bytes)"),  # was IndexError: list index out of range
        (b"\x80\x02h\x05.", "KeyError: 5"),  # BINGET of an empty memo: was a raw KeyError: 5
        (b"\x80\x02.", "IndexError: pop from empty list"),  # STOP on an empty stack: was a raw IndexError
        (b"\x80\x02X\x05\x00\x00\x00ab", "ends early: truncated"),
        (pickle.dumps({"a": 1}, protocol=4), "Unsupported operand 149: pickle protocol 4 or newer"),
        (b"PK\x03\x04" + bytes(60), "not readable by torch.load"),
    ],
)
def test_damaged_or_crafted_files_are_one_line_errors(tmp_path, data, reason):
    path = tmp_path / "bad.pth"
    path.write_bytes(data)
    with pytest.raises(UnreadableFileError) as info:
        safe_torch_load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_pickle_that_asks_for_a_callable_is_unsafe_whatever_its_protocol(tmp_path, protocol):
    """Protocol 4's STACK_GLOBAL comes after a FRAME torch's unpickler cannot read: it was
    refused as "Unsupported operand 149", not as unsafe."""
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(os.system, protocol=protocol))
    with pytest.raises(UnsafeFileError, match=r"refused to load: it asks to call (posix|os)\.system") as info:
        safe_torch_load(path)
    assert "\n" not in str(info.value)


def test_a_protocol_4_file_of_tensors_is_unreadable_not_unsafe(tmp_path):
    """Its callables (tensor rebuilding) are ones torch allows: the protocol is the problem."""
    torch.save({"w": torch.zeros(2)}, tmp_path / "p4.pth", pickle_protocol=4, _use_new_zipfile_serialization=False)
    with pytest.raises(UnreadableFileError, match="pickle protocol 4 or newer"):
        safe_torch_load(tmp_path / "p4.pth")
