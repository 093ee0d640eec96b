"""Headless runs of the numbered notebooks with papermill, parameters from a YAML profile.

A profile ``params/<name>.yaml`` has optional keys ``description``, ``common`` (values for every
notebook that declares them) and ``notebooks`` (per notebook, by stem or number)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import nbformat
import papermill
import yaml
from jupyter_client.manager import AsyncKernelManager
from papermill.exceptions import PapermillExecutionError

from .. import _checks
from .._checks import SettingError, check_choice, check_positive_int, check_ratio
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
PROFILE_KEYS = ("description", "common", "notebooks")
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
# ipykernel 7 warns on every start that its localhost TCP sockets are unencrypted
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]

_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}
_TYPES |= {"list": (list, tuple), "dict": (dict,)}


class RunnerError(Exception):
    """A wrong profile, notebook selection or parameter (nothing ran); as SettingError."""

    def __init__(self, message: str, param: str | None = None, value=None):
        super().__init__(message)
        self.param, self.value, self.problem = param, value, message


class NotebookFailed(Exception):
    """A notebook raised an error while it ran."""

    def __init__(self, notebook, output: Path, cell_index=None, source="", ename="", evalue=""):
        self.notebook, self.output, self.cell_index = notebook, output, cell_index
        self.source, self.ename, self.evalue = source, ename, evalue
        super().__init__(f"notebook {notebook} failed: {ename}: {evalue}")

    def report(self, max_lines: int = 4) -> str:
        """Which notebook and cell (index, start of its source), the error and the executed copy."""
        lines = [f"FAILED: notebook {self.notebook}"]
        if self.cell_index is not None:
            lines[0] += f", cell {self.cell_index}"
            with contextlib.suppress(Exception):  # its index in the source: minus papermill's cell
                cells = nbformat.read(str(self.output), as_version=4).cells
                tags = [c.get("metadata", {}).get("tags", []) for c in cells]
                injected = [i for i, t in enumerate(tags) if "injected-parameters" in t]
                original = self.cell_index - (bool(injected) and self.cell_index > injected[0])
                if original != self.cell_index:
                    lines[0] += f" of the executed copy (cell {original} of {self.notebook}.ipynb)"
        code = [ln for ln in self.source.splitlines() if ln.strip()[:8] not in ("", "# NBVAL_")]
        lines += ["    " + ln for ln in code[:max_lines]] + ["    ..."] * (len(code) > max_lines)
        lines += [f"{self.ename}: {self.evalue}", f"executed copy: {self.output}"]
        return "\n".join(lines)


@dataclass
class Step:
    """One notebook to run and the parameters it gets."""

    name: str
    path: Path
    parameters: dict = field(default_factory=dict)


def available_profiles(params_dir=PARAMS_DIR) -> list[str]:
    """Names of the profiles in ``params_dir`` (``<name>.yaml``)."""
    return sorted(p.stem for p in Path(params_dir).glob("*.yaml"))


def load_profile(name: str, params_dir=PARAMS_DIR) -> dict:
    """Read ``params/<name>.yaml`` and check its structure; returns dict with the three keys."""
    names, keys, it = available_profiles(params_dir), ", ".join(PROFILE_KEYS), f"profile {name!r}"

    def bad(problem):
        return RunnerError(problem, "profile", name)

    if name not in names:
        raise bad(f"unknown {it}; available profiles: {', '.join(names) or '(none)'}")
    path = Path(params_dir) / f"{name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise bad(f"{it} ({path.name}) is not valid YAML: {exc}") from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise bad(f"{it} must be a mapping with keys {keys}")
    if extra := sorted(set(raw) - set(PROFILE_KEYS)):
        raise bad(f"{it} has unknown keys {extra}; allowed: {keys}")
    common, per_notebook = raw.get("common") or {}, raw.get("notebooks") or {}
    if not isinstance(common, dict):
        raise bad(f"{it}: 'common' must map parameter names to values")
    mappings = per_notebook.values() if isinstance(per_notebook, dict) else [per_notebook]
    if not all(isinstance(v, dict) or v is None for v in mappings):
        raise bad(f"{it}: 'notebooks' must map notebook names to mappings of parameters")
    return {
        "description": str(raw.get("description") or ""),
        "common": dict(common),
        "notebooks": {str(k): dict(v or {}) for k, v in per_notebook.items()},
    }


def find_notebooks(notebooks_dir=NOTEBOOKS_DIR) -> dict[str, Path]:
    """The numbered notebooks (``NN_name.ipynb``) in run order: stem -> path."""
    found = [p for p in Path(notebooks_dir).glob("*.ipynb") if re.match(r"\d{2}_\w+$", p.stem)]
    return {p.stem: p for p in sorted(found)}


def declared_parameters(path) -> dict[str, dict]:
    """The notebook's ``parameters`` cell: name -> {inferred_type_name, default, help}."""
    logger = logging.getLogger("papermill")
    level = logger.level
    logger.setLevel(logging.ERROR)  # papermill warns about the lines it cannot parse
    try:
        return dict(papermill.inspect_notebook(str(path)))
    finally:
        logger.setLevel(level)


