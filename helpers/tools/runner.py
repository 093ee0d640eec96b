"""Headless runs of the numbered notebooks with papermill, parameters from a YAML profile.

A profile ``params/<name>.yaml`` has three optional keys::

    description: one line shown by ``python -m helpers run``
    common:                      # applied to every notebook that declares the parameter
      dataset: cifar10
    notebooks:                   # per-notebook values (key: file stem or its number, "02")
      02_masking_strategies:
        ratios: [0.5, 0.75]

Every name is checked against the parameters the notebooks declare in their cell tagged
``parameters`` (read with ``papermill.inspect_notebook``), values against the declared type
hint and, for the well-known names of :func:`value_checks`, with the package's own checks
(a ratio in (0, 1), a known strategy...), before anything runs. Notebooks run in order in a
``python3`` kernel with the notebooks
folder as working directory (as nbval does); executed copies go to ``<output>/notebooks/`` and
figures to ``<output>/figures/`` (through ``HELPERS_FIGURES_DIR``), so runs never overwrite the
committed ``figures/``. Parameters named ``*_dir`` are paths: relative ones are taken from the
directory the run was started in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import papermill
import yaml
from jupyter_client.manager import AsyncKernelManager
from papermill.exceptions import PapermillExecutionError

from .._checks import (
    SettingError,
    check_choice,
    check_fraction,
    check_patch_size,
    check_positive_int,
    check_positive_number,
    check_ratio,
)
from .._io import PROJECT_ROOT, atomic_path
from ..data import DATASETS, IMAGE_SIZE
from ..masking import SCORES, STRATEGIES
from ..recipes import LEARNED, LOSS_ON, PREDICTORS, RECIPES, VIT_FILLS
from ._startup import TF_STARTUP_NOISE
from .experiments import MODEL_SIZES, PLANS
from .report import HIGHER_IS_BETTER

ROOT = PROJECT_ROOT
NOTEBOOKS_DIR = ROOT / "notebooks"
PARAMS_DIR = ROOT / "params"
KERNEL_NAME = "python3"
NOTEBOOK_PATTERN = re.compile(r"^(\d{2})_\w+$")
PROFILE_KEYS = ("description", "common", "notebooks")
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
# The kernel logs only errors: ipykernel 7 warns on every start that its localhost TCP sockets are
# unencrypted.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]

_TYPES = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
}


class RunnerError(Exception):
    """A profile, a notebook selection or a parameter is wrong; nothing was run.

    ``param`` and ``value``: what was refused, as in :class:`helpers._checks.SettingError`: the
    ``profile``, the ``notebooks`` entry, ``notebooks_dir``, or a notebook parameter and its
    value."""

    def __init__(self, message: str, param: str | None = None, value=None):
        super().__init__(message)
        self.param, self.value, self.problem = param, value, message


class NotebookFailed(Exception):
    """A notebook raised an error while it ran."""

    def __init__(
        self,
        notebook: str,
        output: Path,
        cell_index=None,
        source: str = "",
        ename: str = "",
        evalue: str = "",
    ):
        self.notebook = notebook
        self.output = output
        self.cell_index = cell_index
        self.source = source
        self.ename = ename
        self.evalue = evalue
        super().__init__(f"notebook {notebook} failed: {ename}: {evalue}")

    def report(self, max_lines: int = 4) -> str:
        """Which notebook, which cell (index and start of its source), the error and where the copy
        is."""
        lines = [f"FAILED: notebook {self.notebook}"]
        if self.cell_index is not None:
            lines[0] += f", cell {self.cell_index}"
            original = self._source_index()
            if original is not None and original != self.cell_index:
                lines[0] += f" of the executed copy (cell {original} of {self.notebook}.ipynb)"
        code = [
            ln
            for ln in self.source.splitlines()
            if ln.strip() and not ln.strip().startswith("# NBVAL_")
        ]
        if code:
            lines += ["    " + ln for ln in code[:max_lines]]
            if len(code) > max_lines:
                lines.append("    ...")
        lines.append(f"{self.ename}: {self.evalue}")
        lines.append(f"executed copy: {self.output}")
        return "\n".join(lines)

    def _source_index(self):
        """The failing cell's index in the source notebook: papermill inserts one cell of
        parameters."""
        try:
            cells = nbformat.read(str(self.output), as_version=4).cells
        except Exception:
            return None
        injected = [
            i
            for i, c in enumerate(cells)
            if "injected-parameters" in c.get("metadata", {}).get("tags", [])
        ]
        if injected and self.cell_index > injected[0]:
            return self.cell_index - 1
        return self.cell_index


@dataclass
class Step:
    """One notebook to run and the parameters it gets."""

    name: str
    path: Path
    parameters: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Profiles and notebooks
# --------------------------------------------------------------------------------------------
def available_profiles(params_dir=PARAMS_DIR) -> list[str]:
    """Names of the profiles in ``params_dir`` (``<name>.yaml``)."""
    return sorted(p.stem for p in Path(params_dir).glob("*.yaml"))


def load_profile(name: str, params_dir=PARAMS_DIR) -> dict:
    """Read ``params/<name>.yaml`` and check its structure; returns dict with the three keys."""
    names = available_profiles(params_dir)
    if name not in names:
        raise RunnerError(
            f"unknown profile {name!r}; available profiles: {', '.join(names) or '(none)'}",
            "profile",
            name,
        )
    path = Path(params_dir) / f"{name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RunnerError(
            f"profile {name!r} ({path.name}) is not valid YAML: {exc}", "profile", name
        ) from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise RunnerError(
            f"profile {name!r} must be a mapping with keys {', '.join(PROFILE_KEYS)}",
            "profile",
            name,
        )
    extra = sorted(set(raw) - set(PROFILE_KEYS))
    if extra:
        raise RunnerError(
            f"profile {name!r} has unknown keys {extra}; allowed: {', '.join(PROFILE_KEYS)}",
            "profile",
            name,
        )
    common = raw.get("common") or {}
    per_notebook = raw.get("notebooks") or {}
    if not isinstance(common, dict):
        raise RunnerError(
            f"profile {name!r}: 'common' must map parameter names to values", "profile", name
        )
    if not isinstance(per_notebook, dict) or not all(
        isinstance(v, dict) or v is None for v in per_notebook.values()
    ):
        raise RunnerError(
            f"profile {name!r}: 'notebooks' must map notebook names to mappings of parameters",
            "profile",
            name,
        )
    return {
        "description": str(raw.get("description") or ""),
        "common": dict(common),
        "notebooks": {str(k): dict(v or {}) for k, v in per_notebook.items()},
    }


def find_notebooks(notebooks_dir=NOTEBOOKS_DIR) -> dict[str, Path]:
    """The numbered notebooks (``NN_name.ipynb``) in run order: stem -> path."""
    found = [p for p in Path(notebooks_dir).glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.stem)]
    return {p.stem: p for p in sorted(found)}


def resolve_notebook(key, available) -> str | None:
    """The stem that ``key`` names: a stem, a file name or the two-digit number; None if absent."""
    key = str(key).strip()
    if key.endswith(".ipynb"):
        key = key[: -len(".ipynb")]
    key = Path(key).name
    if key in available:
        return key
    if key.isdigit():
        matches = [s for s in available if s.split("_", 1)[0] == f"{int(key):02d}"]
        if len(matches) == 1:
            return matches[0]
    return None


def declared_parameters(path) -> dict[str, dict]:
    """Parameters of the notebook's ``parameters`` cell: name -> {inferred_type_name, default,
    help}."""
    logger = logging.getLogger("papermill")
    level = logger.level
    logger.setLevel(
        logging.ERROR
    )  # papermill warns about lines it cannot parse; tests check there are none
    try:
        return dict(papermill.inspect_notebook(str(path)))
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------
def parse_value(text: str):
    """A ``-p`` value: YAML scalars and lists (``5``, ``0.5``, ``true``, ``[0.3, 0.5]``); else the
    text."""
    if text == "":
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if value is None and text not in ("null", "~", "None") else value


def parse_override(item: str) -> tuple[str, str]:
    """``"name=value"`` -> (name, value text); raises ValueError with the expected form.

    The text is converted when the notebooks are known: kept as is for a ``str`` parameter
    (so ``-p dataset=no`` stays a string), read with :func:`parse_value` otherwise.
    """
    if "=" not in item:
        raise SettingError("item", item, "expected name=value")
    name, text = item.split("=", 1)
    name = name.strip()
    if not name.isidentifier():
        raise SettingError("item", item, "expected name=value with a Python identifier as name")
    return name, text


def _declared_type(declared: dict) -> tuple[str, bool]:
    """``"Optional[str]"`` -> ``("str", True)``: the type, and whether ``None`` (not given) is
    allowed."""
    name = declared.get("inferred_type_name", "")
    if name.startswith("Optional[") and name.endswith("]"):
        return name[len("Optional[") : -1], True
    return name, False


def _coerce(value, declared: dict):
    """A ``-p`` text as the declared type wants it; other values unchanged."""
    type_name, optional = _declared_type(declared)
    if isinstance(value, str) and optional and value in ("null", "None", "~"):
        return None
    if isinstance(value, str) and type_name != "str":
        return parse_value(value)
    return value


def _check_type(notebook: str, name: str, value, declared: dict):
    type_name, optional = _declared_type(declared)
    expected = _TYPES.get(type_name)
    if expected is None or (value is None and optional):
        return
    ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected)
    if not ok:
        raise RunnerError(
            f"parameter {name!r} of notebook {notebook} must be {declared['inferred_type_name']} "
            f"(default {declared.get('default')}), got {value!r} ({type(value).__name__})",
            name,
            value,
        )


def value_checks() -> dict:
    """Parameter name -> ``check(value, name)`` of the package, run after the type check; raises
    ValueError or TypeError naming the parameter, the value and what is allowed."""

    def choice(allowed):
        return lambda value, name: check_choice(value, name, allowed)

    def count(minimum):
        return lambda value, name: check_positive_int(value, name, minimum)

    def each(check):
        return lambda values, name: [check(v, name) for v in values]

    def ratio_range(values, name):
        if len(values) != 2 or not check_ratio(values[0], name) <= check_ratio(values[1], name):
            raise SettingError(name, values, "must be [low, high] with 0 < low <= high < 1")

    return {
        "dataset": choice(DATASETS),
        "n_train": count(0),
        "n_test": count(0),
        "seed": count(0),  # 0 images: all of them
        "epochs": count(1),
        "batch_size": count(1),
        "patch_size": lambda value, name: check_patch_size(value, (IMAGE_SIZE, IMAGE_SIZE)),
        "ratio": check_ratio,
        "matrix_ratio": check_ratio,
        "ratios": each(check_ratio),
        "strategy": choice(STRATEGIES),
        "strategies": each(choice(STRATEGIES)),
        "scores": each(choice(SCORES)),
        "predictors": each(choice(PREDICTORS)),
        "plan": choice(PLANS),
        "model_size": choice(MODEL_SIZES),
        "metric": choice(HIGHER_IS_BETTER),
        # None (not given) keeps the recipe's setting: helpers.recipes.resolve
        "recipe": choice(RECIPES),
        "pos_init": choice(("random", "sincos")),
        "dropout": check_fraction,
        "lr": check_positive_number,
        "lr_schedule": choice(("plateau", "cosine")),
        "loss_on": choice(LOSS_ON),
        "fill": choice(VIT_FILLS),
        "probe_fill": choice(VIT_FILLS),
        "probe_predictors": each(choice(LEARNED)),
        "probe_strategies": each(choice(STRATEGIES)),
        "probe_ratios": each(check_ratio),
        "probe_epochs": count(0),
        "probe_n_test": count(0),
        "train_strategies": each(choice(STRATEGIES)),
        "ratio_range": ratio_range,
        "minutes": lambda value, name: _non_negative(value, name),
        "compare_epochs": count(0),
        "hybrid_epochs": count(0),
        "aae_epochs": count(0),
        "pretrained_epochs": count(0),
        "pretrained_fine_tune": choice(("head", "all")),
        "latent_dim": count(1),
        "latent_weight": lambda value, name: _non_negative(value, name),
        "image_weight": lambda value, name: _non_negative(value, name),
    }


def _non_negative(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SettingError(name, value, "must be a number >= 0 (0: not used)")
    return value


def _check_value(notebook: str, name: str, value, checks: dict):
    check = checks.get(name)
    if check is None or value is None:  # None: not given (the type check allowed it)
        return
    try:
        check(value, name)
    except (ValueError, TypeError) as exc:
        # the problem alone when the check names this very value, else which element it was
        same = isinstance(exc, SettingError) and exc.value == value
        problem = exc.problem if same else exc
        raise RunnerError(
            f"parameter {name!r} of notebook {notebook} is {value!r}: {problem}", name, value
        ) from None


def _absolute_dirs(params: dict, base: Path) -> dict:
    """Parameters named ``*_dir`` are paths: make relative ones absolute against ``base``."""
    out = dict(params)
    for name, value in params.items():
        if name.endswith("_dir") and isinstance(value, str) and value:
            path = Path(value).expanduser()
            out[name] = str(path if path.is_absolute() else (base / path).resolve())
    return out


def _allowed(declared: dict, stems) -> str:
    return ", ".join(sorted({p for s in stems for p in declared[s]})) or "(none)"


def _select_notebooks(notebooks, available: dict, folder: str) -> list[str]:
    """The stems of the notebooks named by ``notebooks`` (names or numbers) in run order; all of
    them when none are named."""
    if not notebooks:
        return list(available)
    selected = []
    for key in notebooks:
        stem = resolve_notebook(key, available)
        if stem is None:
            raise RunnerError(
                f"no notebook {key!r} in {folder}/; available: {', '.join(available)}",
                "notebooks",
                key,
            )
        if stem not in selected:
            selected.append(stem)
    return sorted(selected, key=list(available).index)


def _profile_values(profile: str, spec: dict, available: dict, declared: dict) -> dict:
    """The profile's values per notebook stem, each declared by its notebook."""
    per_notebook = {}
    for key, values in spec["notebooks"].items():
        stem = resolve_notebook(key, available)
        if stem is None:
            raise RunnerError(
                f"profile {profile!r} names notebook {key!r}, which does not exist; available: "
                f"{', '.join(available)}",
                "profile",
                profile,
            )
        unknown = sorted(set(values) - set(declared[stem]))
        if unknown:
            raise RunnerError(
                f"profile {profile!r}: notebook {stem} declares no parameter "
                f"{', '.join(map(repr, unknown))}; it declares: {_allowed(declared, [stem])}",
                unknown[0],
                values[unknown[0]],
            )
        per_notebook.setdefault(stem, {}).update(values)
    return per_notebook


