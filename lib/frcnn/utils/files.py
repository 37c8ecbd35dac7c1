"""File-system helpers: containment of paths in a root, and atomic writes.

- `is_inside(root, path)`: whether `path` stays inside `root` once both are resolved, so that
  paths read from annotation, list or dataset files cannot reach elsewhere with `..`, an absolute
  path or a symlink.
- `is_file(path)`, `is_dir(path)`: as Path's, False for names the file system refuses.
- `atomic_write(path)`: a file that appears under its name complete or not at all; a crash, kill
  or exception while writing leaves the previous file (if any) as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import yaml

from .errors import one_line


def is_file(path: str | os.PathLike) -> bool:
    """Path.is_file, but False (not an exception) for a name the file system refuses: too long,
    a NUL, an unpaired surrogate. Readers ask it of names read from files."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: str | os.PathLike) -> bool:
    """Path.is_dir, False for a name the file system refuses (as is_file)."""
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def is_inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """True when `path` lies in `root` or is `root` itself, after both are resolved: `..` parts
    and symlinks are followed, so a symlink under root that points outside is outside. A relative
    `path` is relative to the working directory, as usual (join it to root first if meant so)."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """Write `path` atomically: yields a file open for writing, which is a temporary file in the
    same folder; when the block ends without an exception the file is flushed, fsynced and renamed
    over `path`. On any exception (or KeyboardInterrupt) the temporary file is removed and `path`
    is left as it was. A process killed outright may leave a `.<name>.<pid>.<random>.tmp` file
    behind, never a half-written `path`.

    mode: "wb" (bytes) or "w" (text, `encoding` defaulting to UTF-8). The folder must exist.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb'; got {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    text = mode == "w"
    # "x": the temporary name is never one that exists; permissions are those of a plain open().
    f = open(tmp, "x" if text else "xb", encoding=(encoding or "utf-8") if text else None)
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX); best effort, where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_yaml(path: Path, error: type[Exception], kind: str = "valid YAML") -> Any:
    """yaml.safe_load of a UTF-8 file (a byte-order mark allowed). Whatever stops it, unparsable
    YAML (tags such as !!python/object included), other bytes than UTF-8, an unreadable file, is
    an `error` of one line that names the file: "<path>: not <kind> (...)"."""
    try:
        return yaml.safe_load(path.read_bytes().decode("utf-8-sig"))
    except yaml.YAMLError as e:
        raise error(f"{path}: not {kind} ({one_line(e, 160)})") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (OSError, RecursionError) as e:
        raise error(f"{path}: not readable ({type(e).__name__}: {one_line(e, 120)})") from None
