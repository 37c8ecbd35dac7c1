"""What the fuzz tests share: mutations of valid files, and the property every reader keeps.

A case starts from a valid file (a tree of JSON/YAML values, or bytes) and applies a few drawn
mutations: a value replaced by a nasty one (wrong type, NaN, inf, negative, huge, unicode,
path-like), a key or item deleted, an item duplicated, or the bytes truncated, flipped or
spliced. The property (`read_cleanly`): the reader returns, or raises the project's own error
(utils.errors.InputError, config.ConfigError; FileNotFoundError for a file the input names that
does not exist) with a one-line message naming the file; nothing else escapes.

The default run tries a few dozen cases per reader (FAST); `-m slow` thousands (SLOW). The cases
are derandomized: CI tries the same ones every time.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from frcnn.config import ConfigError
from frcnn.data.validate import check_records
from frcnn.evaluation.evaluate import evaluate
from frcnn.utils.errors import InputError

CLEAN_ERRORS = (InputError, ConfigError, FileNotFoundError)
SLOW_EXAMPLES = 3000


def fast(examples: int) -> settings:
    """The default run: `examples` cases, the same ones every time, no time limit per case."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def slow() -> settings:
    return settings(fast(SLOW_EXAMPLES), max_examples=SLOW_EXAMPLES)


# Values a file from elsewhere may hold where another was expected.
NASTY: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    7,
    2**31,
    2**63,
    10**400,
    -(10**400),
    0.5,
    -0.0,
    -3.5,
    1e-300,
    1e308,
    -1e308,
    math.nan,
    math.inf,
    -math.inf,
    "",
    " ",
    "x",
    "0",
    "1.5",
    "nan",
    "inf",
    "1e999",
    "a\x00b",
    "\ud800",
    "\u00e9t\u00e9 \U0001f642",
    "$\\badmacro$",
    "../../outside",
    "/etc/passwd",
    "a" * 300,
    [],
    [1],
    [0, 0, 0, 0],
    [1, 2, 3, 4, 5],
    [math.nan, 1, 2, 3],
    ["x", "y"],
    {},
    {"id": 1},
)


def paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every position in a tree of dicts and lists, as a tuple of keys and indices."""
    found = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found += paths(value, (*prefix, i))
    return found


def _parent(tree: Any, path: tuple) -> Any:
    for key in path[:-1]:
        tree = tree[key]
    return tree


def apply(tree: Any, path: tuple, operation: str, value: Any) -> Any:
    """`tree` with one mutation at `path` (the root is replaced only by `replace`)."""
    if not path:
        return copy.deepcopy(value) if operation == "replace" else tree
    parent, key = _parent(tree, path), path[-1]
    if operation == "replace":
        parent[key] = copy.deepcopy(value)
    elif operation == "delete":
        del parent[key]
    elif operation == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    elif operation == "duplicate":
        parent[f"{key}_"] = copy.deepcopy(parent[key])
    elif operation == "add" and isinstance(parent[key], dict):
        parent[key]["extra"] = copy.deepcopy(value)
    elif operation == "add" and isinstance(parent[key], list):
        parent[key].append(copy.deepcopy(value))
    return tree


@st.composite
def mutated_tree(draw: st.DrawFn, tree: Any, extra: Iterable[Any] = (), most: int = 3, nasty: bool = True) -> Any:
    """A deep copy of `tree` with 1 to `most` mutations; values drawn from NASTY (unless not
    `nasty`: plausible values only, to reach past the checks) and `extra`."""
    tree = copy.deepcopy(tree)
    values = st.sampled_from((*(NASTY if nasty else ()), *extra))
    for _ in range(draw(st.integers(1, most))):
        places = paths(tree)
        path = draw(st.sampled_from(places[1:] if len(places) > 1 else places))
        operation = draw(st.sampled_from(("replace", "replace", "replace", "delete", "duplicate", "add")))
        tree = apply(tree, path, operation, draw(values))
    return tree


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes, most: int = 3) -> bytes:
    """`data` truncated, or with a few bytes flipped, spliced in or cut out."""
    if draw(st.booleans()):
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    data = bytearray(data)
    for _ in range(draw(st.integers(1, most))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(("flip", "insert", "cut")))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def read_cleanly(call: Callable[[], Any], *names: object) -> Any:
    """call(), or the clean error it raised (returned): an error of CLEAN_ERRORS whose message is
    one line and names one of `names` (the file, or the split named after it). Any other
    exception propagates and fails the test with the case that raised it."""
    try:
        return call()
    except CLEAN_ERRORS as e:
        message = str(e)
        assert "\n" not in message, f"a message of more than one line: {message!r}"
        assert any(str(n) in message for n in names), f"{message!r} names none of {names}"
        return e


def files_under(folder: Path) -> dict[str, int]:
    """Every file under `folder` with its size, to see that a reader wrote nothing."""
    return {str(p): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def perfect(records) -> list[dict[str, np.ndarray]]:
    """Detections equal to the records' objects, scores falling (so no ties), crowd and difficult
    objects left out."""
    out = []
    for r in records:
        ignored = np.zeros(len(r.labels), bool)
        for flags in (r.difficult, r.crowd):
            ignored |= flags.astype(bool) if flags.size == len(r.labels) else False
        keep = ~ignored
        n = int(keep.sum())
        out.append(
            {
                "boxes": r.boxes[keep].astype(np.float32),
                "scores": np.linspace(0.99, 0.5, n).astype(np.float32),
                "labels": r.labels[keep].astype(np.int64),
            }
        )
    return out


def assert_metrics_agree_with_the_check(dataset, kept, metrics: Iterable[str] = ("coco", "voc")) -> None:
    """Perfect detections of the checked records score AP 1 (nan where a class has no object) in
    every metric: no object the check dropped is counted, no box the check kept is lost. (At most
    100 objects an image: COCO's limit of detections.)"""
    if any(len(r.labels) > 100 for r in kept):
        return
    for metric in metrics:
        result = evaluate(dataset, perfect(kept), metric, kept)
        for r in result.classes:
            assert math.isnan(r.ap) or r.ap > 1 - 1e-6, (metric, result.classes)
        assert all(np.isfinite(r.boxes).all() for r in kept)


def environment_unchanged(folder: Path, before: dict[str, int], allowed: Iterable[Path] = ()) -> None:
    """Nothing was written under `folder` but under `allowed`."""
    allowed = [str(a) for a in allowed]
    after = files_under(folder)
    changed = {p for p in set(after) | set(before) if after.get(p) != before.get(p)}
    assert all(any(p.startswith(a) for a in allowed) for p in changed), sorted(changed)


def fs_name(text: str) -> bool:
    """Whether `text` can be a file name here."""
    try:
        os.fsencode(text)
    except UnicodeError:
        return False
    return "\x00" not in text


def read_check_evaluate(dataset, names: Iterable[object], metrics: Iterable[str] = ("coco", "voc")) -> Any:
    """A dataset split as test_net.py takes it: its records read, checked (no cache) and
    evaluated with perfect detections; read_cleanly at each step. Returns the DataReport or the
    clean error."""
    names = tuple(names)
    records = read_cleanly(lambda: dataset.records, *names)
    if isinstance(records, Exception):
        return records

    def check():
        return check_records(dataset.name, records, dataset.issues, progress=False, num_classes=dataset.num_classes)

    report = read_cleanly(check, dataset.name, *names)
    if not isinstance(report, Exception):
        assert_metrics_agree_with_the_check(dataset, report.kept, metrics)
    return report


TOKENS: tuple[str, ...] = tuple(
    dict.fromkeys(str(v) for v in NASTY if isinstance(v, (str, int, float)) and "\ud800" not in str(v))
) + ("-0", "1e-400", "0x10", "\u0661\u0662", "1_000", "+inf", '"a,b"', "", "  ")


@st.composite
def mutated_lines(draw: st.DrawFn, text: str, separator: str, most: int = 4) -> bytes:
    """A line-based file (YOLO rows, CSV) with fields replaced by TOKENS, fields added or cut,
    lines deleted, duplicated or added."""
    lines = [line.split(separator) for line in text.splitlines()]
    for _ in range(draw(st.integers(1, most))):
        n = draw(st.integers(0, max(len(lines) - 1, 0)))
        kind = draw(st.sampled_from(("field", "field", "field", "cut", "add", "delete", "duplicate", "junk")))
        if not lines or kind == "junk":
            lines.insert(n, [draw(st.sampled_from(TOKENS))])
        elif kind == "field":
            lines[n][draw(st.integers(0, len(lines[n]) - 1))] = draw(st.sampled_from(TOKENS))
        elif kind == "cut" and len(lines[n]) > 1:
            del lines[n][draw(st.integers(0, len(lines[n]) - 1))]
        elif kind == "add":
            lines[n].append(draw(st.sampled_from(TOKENS)))
        elif kind == "delete":
            del lines[n]
        elif kind == "duplicate":
            lines.insert(n, list(lines[n]))
    return "".join(separator.join(fields) + "\n" for fields in lines).encode("utf-8", "surrogatepass")
