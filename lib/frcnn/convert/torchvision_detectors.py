"""(being written)"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def recognises(state: Any) -> bool:
    return False


def convert(state: Any, path: Path, context: Any) -> dict[str, Any]:
    raise NotImplementedError
