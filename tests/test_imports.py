"""The package's import graph: no module imports another that imports it back (directly or
through others), and the modules that read results import without Keras."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "helpers"
# imported by the command line before any model is needed: Keras stays in their functions
KERAS_FREE = (
    "_checks", "_io", "recipes", "patches", "masking", "metrics", "data", "evaluation", "probe",
    "experiments", "checkpoints", "grading", "quality", "report",
)  # fmt: skip


def _import_graph() -> dict:
    """Module -> the package's modules it imports, at module level or inside a function."""
    names = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {}
    for path in PACKAGE.glob("*.py"):
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                targets.update(found)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers."):
                targets.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                targets.update(a.name.split(".")[1] for a in node.names if "." in a.name
                               and a.name.startswith("helpers."))  # fmt: skip
        graph[path.stem] = (targets & names) - {path.stem}
    return graph


def _reaches(graph, start) -> set:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_loops():
    graph = _import_graph()
    loops = sorted(m for m in graph if m in _reaches(graph, m))
    assert not loops, f"modules in an import loop: {loops}"


def test_the_modules_that_read_results_import_without_keras():
    code = (
        "import sys\n"
        + "".join(f"import helpers.{m}\n" for m in KERAS_FREE)
        + "print(sorted(m for m in ('keras', 'tensorflow', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
