"""torch.load for files from elsewhere: weights_only=True, with errors that say what went wrong."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch


class UnsafeFileError(ValueError):
    """A file whose unpickling would call arbitrary code: refused."""


class UnreadableFileError(ValueError):
    """A file that is not something torch.save wrote."""


def safe_torch_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load with weights_only=True: tensors and plain Python values only.

    Raises FileNotFoundError, UnsafeFileError (the file names a Python callable or class to run
    while loading, as malicious pickles do) or UnreadableFileError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = re.search(r"GLOBAL (\S+)", str(e))
        if blocked:
            raise UnsafeFileError(
                f"{path}: refused to load: it asks to call {blocked.group(1)} while loading, "
                "which could run arbitrary code; only files of tensors and plain values are accepted"
            ) from None
        reason = str(e).strip().splitlines()[-3] if str(e).count("\n") >= 2 else str(e)
        raise UnreadableFileError(f"{path}: not a file written by torch.save ({reason.strip()})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UnreadableFileError(
            f"{path}: not readable by torch.load ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
