"""The package's import graph: no module imports another that imports it back (directly or
through others), the core (``helpers/*.py``) never imports the tools (``helpers/tools/``), and the
modules that read results import without Keras."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "helpers"
# imported by the command line before any model is needed: Keras stays in their functions
KERAS_FREE = (
    "_checks", "_io", "recipes", "patches", "masking", "metrics", "data", "checkpoints",
    "exercises", "tools.evaluation", "tools.probe", "tools.experiments", "tools.publishing",
    "tools.grading", "tools.quality", "tools.report",
)  # fmt: skip
ENTRY_POINT = "__main__"  # python -m helpers: runs the command line of the tools


def _modules() -> dict:
    """Module name relative to the package ("data", "tools.cli") -> its file."""
    return {
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts): p
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    }


def _imported(name: str, path: Path) -> set:
    """The package's modules (and subpackages, as "tools") that module ``name`` imports, at
    module level or inside a function, as names relative to the package."""
    package = name.split(".")[:-1]  # the module's own package, relative to helpers
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                module = ".".join(base + node.module.split("."))
                targets.add(module)  # and its names, which may be modules: from .tools import cli
                targets.update(f"{module}.{a.name}" for a in node.names)
            else:
                targets.update(".".join(base + [a.name]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers."):
            targets.add(node.module.removeprefix("helpers."))
            targets.update(f"{node.module.removeprefix('helpers.')}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            targets.update(a.name.removeprefix("helpers.") for a in node.names
                           if a.name.startswith("helpers."))  # fmt: skip
    return targets


def _import_graph() -> dict:
    """Module -> the package's modules it imports, at module level or inside a function."""
    modules = _modules()
    return {n: (_imported(n, p) & set(modules)) - {n} for n, p in modules.items()}


def _reaches(graph, start) -> set:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_graph_sees_the_imports_of_both_layers():
    graph = _import_graph()
    assert {"tools.evaluation", "checkpoints", "masking"} <= graph["tools.publishing"]
    assert {"tools.runner", "data"} <= graph["tools.cli"] and "patches" in graph["masking"]


def test_no_import_loops():
    graph = _import_graph()
    loops = sorted(m for m in graph if m in _reaches(graph, m))
    assert not loops, f"modules in an import loop: {loops}"


def test_the_core_never_imports_the_tools():
    core = {n: p for n, p in _modules().items() if "." not in n and n != ENTRY_POINT}
    assert {"data", "models", "checkpoints", "exercises"} <= set(core)
    bad = {
        n: sorted(t for t in _imported(n, p) if t == "tools" or t.startswith("tools."))
        for n, p in core.items()
    }
    bad = {n: t for n, t in bad.items() if t}
    assert not bad, f"core modules that import helpers.tools: {bad}"
    init = _imported("__init__", PACKAGE / "__init__.py")
    assert not [t for t in init if t == "tools" or t.startswith("tools.")]


def test_import_helpers_loads_the_core_only():
    core = [m for m in KERAS_FREE if not m.startswith("tools.")]
    code = (
        "import sys\nimport helpers\n"
        + "".join(f"import helpers.{m}\n" for m in core)
        + "print(sorted(m for m in sys.modules if m.startswith('helpers.tools')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_modules_that_read_results_import_without_keras():
    code = (
        "import sys\n"
        + "".join(f"import helpers.{m}\n" for m in KERAS_FREE)
        + "print(sorted(m for m in ('keras', 'tensorflow', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
