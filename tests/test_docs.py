"""The documentation: README.md (the front page) and docs/*.md link only to what exists, the front
page stays short and indexes every page, and the README's tour runs as it is written.

The tour is the README's code blocks marked `<!-- tests/test_docs.py runs this block -->` (shell)
together with its marked Python example, run in the README's order by subprocess in a temporary
folder, read from README.md itself. The fast test swaps in the declared shorter arguments of FAST
(one epoch of a small net on a small shapes dataset); the slow one runs the blocks verbatim.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL_NET

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250
TOUR_MARKER = "tests/test_docs.py"

# The fast tour's changes to the README's text (each must be found there), and the flags added to
# every trainval_net.py command: 1 epoch of a small net at 128 px on 24 + 8 images (12 steps of 4).
FAST = {
    "--epochs 4": "--epochs 1",
    "--checkepoch 4": "--checkepoch 1",
    "faster_rcnn_1_4_600.pth": "faster_rcnn_1_1_12.pth",
}
FAST_TRAIN_FLAGS = ["--set", *SMALL_NET]

FENCED = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
MARKED_BLOCK = re.compile(r"<!-- (tests/\S+) runs this block -->\n```(\w+)\n(.*?)^```", re.S | re.M)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text outside code: fenced blocks, indented blocks and inline code removed."""
    text = FENCED.sub("", text)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    return re.sub(r"`[^`]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCED.sub("", page.read_text(encoding="utf-8"))
    found, seen = set(), {}
    for _, title in HEADING.findall(text):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{page.name}: {target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{page.name}: {target} (no heading with this anchor in {file.name})")
    return broken


# ---- the pages and their links ---------------------------------------------------------------


def test_every_relative_link_and_image_resolves():
    assert DOCS.is_dir()
    broken = [problem for page in pages() for problem in broken_links(page)]
    assert not broken, "\n".join(broken)


def test_the_link_check_sees_links_and_anchors(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# There\n\n## `--budget` (25m)\n")
    page.write_text(
        "# Page\n\n[ok](there.md#--budget-25m) ![img](missing.png) [bad](there.md#nowhere)\n"
        "[self](#page) [web](https://example.org/x) `[code](not-a-link.md)`\n\n    [code](nor-this.md)\n"
    )
    assert sorted(broken_links(page)) == [
        "page.md: missing.png (no such file)",
        "page.md: there.md#nowhere (no heading with this anchor in there.md)",
    ]


def test_the_front_page_is_short_and_indexes_every_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines, at most {MAX_README_LINES}"
    docs = sorted(DOCS.glob("*.md"))
    assert len(docs) >= 4, docs
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    assert not [p.name for p in docs if p.resolve() not in linked], "docs pages the README does not link"


# ---- the README's tour ---------------------------------------------------------------------------


def tour_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of the README's shell blocks marked for this file and its marked Python
    example, in the README's order."""
    blocks = [
        (language, code)
        for owner, language, code in MARKED_BLOCK.findall(text)
        if (language in ("sh", "bash") and owner == TOUR_MARKER) or language == "python"
    ]
    assert any(language != "python" for language, _ in blocks), f"no shell block marked for {TOUR_MARKER}"
    return blocks


def shell_commands(code: str) -> list[list[str]]:
    """The block's commands (backslash continuations joined, comments dropped) as argv lists."""
    joined = re.sub(r"\\\n", " ", code)
    return [argv for argv in (shlex.split(line, comments=True) for line in joined.splitlines()) if argv]


def run_tour(workdir: Path, fast: bool) -> list[str]:
    """Run the README's tour in `workdir`; returns the stdout of each command, in order."""
    text = README.read_text(encoding="utf-8")
    if fast:
        missing = [old for old in FAST if old not in text]
        assert not missing, f"the fast tour's replacements are no longer in README.md: {missing}"
        for old, new in FAST.items():
            text = text.replace(old, new)
    for script in ROOT.glob("*.py"):  # the scripts, as in the repository root
        if script.name != "setup.py":
            (workdir / script.name).symlink_to(script)
    (workdir / "images").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    outputs = []
    for language, code in tour_blocks(text):
        if language == "python":
            commands = [[sys.executable, "-c", code]]
        else:
            commands = shell_commands(code)
        for argv in commands:
            if argv[0] == "python":
                argv = [sys.executable, *argv[1:]]
                if fast and argv[1] == "trainval_net.py":
                    argv += FAST_TRAIN_FLAGS
            done = subprocess.run(
                argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=600 if fast else None
            )
            shown = " ".join(argv[1:]) if argv[0] == sys.executable else " ".join(argv)
            assert done.returncode == 0, f"README tour: `{shown}` failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            outputs.append(done.stdout)
    return outputs


def check_tour_results(workdir: Path, outputs: list[str], checkpoint: str) -> None:
    assert (workdir / "models" / "tiny" / "shapes" / checkpoint).is_file()
    assert any(re.search(r"^Mean AP = 0\.\d{4}$", out, re.M) for out in outputs), "no Mean AP line"
    assert (workdir / "images" / "shapes_test_00000_det.jpg").is_file()
    assert (workdir / "images" / "shapes_test_00000_det.json").is_file()
    assert (workdir / "tiny.onnx").is_file()
    assert any("('__background__', 'circle'" in out for out in outputs), "the Python example printed no classes"


def test_the_readme_tour_runs_on_a_small_dataset(small_shapes_root, tmp_path):
    """Every command of the tour, with FAST's arguments, on 24 + 8 shapes images (about a minute)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "shapes").symlink_to(small_shapes_root)
    outputs = run_tour(tmp_path, fast=True)
    check_tour_results(tmp_path, outputs, FAST["faster_rcnn_1_4_600.pth"])


@pytest.mark.slow
def test_the_readme_tour_runs_verbatim(tmp_path):
    """The tour as written, from generating data/shapes on: 4 epochs on 1200 images (minutes)."""
    outputs = run_tour(tmp_path, fast=False)
    check_tour_results(tmp_path, outputs, "faster_rcnn_1_4_600.pth")
