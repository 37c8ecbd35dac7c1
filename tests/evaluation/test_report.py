"""The report files: a class name is text wherever it is shown, "$" and backslashes included."""

from __future__ import annotations

import json

import numpy as np

from frcnn.data.datasets.base import ImageRecord
from frcnn.evaluation.evaluate import Evaluation
from frcnn.evaluation.html_report import write_html_report
from frcnn.evaluation.report import save_report
from frcnn.evaluation.voc_eval import ClassResult

NAMES = ("$\\badmacro$", "price $5 to $10", "plain")


def evaluation() -> Evaluation:
    curve = (np.array([1.0, 0.5]), np.array([0.5, 1.0]))
    classes = [ClassResult(0.75, *curve, 2, 2), ClassResult(0.5, *curve, 2, 3), ClassResult(float("nan"), *curve, 0, 1)]
    return Evaluation("voc", NAMES, classes, 0.625)


def test_class_names_with_dollars_are_plotted_as_text(tmp_path, monkeypatch):
    """matplotlib read "$...$" as math: $\\badmacro$ failed the figure (and report.html, written
    after it, was not), and "price $5 to $10" showed as math; the titles are plain text."""
    import matplotlib.axes

    titles = []
    set_title = matplotlib.axes.Axes.set_title

    def spy(self, label, *args, **kwargs):
        text = set_title(self, label, *args, **kwargs)
        titles.append((text.get_text(), text.get_parse_math()))
        return text

    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", spy)
    save_report(tmp_path, evaluation())
    assert (tmp_path / "pr_curves.png").stat().st_size > 1000
    assert titles == [
        ("$\\badmacro$: AP 0.750", False),
        ("price $5 to $10: AP 0.500", False),
        ("plain: no ground truth", False),
    ]
    assert list(json.loads((tmp_path / "ap.json").read_text())["classes"]) == list(NAMES)


def test_the_html_report_is_written_after_the_curves(tmp_path):
    save_report(tmp_path, evaluation())
    record = ImageRecord("a", str(tmp_path / "missing.jpg"), 40, 30)
    none = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, np.int64)}
    classes = ("__background__", *NAMES)
    write_html_report(tmp_path / "report.html", evaluation(), [record], [none], classes, tmp_path / "pr_curves.png")
    page = (tmp_path / "report.html").read_text()
    assert "<td>$\\badmacro$</td>" in page and "<td>price $5 to $10</td>" in page
    assert "data:image/png;base64," in page  # the curves, embedded
