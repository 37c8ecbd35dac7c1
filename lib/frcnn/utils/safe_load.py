"""torch.load for files from elsewhere: weights_only=True, with errors that say what went wrong."""

from __future__ import annotations

import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import _weights_only_unpickler  # private: where it is absent, every callable counts

from .errors import InputError, one_line, reading
from .files import is_file


class UnsafeFileError(InputError):
    """A file whose unpickling would call arbitrary code: refused."""


class UnreadableFileError(InputError):
    """A file that is not something torch.save wrote."""


def safe_torch_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load with weights_only=True: tensors and plain Python values only.

    Raises FileNotFoundError, UnsafeFileError (the file names a Python callable or class to run
    while loading, as malicious pickles do) or UnreadableFileError (anything else torch.load
    cannot read: empty, truncated, corrupt or crafted files).
    """
    path = Path(path)
    if not is_file(path):
        raise FileNotFoundError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise UnreadableFileError(f"{path}: an empty file (0 bytes), not one written by torch.save")
    with reading(path):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            raise _refusal(path, str(e)) from None
        except Exception as e:  # noqa: BLE001 - on crafted bytes the unpickler fails in any way at all
            raise UnreadableFileError(f"{path}: not readable by torch.load ({_reason(e)})") from None


def _reason(error: Exception) -> str:
    text = str(error).strip()
    if not text:
        return "it ends early: truncated" if isinstance(error, EOFError) else type(error).__name__
    return f"{type(error).__name__}: {one_line(text.splitlines()[0], 160)}"


def _refusal(path: Path, message: str) -> InputError:
    """The error for a file torch.load's weights-only unpickler refused: unsafe when the pickle
    asks for a callable the unpickler does not allow, whichever opcode it used (torch names it
    only for GLOBAL; protocol 4's STACK_GLOBAL comes after a FRAME it cannot read)."""
    blocked = re.search(r"GLOBAL (\S+)", message)
    name = blocked.group(1) if blocked else next(iter(_disallowed(_callables(path))), None)
    if name is not None:
        return UnsafeFileError(
            f"{path}: refused to load: it asks to call {name} while loading, "
            "which could run arbitrary code; only files of tensors and plain values are accepted"
        )
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    detail = next((line for line in lines if line.startswith("Unsupported")), lines[-1] if lines else "")
    detail = detail.removeprefix("WeightsUnpickler error:").strip() or "refused by the weights-only unpickler"
    if detail == "Unsupported operand 149":  # FRAME, which protocols 4 and 5 write and torch's unpickler lacks
        detail += ": pickle protocol 4 or newer; save it with torch.save's default protocol"
    return UnreadableFileError(f"{path}: not a file written by torch.save ({one_line(detail, 160)})")


def _pickle_bytes(path: Path) -> bytes:
    """The pickle of a torch.save file: data.pkl inside its zip archive, or the whole file."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                return archive.read(name) if name else b""
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError):
            return b""
    return path.read_bytes()


def _callables(path: Path) -> list[str]:
    """The module.name of every callable or class the pickle asks for (GLOBAL, STACK_GLOBAL, INST),
    read without running it; where the pickle breaks off, those found before."""
    found, strings, memo, top = [], [], {}, None
    try:
        for op, arg, _ in pickletools.genops(_pickle_bytes(path)):
            pushed = None  # the string this opcode put on the stack, if any
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL":
                found.append(".".join(strings[-2:]))
            elif op.name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                memo[len(memo) if op.name == "MEMOIZE" else arg] = top
                continue  # the stack is unchanged
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(arg)
            elif "UNICODE" in op.name and isinstance(arg, str):
                pushed = arg
            if pushed is not None:
                strings.append(pushed)
            top = pushed
    except Exception:  # noqa: BLE001, S110 - a broken pickle: what was read so far is the answer
        pass
    return found


def _disallowed(names: list[str]) -> list[str]:
    """The names torch's weights-only unpickler would not allow."""
    allowed = set(getattr(_weights_only_unpickler, "_get_allowed_globals", dict)())
    return [n for n in names if n not in allowed]
