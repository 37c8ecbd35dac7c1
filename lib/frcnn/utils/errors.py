"""The one error type of input that cannot be used, and the file an unexpected failure was reading.

Every reader of bytes from outside the project (dataset files, checkpoints, exported graphs,
detections files, images) turns what it finds wrong into an InputError whose message is one line
and names the file; the scripts' top level (cli.run_main) prints that line and exits with status 2.
Anything else escaping a reader is a bug: `reading(path)` marks such an exception with the file,
so its traceback still says which file was being read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# The attribute `reading` sets on an exception that escapes it (the innermost file wins).
FILE_ATTRIBUTE = "frcnn_reading"


class InputError(ValueError):
    """A file from outside (data, checkpoint, exported model, detections) that cannot be used;
    the message is one line and names the file."""


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Mark an unexpected exception escaping the block with `path`: an attribute that
    cli.run_main reports, and a note in the traceback. InputErrors pass unmarked: they name
    their file already."""
    try:
        yield
    except InputError:
        raise
    except Exception as e:
        if getattr(e, FILE_ATTRIBUTE, None) is None:
            setattr(e, FILE_ATTRIBUTE, str(path))
            if hasattr(e, "add_note"):  # Python 3.11+
                e.add_note(f"(while reading {path})")
        raise


def file_being_read(error: BaseException) -> str | None:
    """The file `reading` marked `error` with, or None."""
    return getattr(error, FILE_ATTRIBUTE, None)


def one_line(text: object, limit: int = 300) -> str:
    """`text` on one line, shortened: for quoting a library's message (or a value from a file)
    inside an InputError's message."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
