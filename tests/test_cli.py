"""cli.run_main, every script's top level: a user error is one line and status 2; anything else
keeps its traceback and, when it escaped a reader, names the file being read (status 1)."""

from __future__ import annotations

import json

import pytest

from frcnn.cli import run_main
from frcnn.config import ConfigError
from frcnn.data.datasets.coco import read_instances
from frcnn.utils.errors import InputError, reading


def outcome(main, capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as info:
        run_main(main)
    return info.value.code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("error", [InputError("a.json: not JSON"), ConfigError("b.yml: not UTF-8 text")])
def test_a_user_error_is_one_line_and_status_2(capsys, error):
    def main():
        raise error

    assert outcome(main, capsys) == (2, [f"error: {error}"])


def test_a_listed_message_is_printed_on_one_line(capsys):
    def main():
        raise ValueError("x.pth holds another model:\n  net: a vs b\n  classes: 3 vs 4")

    assert outcome(main, capsys) == (2, ["error: x.pth holds another model: net: a vs b; classes: 3 vs 4"])


def test_a_library_value_error_inside_a_reader_names_the_file(capsys):
    def main():
        with reading("data/ann.json"):
            int("twelve")

    status, lines = outcome(main, capsys)
    assert status == 2 and len(lines) == 1
    assert lines[0].startswith("error: invalid literal for int()") and lines[0].endswith(
        "(while reading data/ann.json)"
    )


def test_an_unexpected_error_inside_a_reader_keeps_its_traceback_and_names_the_file(capsys):
    def main():
        with reading("models/x.pth"):
            {}["model"]

    status, lines = outcome(main, capsys)
    assert status == 1 and lines[0] == "Traceback (most recent call last):"
    assert "KeyError: 'model'" in lines and "(while reading models/x.pth)" in lines  # the note, 3.11+
    assert lines[-1] == "error: unexpected KeyError while reading models/x.pth (a bug: the traceback is above)"


def test_an_unexpected_error_elsewhere_is_raised_as_it_is():
    def main():
        raise KeyError("x")

    with pytest.raises(KeyError):
        run_main(main)


def test_a_reader_error_reaches_the_top_as_one_line(tmp_path, capsys):
    (tmp_path / "ann.json").write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": "x"}]}))
    status, lines = outcome(lambda: read_instances(tmp_path / "ann.json"), capsys)
    assert (status, lines) == (
        2,
        [f"error: {tmp_path / 'ann.json'}: every category needs an integer 'id' and a 'name'"],
    )
