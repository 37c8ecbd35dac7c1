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
    "config": {"utils"},
    "data": {"structures", "utils"},
    "modeling": {"structures", "utils"},
    "evaluation": {"data", "structures", "utils"},
    "convert": {"config", "data", "modeling", "structures", "utils"},
    "export": {"config", "data", "modeling", "structures", "utils"},
    "runs": {"utils"},
    "autofit": {"config", "data", "modeling", "structures", "utils"},
    "inference": {"config", "convert", "data", "evaluation", "export", "modeling", "runs", "structures", "utils"},
    "training": {
        "autofit",
        "config",
        "convert",
        "data",
        "evaluation",
        "inference",
        "modeling",
        "runs",
        "structures",
        "utils",
    },
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


PACKAGE = ROOT / "lib" / "frcnn"
# Imports a function may make: optional or heavy dependencies only (the package's own modules
# are imported at the top, where an import circle cannot hide).
LAZY_IMPORTS = {"matplotlib", "onnx", "onnxruntime", "onnxscript", "torch.utils.tensorboard"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT / "lib").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules `path` imports anywhere in it (inside functions and under
    TYPE_CHECKING too), relative imports resolved; `from package import name` counts as the
    module package.name when there is one, else as the package."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
    return found & modules


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) - {module_name(p)} for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_among_the_library_modules():
    graph = import_graph()
    assert "frcnn.training.loop" in graph["frcnn.training.hooks"]  # the graph sees what it should
    assert not cycles(graph)


def test_a_circle_is_found_where_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_functions_import_only_optional_heavy_dependencies():
    lazy = []
    for path in PACKAGE.rglob("*.py"):
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom):
                    names = ["." * node.level + (node.module or "")]
                allowed = [n for n in names if n.split(".")[0] in LAZY_IMPORTS or n in LAZY_IMPORTS]
                # the package's `from frcnn import Detector` stays light (PEP 562 module __getattr__)
                if path == PACKAGE / "__init__.py" and function.name == "__getattr__":
                    continue
                lazy += [f"{path.relative_to(ROOT)}:{function.name} imports {n}" for n in names if n not in allowed]
    assert not lazy, lazy


def test_no_folder_of_the_library_holds_more_than_12_modules():
    crowded = {
        str(folder.relative_to(ROOT)): count
        for folder in [PACKAGE, *[p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__"]]
        if (count := len([p for p in folder.glob("*.py") if p.name != "__init__.py"])) > 12
    }
    assert not crowded, crowded
