"""One place knows what each model is: :mod:`helpers.recipes` (``learns``, ``min_hidden_bound``,
``is_vit``) and the predictors' own ``learned``. Nowhere else in the package or the notebooks'
code is a ``NON_LEARNED`` (or ``LEARNED``) membership test or a comparison with a model's name."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from helpers import models, recipes

ROOT = Path(__file__).resolve().parents[1]
NAMES = set(recipes.PREDICTORS) | set(recipes.BUILDERS)
REGISTRY = ROOT / "helpers" / "recipes.py"


def _is_name(node) -> bool:
    return isinstance(node, ast.Constant) and node.value in NAMES


def _is_list_of_names(node) -> bool:
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(map(_is_name, node.elts))


def _is_name_list(node) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    return name in ("NON_LEARNED", "LEARNED")


def offences(source: str) -> list[str]:
    """The comparisons in ``source`` that ask a model's nature by its name: ``x == "mae"``,
    ``x in ("vit", "mae")``, ``x in NON_LEARNED`` (and their negations)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        for left, op, right in zip([node.left, *node.comparators], node.ops, node.comparators):
            if isinstance(op, (ast.Eq, ast.NotEq)) and (_is_name(left) or _is_name(right)):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
            elif isinstance(op, (ast.In, ast.NotIn)) and (
                _is_list_of_names(right) or _is_name_list(right)
            ):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def _notebook_code(path: Path) -> str:
    """The code cells of a notebook, IPython's magics and shell lines left out."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            lines += [
                line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))
            ]
    return "\n".join(lines)


def test_the_checker_finds_what_it_forbids():
    bad = (
        'if p in NON_LEARNED: pass\nif q not in models.NON_LEARNED: pass\nif name == "mae": pass\n'
        'if "vit" != kind: pass\nif b not in ("vit", "mae"): pass\nif k in {"cnn"}: pass\n'
    )
    assert len(offences(bad)) == 6
    fine = (
        'if learns(p): pass\nif "vit" in predictors: pass\nx = speed["vit"]\nif s == "tuned": pass'
    )
    assert offences(fine) == []


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (ROOT / "helpers").rglob("*.py") if p != REGISTRY)
    + sorted((ROOT / "notebooks").glob("*.ipynb")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_model_name_tests_outside_the_registry(path):
    source = _notebook_code(path) if path.suffix == ".ipynb" else path.read_text(encoding="utf-8")
    assert offences(source) == [], f"{path.relative_to(ROOT)} asks a model's nature by its name"


def test_the_registry_and_the_predictors_agree():
    for name in recipes.PREDICTORS:
        assert recipes.learns(name) == (name not in recipes.NON_LEARNED)
    for name in recipes.NON_LEARNED:
        predictor = models.load_predictor(name)
        assert predictor.learned is False and not recipes.learns(predictor)
    assert models.MaskedImageModel.learned is True
    assert [n for n in recipes.BUILDERS if recipes.min_hidden_bound(n)] == ["mae"]
    assert recipes.learns("runs/x/final.keras")  # a saved model's path learns
