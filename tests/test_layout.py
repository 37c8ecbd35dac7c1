"""The code's shape, as the contributing rules set it: short functions, thin scripts, and a library
that knows nothing of the tools built on it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("trainval_net.py", "test_net.py", "demo.py", "benchmark.py")


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))] + [ROOT / s for s in SCRIPTS]


def test_no_function_is_longer_than_60_lines():
    long = [
        f"{path.relative_to(ROOT)}:{name} ({length} lines)"
        for path in python_files("lib", "tools")
        for name, length in functions(path)
        if length > 60
    ]
    assert not long, long


def test_scripts_only_parse_flags_and_call_the_library():
    for script in SCRIPTS:
        assert len((ROOT / script).read_text().splitlines()) < 80, script


def test_the_library_knows_nothing_of_benchmarks_and_imports_no_script():
    for path in (ROOT / "lib").rglob("*.py"):
        text = path.read_text()
        assert "benchmark" not in text.lower(), path
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not imported & {"tools", "trainval_net", "test_net", "demo"}, path


# What each part of the package may import from the package (the data flows one way).
MAY_IMPORT = {
    "structures": set(),
    "utils": set(),
    "config": set(),
    "data": {"structures", "utils"},
    "modeling": {"structures", "utils"},
    "evaluation": {"data", "structures", "utils"},
    "convert": {"config", "data", "modeling", "structures", "utils"},
    "export": {"config", "data", "modeling", "structures", "utils"},
    "engine": {"config", "convert", "data", "export", "modeling", "evaluation", "structures", "utils", "engine"},
}


def package_imports(path: Path) -> set[str]:
    """The frcnn subpackages or modules `path` imports (relative imports resolved)."""
    parts = path.relative_to(ROOT / "lib").with_suffix("").parts  # ("frcnn", "data", "loader")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(parts[: len(parts) - node.level])
            target = base + (node.module.split(".") if node.module else [])
            names = [target + [a.name] for a in node.names] if len(target) == 1 else [target]
            found |= {t[1] for t in names if len(t) > 1}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("frcnn."):
            found.add(node.module.split(".")[1])
    return found


def test_each_part_imports_only_the_parts_below_it():
    wrong = []
    for part, allowed in MAY_IMPORT.items():
        files = (
            [ROOT / "lib" / "frcnn" / "config.py"]
            if part == "config"
            else (ROOT / "lib" / "frcnn" / part).rglob("*.py")
        )
        for path in files:
            extra = package_imports(path) - allowed - {part}
            if extra:
                wrong.append(f"{path.relative_to(ROOT)} imports {sorted(extra)}")
    assert not wrong, wrong