def parse_value(text: str):
    """A ``-p`` value: YAML scalars and lists (``5``, ``true``, ``[0.3, 0.5]``), else the text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if value is None and text not in ("null", "~", "None") else value


def parse_override(item: str) -> tuple[str, str]:
    """``"name=value"`` -> (name, value text), else SettingError; the text is converted later."""
    if "=" not in item:
        raise SettingError("item", item, "expected name=value")
    name, text = item.split("=", 1)
    if not name.strip().isidentifier():
        raise SettingError("item", item, "expected name=value with a Python identifier as name")
    return name.strip(), text


def _declared_type(declared: dict) -> tuple[str, bool]:
    """``"Optional[str]"`` -> ``("str", True)``: the type, and whether ``None`` is allowed."""
    name = declared.get("inferred_type_name", "")
    optional = name.startswith("Optional[") and name.endswith("]")
    return name.removeprefix("Optional[")[:-1] if optional else name, optional


def _coerce(value, declared: dict):
    """A ``-p`` text as the declared type wants it; other values unchanged."""
    type_name, optional = _declared_type(declared)
    if isinstance(value, str) and optional and value in ("null", "None", "~"):
        return None
    return parse_value(value) if isinstance(value, str) and type_name != "str" else value


def value_checks() -> dict:
    """Parameter name -> ``check(value, name)``, run after the type check; raises ValueError."""

    def choice(allowed):
        return lambda value, name: check_choice(value, name, allowed)

    def each(check):
        return lambda values, name: [check(v, name) for v in values]

    def non_negative(value, name):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise SettingError(name, value, "must be a number >= 0 (0: not used)")
        return value

    def ratio_range(values, name):
        if len(values) != 2 or not check_ratio(values[0], name) <= check_ratio(values[1], name):
            raise SettingError(name, values, "must be [low, high] with 0 < low <= high < 1")

    zero, one = functools.partial(check_positive_int, minimum=0), check_positive_int  # 0: all
    strategies = each(choice(STRATEGIES))
    return {
        **dict.fromkeys("n_train n_test seed probe_epochs probe_n_test".split(), zero),
        **dict.fromkeys("compare_epochs hybrid_epochs aae_epochs pretrained_epochs".split(), zero),
        **dict.fromkeys("epochs batch_size latent_dim".split(), one),
        **dict.fromkeys("ratio matrix_ratio".split(), check_ratio),
        **dict.fromkeys("ratios probe_ratios".split(), each(check_ratio)),
        **dict.fromkeys("strategies probe_strategies train_strategies".split(), strategies),
        **dict.fromkeys("fill probe_fill".split(), choice(VIT_FILLS)),
        **dict.fromkeys("minutes latent_weight image_weight".split(), non_negative),
        "dataset": choice(DATASETS),
        "patch_size": lambda value, name: _checks.check_patch_size(value, (IMAGE_SIZE,) * 2),
        "strategy": choice(STRATEGIES),
        "scores": each(choice(SCORES)),
        "predictors": each(choice(PREDICTORS)),
        "plan": choice(PLANS),
        "model_size": choice(MODEL_SIZES),
        "metric": choice(HIGHER_IS_BETTER),
        "recipe": choice(RECIPES),  # None (not given) keeps the recipe's setting
        "pos_init": choice(("random", "sincos")),
        "dropout": _checks.check_fraction,
        "lr": _checks.check_positive_number,
        "lr_schedule": choice(("plateau", "cosine")),
        "loss_on": choice(LOSS_ON),
        "probe_predictors": each(choice(LEARNED)),
        "ratio_range": ratio_range,
        "pretrained_fine_tune": choice(("head", "all")),
    }


def _check(notebook: str, name: str, value, declared: dict, check) -> None:
    """RunnerError unless ``value`` has the declared type and passes ``check`` (if not None)."""
    type_name, optional = _declared_type(declared)
    expected, where = _TYPES.get(type_name), f"parameter {name!r} of notebook {notebook}"
    if expected is not None and not (value is None and optional):
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
            got = f"(default {declared.get('default')}), got {value!r} ({type(value).__name__})"
            problem = f"{where} must be {declared['inferred_type_name']} {got}"
            raise RunnerError(problem, name, value)
    if check is None or value is None:  # None: not given (the type check allowed it)
        return
    try:
        check(value, name)
    except (ValueError, TypeError) as exc:
        # the problem alone when the check names this very value, else which element it was
        problem = exc.problem if isinstance(exc, SettingError) and exc.value == value else exc
        raise RunnerError(f"{where} is {value!r}: {problem}", name, value) from None


def _allowed(declared: dict, stems) -> str:
    return ", ".join(sorted({p for s in stems for p in declared[s]})) or "(none)"


def _stem(key, available: dict, problem: str, param="notebooks", value=None) -> str:
    """The stem ``key`` names (stem, file name or two-digit number), else a RunnerError."""
    given, key = key, Path(str(key).strip().removesuffix(".ipynb")).name
    if key in available:
        return key
    matches = [s for s in available if key.isdigit() and s.split("_", 1)[0] == f"{int(key):02d}"]
    if len(matches) != 1:
        value = given if value is None else value
        raise RunnerError(f"{problem}; available: {', '.join(available)}", param, value)
    return matches[0]


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

    ``notebooks``: names or numbers (default: all). ``common`` values and ``overrides`` (``-p``)
    go to every notebook that declares them; at least one (selected, for ``overrides``) must."""
    spec = load_profile(profile, params_dir)
    available = find_notebooks(notebooks_dir)
    if not available:
        message = f"no numbered notebooks (NN_name.ipynb) in {notebooks_dir}"
        raise RunnerError(message, "notebooks_dir", str(notebooks_dir))
    selected = list(available)
    if notebooks:  # by name or number, in run order
        folder = Path(notebooks_dir).name
        keys = {_stem(k, available, f"no notebook {k!r} in {folder}/") for k in notebooks}
        selected = sorted(keys, key=selected.index)
    declared = {stem: declared_parameters(available[stem]) for stem in available}
    per_notebook = {}  # the profile's values per stem, each declared by its notebook
    for key, values in spec["notebooks"].items():
        missing = f"profile {profile!r} names notebook {key!r}, which does not exist"
        stem = _stem(key, available, missing, "profile", profile)
        if unknown := sorted(set(values) - set(declared[stem])):
            problem = f"{', '.join(map(repr, unknown))}; it declares: {_allowed(declared, [stem])}"
            message = f"profile {profile!r}: notebook {stem} declares no parameter {problem}"
            raise RunnerError(message, unknown[0], values[unknown[0]])
        per_notebook.setdefault(stem, {}).update(values)
    overrides = dict(overrides or {})
    to_run = f"(-p): declared by none of the notebooks to run ({', '.join(selected)})"
    for where, names, stems in (
        ("in 'common', declared by no notebook", spec["common"], list(available)),
        (to_run, overrides, selected),
    ):
        if unknown := sorted(n for n in names if not any(n in declared[s] for s in stems)):
            prefix = f"profile {profile!r}: " if names is spec["common"] else ""
            listed, allowed = ", ".join(map(repr, unknown)), _allowed(declared, stems)
            message = f"{prefix}unknown parameter {listed} {where}; allowed: {allowed}"
            raise RunnerError(message, unknown[0], names[unknown[0]])
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    checks = value_checks()
    steps = []
    for stem in selected:
        names = declared[stem]
        params = {k: v for k, v in spec["common"].items() if k in names}
        params |= per_notebook.get(stem, {})
        params |= {k: _coerce(v, names[k]) for k, v in overrides.items() if k in names}
        for name, value in params.items():
            _check(stem, name, value, names[name], checks.get(name))
            if name.endswith("_dir") and isinstance(value, str) and value:  # relative to base
                path = Path(value).expanduser()
                params[name] = str(path if path.is_absolute() else (base / path).resolve())
        steps.append(Step(stem, available[stem], params))
    return steps