def plan_run(
    profile: str,
    notebooks=None,
    overrides=None,
    *,
    notebooks_dir=NOTEBOOKS_DIR,
    params_dir=PARAMS_DIR,
    base_dir=None,
) -> list[Step]:
    """Check everything and return the notebooks to run with their parameters; runs nothing.

    ``notebooks``: names or numbers to run (default: all numbered notebooks). Profile entries for
    notebooks that do not exist yet are an error only when they name them; ``common`` values go
    to every notebook that declares them and must be declared by at least one notebook;
    ``overrides`` (from ``-p``) likewise, among the notebooks selected.
    """
    spec = load_profile(profile, params_dir)
    available = find_notebooks(notebooks_dir)
    if not available:
        raise RunnerError(
            f"no numbered notebooks (NN_name.ipynb) in {notebooks_dir}",
            "notebooks_dir",
            str(notebooks_dir),
        )
    selected = _select_notebooks(notebooks, available, Path(notebooks_dir).name)
    declared = {stem: declared_parameters(available[stem]) for stem in available}
    per_notebook = _profile_values(profile, spec, available, declared)
    overrides = dict(overrides or {})
    for where, names, stems in (
        ("in 'common', declared by no notebook", spec["common"], list(available)),
        (
            f"(-p): declared by none of the notebooks to run ({', '.join(selected)})",
            overrides,
            selected,
        ),
    ):
        unknown = sorted(n for n in names if not any(n in declared[s] for s in stems))
        if unknown:
            prefix = f"profile {profile!r}: " if names is spec["common"] else ""
            raise RunnerError(
                f"{prefix}unknown parameter {', '.join(map(repr, unknown))} {where}; "
                f"allowed: {_allowed(declared, stems)}",
                unknown[0],
                names[unknown[0]],
            )
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    checks = value_checks()
    steps = []
    for stem in selected:
        params = {k: v for k, v in spec["common"].items() if k in declared[stem]}
        params.update(per_notebook.get(stem, {}))
        params.update(
            {k: _coerce(v, declared[stem][k]) for k, v in overrides.items() if k in declared[stem]}
        )
        for name, value in params.items():
            _check_type(stem, name, value, declared[stem][name])
            _check_value(stem, name, value, checks)
        steps.append(Step(stem, available[stem], _absolute_dirs(params, base)))
    return steps


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _environ(**values):
    """Set environment variables for the kernels started inside the block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# jupyter_client interrupts every kernel before it asks it to shut down; a kernel that is handling a
# message at that moment logs this line, which says nothing about the notebook.
_KERNEL_SHUTDOWN_NOISE = re.compile(r"\[IPKernelApp\] ERROR \| KeyboardInterrupt caught in kernel")


def kernel_noise(line: str) -> bool:
    """Whether a line of a kernel's stderr is noise: TensorFlow's C++ start-up notices
    (:data:`helpers.tools._startup.TF_STARTUP_NOISE`) or the interrupt that comes with every kernel
    shutdown."""
    return bool(TF_STARTUP_NOISE.search(line) or _KERNEL_SHUTDOWN_NOISE.search(line))


@contextlib.contextmanager
def _kernel_stderr():
    """A kernel manager class whose kernels write their process stderr to a temporary file; on exit
    every line of it but noise (:func:`kernel_noise`) goes to stderr, so a run's terminal shows what
    matters. Cell outputs are not affected."""
    with tempfile.TemporaryFile() as log:

        class QuietKernelManager(AsyncKernelManager):
            async def _async_start_kernel(self, **kw):
                kw.setdefault("stderr", log)
                return await super()._async_start_kernel(**kw)

            start_kernel = _async_start_kernel

        try:
            yield QuietKernelManager
        finally:
            log.seek(0)
            lines = log.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(ln for ln in lines if not kernel_noise(ln)))
            sys.stderr.flush()


def run_steps(
    steps: list[Step],
    output_dir,
    *,
    progress_bar: bool | None = None,
    log=None,
    notebooks_dir=NOTEBOOKS_DIR,
    profile: str | None = None,
) -> list[dict]:
    """Execute ``steps`` in order; stops at the first failure by raising :class:`NotebookFailed`.

    The kernels get ``HELPERS_FIGURES_DIR=<output>/figures``,
    ``HELPERS_RESULTS_DIR=<output>/results``
    (so a run leaves its figures and results next to its notebooks) and ``HELPERS_PROFILE``
    (recorded in the results' provenance).

    Returns one dict per notebook: name, output path, seconds.
    """
    log = log or (lambda msg, end="\n": print(msg, end=end, flush=True))
    if progress_bar is None:
        progress_bar = sys.stderr.isatty()
    output_dir = Path(output_dir).resolve()
    out_notebooks, figures = output_dir / "notebooks", output_dir / "figures"
    out_notebooks.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    results = []
    with _environ(
        HELPERS_FIGURES_DIR=str(figures),
        HELPERS_RESULTS_DIR=str(output_dir / "results"),
        HELPERS_PROFILE=profile or "",
        MPLBACKEND=INLINE_BACKEND,
    ):
        for i, step in enumerate(steps, 1):
            out = out_notebooks / step.path.name
            head = f"[{i}/{len(steps)}] {step.name}"
            log(f"{head} ...", end="\n" if progress_bar else "")
            # with a progress bar between them, the end of the line starts a new one
            again = f"{head} " if progress_bar else " "
            start = time.perf_counter()
            try:
                _execute(step, out, notebooks_dir, progress_bar)
            except NotebookFailed:
                log(f"{again}failed after {time.perf_counter() - start:.1f} s")
                raise
            seconds = time.perf_counter() - start
            log(f"{again}ok ({seconds:.1f} s)")
            results.append({"notebook": step.name, "output": out, "seconds": seconds})
    return results


def _execute(step: Step, out: Path, notebooks_dir, progress_bar: bool) -> None:
    """Execute one notebook with papermill in ``notebooks_dir`` (as nbval does) into ``out``;
    any failure becomes :class:`NotebookFailed`."""
    try:
        with _kernel_stderr() as manager:
            papermill.execute_notebook(
                str(step.path),
                str(out),
                parameters=step.parameters,
                kernel_name=KERNEL_NAME,
                cwd=str(Path(notebooks_dir).resolve()),
                progress_bar=progress_bar,
                log_output=False,
                extra_arguments=list(KERNEL_ARGS),
                kernel_manager_class=manager,
            )
    except PapermillExecutionError as exc:
        raise NotebookFailed(
            step.name, out, exc.cell_index, exc.source, exc.ename, exc.evalue
        ) from exc
    except Exception as exc:  # the kernel died, could not start, timed out...
        raise NotebookFailed(step.name, out, None, "", type(exc).__name__, str(exc)) from exc


def format_plan(steps: list[Step]) -> str:
    """One line per notebook with the parameters it gets (those it does not get keep their
    defaults)."""
    lines = []
    for step in steps:
        params = ", ".join(f"{k}={v!r}" for k, v in step.parameters.items()) or "(defaults)"
        lines.append(f"  {step.name}: {params}")
    return "\n".join(lines)


def strip_stderr(path) -> int:
    """Remove the stderr outputs (library logs, warnings with this machine's paths) from an
    executed notebook, in place and atomically; nbval does not compare them anyway. papermill's
    ``input_path``/``output_path`` metadata are cut to the file names. Returns how many outputs
    were removed. Used before committing executed notebooks."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    removed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        keep = [
            o for o in cell.outputs if not (o.output_type == "stream" and o.get("name") == "stderr")
        ]
        removed += len(cell.outputs) - len(keep)
        cell.outputs = keep
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = Path(meta[key]).name
    with atomic_path(path) as tmp:
        nbformat.write(nb, tmp)
    return removed