def kernel_noise(line: str) -> bool:
    """Whether a kernel's stderr line is TensorFlow start-up noise or the shutdown interrupt."""
    # jupyter_client interrupts every kernel before it shuts it down; a busy kernel logs this line
    shutdown = "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel" in line
    return bool(TF_STARTUP_NOISE.search(line)) or shutdown


@contextlib.contextmanager
def _kernel_stderr():
    """A kernel manager class whose kernels' stderr goes to stderr on exit, without the noise."""
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
    """Execute ``steps`` in order; raises :class:`NotebookFailed` at the first failure.

    The kernels get ``HELPERS_FIGURES_DIR``, ``HELPERS_RESULTS_DIR`` (under ``output_dir``) and
    ``HELPERS_PROFILE``. Returns one dict per notebook: name, output path, seconds."""
    log = log or (lambda msg, end="\n": print(msg, end=end, flush=True))
    progress_bar = sys.stderr.isatty() if progress_bar is None else progress_bar
    output_dir = Path(output_dir).resolve()
    out_notebooks, figures = output_dir / "notebooks", output_dir / "figures"
    for folder in (out_notebooks, figures):
        folder.mkdir(parents=True, exist_ok=True)
    results = []
    env = {"HELPERS_FIGURES_DIR": str(figures), "HELPERS_RESULTS_DIR": str(output_dir / "results")}
    env |= {"HELPERS_PROFILE": profile or "", "MPLBACKEND": INLINE_BACKEND}
    options = {"kernel_name": "python3", "log_output": False, "progress_bar": progress_bar}
    options |= {"cwd": str(Path(notebooks_dir).resolve()), "extra_arguments": list(KERNEL_ARGS)}
    with mock.patch.dict(os.environ, env):
        for i, step in enumerate(steps, 1):
            out = out_notebooks / step.path.name
            head = f"[{i}/{len(steps)}] {step.name}"
            log(f"{head} ...", end="\n" if progress_bar else "")
            # with a progress bar between them, the end of the line starts a new one
            again = f"{head} " if progress_bar else " "
            start = time.perf_counter()
            try:
                with _kernel_stderr() as manager:
                    run = dict(options, kernel_manager_class=manager)
                    papermill.execute_notebook(str(step.path), str(out), step.parameters, **run)
            except Exception as exc:  # a cell raised; or the kernel died, did not start, timed out
                log(f"{again}failed after {time.perf_counter() - start:.1f} s")
                cell = (None, "", type(exc).__name__, str(exc))
                if isinstance(exc, PapermillExecutionError):
                    cell = (exc.cell_index, exc.source, exc.ename, exc.evalue)
                raise NotebookFailed(step.name, out, *cell) from exc
            seconds = time.perf_counter() - start
            log(f"{again}ok ({seconds:.1f} s)")
            results.append({"notebook": step.name, "output": out, "seconds": seconds})
    return results


def format_plan(steps: list[Step]) -> str:
    """One line per notebook with the parameters it gets."""
    return "\n".join(
        f"  {s.name}: {', '.join(f'{k}={v!r}' for k, v in s.parameters.items()) or '(defaults)'}"
        for s in steps
    )


def strip_stderr(path) -> int:
    """Remove a notebook's stderr outputs (returns how many), cut papermill's paths to names."""
    nb = nbformat.read(path, as_version=4)
    removed = 0
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        keep = [o for o in cell.outputs if (o.output_type, o.get("name")) != ("stream", "stderr")]
        removed += len(cell.outputs) - len(keep)
        cell.outputs = keep
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = Path(meta[key]).name
    with atomic_path(path) as tmp:
        nbformat.write(nb, tmp)
    return removed
