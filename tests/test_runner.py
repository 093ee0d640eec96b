"""helpers.tools.runner: profiles, parameter checks, and notebook runs (tiny notebooks and the real
ones)."""

import ast
import csv
import json
import os
import re
import subprocess
import sys

import nbformat
import pytest
from _refused import refused
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from helpers.tools import runner

ROOT = runner.ROOT
NOTEBOOKS = runner.find_notebooks()


# --------------------------------------------------------------------------------------------
# tiny notebooks and profiles in a temporary project
# --------------------------------------------------------------------------------------------
def _write_notebook(path, parameters: str, *cells: str):
    nb = new_notebook(cells=[new_markdown_cell("# test")])
    p = new_code_cell(parameters)
    p.metadata["tags"] = ["parameters"]
    nb.cells.append(p)
    nb.cells += [new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path):
    nbs, params = tmp_path / "notebooks", tmp_path / "params"
    nbs.mkdir()
    params.mkdir()
    _write_notebook(
        nbs / "01_first.ipynb",
        'size: int = 3  # a size\nname: str = "a"  # a name\nout_dir: str = ""  # a folder',
        "import os\nfrom pathlib import Path\n"
        "Path(os.environ['HELPERS_FIGURES_DIR'], 'marker.txt').write_text(f'{size} {name} "
        "{os.getcwd()}')",
    )
    _write_notebook(
        nbs / "02_second.ipynb",
        "size: int = 3  # a size\nrate: float = 0.5  # a rate",
        "x = size * 2",
        "# NBVAL_CHECK_OUTPUT\nif rate > 0.9:\n    raise ValueError(f'rate too high: {rate}')",
    )
    (nbs / "helper_scratch.ipynb").write_text("not a numbered notebook, never read")
    (params / "p.yaml").write_text(
        "description: test\ncommon:\n  size: 5\nnotebooks:\n  02_second:\n    rate: 0.25\n"
    )
    return tmp_path


def _plan(project, profile="p", **kw):
    return runner.plan_run(
        profile,
        notebooks_dir=project / "notebooks",
        params_dir=project / "params",
        base_dir=project,
        **kw,
    )


def test_numbered_notebooks_only_in_order(project):
    assert list(runner.find_notebooks(project / "notebooks")) == ["01_first", "02_second"]


def test_plan_merges_common_per_notebook_and_overrides(project):
    steps = _plan(project, overrides={"rate": "0.75", "name": "no"})
    assert [s.name for s in steps] == ["01_first", "02_second"]
    # common goes only where declared; -p texts follow the declared type ("no" stays a string)
    assert steps[0].parameters == {"size": 5, "name": "no"}
    assert steps[1].parameters == {"size": 5, "rate": 0.75}
    assert _plan(project)[1].parameters == {"size": 5, "rate": 0.25}


def test_plan_selects_notebooks_by_number_or_name(project):
    assert [s.name for s in _plan(project, notebooks=["02"])] == ["02_second"]
    assert [s.name for s in _plan(project, notebooks=["02_second.ipynb", "1"])] == [
        "01_first",
        "02_second",
    ]
    with refused("notebooks", "07", runner.RunnerError, problem="available: 01_first, 02_second"):
        _plan(project, notebooks=["07"])


def test_unknown_profile_lists_the_available_ones(project):
    with refused("profile", "nope", runner.RunnerError) as info:
        _plan(project, profile="nope")
    assert info.value.problem.endswith("available profiles: p")


def test_unknown_common_parameter_names_it_and_the_allowed_ones(project):
    (project / "params" / "p.yaml").write_text("common:\n  epochs: 3\n")
    with refused("epochs", 3, runner.RunnerError, problem="allowed: name, out_dir, rate, size"):
        _plan(project)


def test_per_notebook_parameter_must_be_declared_by_that_notebook(project):
    (project / "params" / "p.yaml").write_text("notebooks:\n  01_first:\n    rate: 0.1\n")
    with refused("rate", 0.1, runner.RunnerError, problem="it declares: name, out_dir, size"):
        _plan(project)


def test_override_must_be_declared_by_a_selected_notebook(project):
    with refused("rate", "0.1", runner.RunnerError, problem="(-p)"):
        _plan(project, notebooks=["01"], overrides={"rate": "0.1"})


def test_missing_notebooks_are_skipped_only_when_the_profile_does_not_name_them(project):
    assert len(_plan(project)) == 2  # 03..06 do not exist here and the profile does not name them
    (project / "params" / "p.yaml").write_text("notebooks:\n  03_models:\n    epochs: 1\n")
    with refused("profile", "p", runner.RunnerError, problem="'03_models', which does not exist"):
        _plan(project)


def test_values_are_checked_against_the_declared_types(project):
    with refused("size", "abc", runner.RunnerError):
        _plan(project, overrides={"size": "abc"})
    with refused("size", True, runner.RunnerError):
        _plan(project, overrides={"size": "true"})  # a bool is not an int here
    assert (
        _plan(project, overrides={"rate": "1"})[1].parameters["rate"] == 1
    )  # an int is a fine float


@pytest.mark.parametrize(
    "name, text, notebook, allowed",
    [
        (
            "ratio",
            "1.5",
            "03_vit_masked_reconstruction",
            "is 1.5: must be strictly between 0 and 1",
        ),
        (
            "ratios",
            "[0.3, 1.2]",
            "02_masking_strategies",
            "ratios=1.2: must be strictly between 0 and 1",
        ),
        (
            "strategy",
            "randm",
            "03_vit_masked_reconstruction",
            "must be one of ['columns', 'importance', 'random', 'rows']",
        ),
        ("strategies", "[random, randm]", "02_masking_strategies", "strategies='randm': must be"),
        (
            "predictors",
            "[vit, foo]",
            "05_mask_ratio_experiments",
            "predictors='foo': must be one of [",
        ),
        ("dataset", "cifar100", "01_data_and_patches", "must be one of ['cifar10', 'sample']"),
        (
            "patch_size",
            "5",
            "01_data_and_patches",
            "is 5: must divide the image size 32x32; allowed: [1, 2, 4, 8, 16, 32]",
        ),
        ("epochs", "0", "03_vit_masked_reconstruction", "is 0: must be an integer >= 1"),
        ("n_train", "-1", "01_data_and_patches", "is -1: must be an integer >= 0"),
        ("compare_epochs", "-2", "03_vit_masked_reconstruction", "is -2: must be an integer >= 0"),
        (
            "pretrained_epochs",
            "-1",
            "03_vit_masked_reconstruction",
            "is -1: must be an integer >= 0",
        ),
        (
            "pretrained_fine_tune",
            "backbone",
            "03_vit_masked_reconstruction",
            "is 'backbone': must be one of ['all', 'head']",
        ),
        (
            "loss_on",
            "hidden",
            "03_vit_masked_reconstruction",
            "is 'hidden': must be one of ['all', 'masked']",
        ),
        (
            "fill",
            "zeros",
            "03_vit_masked_reconstruction",
            "is 'zeros': must be one of ['harmonic', 'token']",
        ),
        (
            "probe_predictors",
            "[mae, biharmonic]",
            "05_mask_ratio_experiments",
            "probe_predictors='biharmonic': must be one of ['aae', 'cnn', 'mae', 'vit', "
            "'vit_biharmonic', 'vit_cnn']",
        ),
        (
            "probe_strategies",
            "[rows, randm]",
            "05_mask_ratio_experiments",
            "probe_strategies='randm': must be one of",
        ),
        (
            "probe_ratios",
            "[0.5, 75]",
            "05_mask_ratio_experiments",
            "probe_ratios=75: must be strictly between 0 and 1",
        ),
        ("probe_epochs", "-5", "05_mask_ratio_experiments", "is -5: must be an integer >= 0"),
        # None is "not given": the old stand-ins are refused, not read as "the recipe's"
        ("dropout", "-1", "03_vit_masked_reconstruction", "is -1: must be a number in [0, 1)"),
        ("lr", "0", "03_vit_masked_reconstruction", "is 0: must be a positive number"),
        (
            "pos_init",
            "",
            "03_vit_masked_reconstruction",
            "is '': must be one of ['random', 'sincos']",
        ),
    ],
)
def test_values_are_checked_with_the_package_checks_before_anything_runs(
    name, text, notebook, allowed
):
    with pytest.raises(runner.RunnerError) as info:
        runner.plan_run("smoke", overrides={name: text})
    assert info.value.param == name
    message = str(info.value)  # as the command line prints it: which notebook, what is allowed
    assert message.startswith(f"parameter {name!r} of notebook {notebook} is ")
    assert allowed in message


def test_none_means_not_given_where_the_notebook_declares_optional(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params").mkdir()
    _write_notebook(
        tmp_path / "notebooks" / "01_x.ipynb",
        "from typing import Optional\n\nlr: Optional[float] = None\nsize: int = 3",
    )
    (tmp_path / "params" / "p.yaml").write_text("common: {}\n")
    assert _plan(tmp_path, overrides={"lr": "null"})[0].parameters == {"lr": None}
    assert _plan(tmp_path, overrides={"lr": "0.01"})[0].parameters == {"lr": 0.01}
    with refused("lr", "fast", runner.RunnerError, problem="must be Optional[float]"):
        _plan(tmp_path, overrides={"lr": "fast"})
    with refused("size", None, runner.RunnerError):  # not declared Optional: None is refused
        _plan(tmp_path, overrides={"size": "null"})


def test_values_of_parameters_other_sessions_add_are_checked(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params").mkdir()
    _write_notebook(
        tmp_path / "notebooks" / "01_x.ipynb",
        'recipe: str = "tuned"\npos_init: str = "random"\nlr_schedule: str = "cosine"\nsize: int = '
        "3",
    )
    (tmp_path / "params" / "p.yaml").write_text("common: {}\n")
    for name, good, bad in [
        ("recipe", "reference", "fancy"),
        ("pos_init", "sincos", "sine"),
        ("lr_schedule", "plateau", "step"),
    ]:
        assert _plan(tmp_path, overrides={name: good})[0].parameters == {name: good}
        with refused(name, bad, runner.RunnerError):
            _plan(tmp_path, overrides={name: bad})
    assert _plan(tmp_path, overrides={"size": "-4"})[0].parameters == {
        "size": -4
    }  # no check for other names


def test_profile_structure_is_checked(project):
    (project / "params" / "p.yaml").write_text("comon:\n  size: 1\n")
    with refused("profile", "p", runner.RunnerError, problem="unknown keys ['comon']"):
        _plan(project)
    (project / "params" / "p.yaml").write_text("common: [1, 2]\n")
    with refused("profile", "p", runner.RunnerError, problem="'common' must map"):
        _plan(project)


def test_dir_parameters_are_made_absolute_from_the_start_directory(project):
    steps = _plan(project, overrides={"out_dir": "data/x"})
    assert steps[0].parameters["out_dir"] == str((project / "data" / "x").resolve())


@pytest.mark.parametrize(
    "item, expected",
    [
        ("a=1", ("a", "1")),
        ("a=", ("a", "")),
        ("a=b=c", ("a", "b=c")),
        (" x =[1, 2]", ("x", "[1, 2]")),
    ],
)
def test_parse_override(item, expected):
    assert runner.parse_override(item) == expected


@pytest.mark.parametrize("item", ["a", "=1", "1a=2", "a b=3"])
def test_parse_override_rejects_bad_syntax(item):
    with refused("item", item):
        runner.parse_override(item)


@pytest.mark.parametrize(
    "text, value",
    [
        ("5", 5),
        ("0.5", 0.5),
        ("[0.3, 0.7]", [0.3, 0.7]),
        ("true", True),
        ("cifar10", "cifar10"),
        ("", ""),
        ("null", None),
        ("/a/b", "/a/b"),
    ],
)
def test_parse_value(text, value):
    assert runner.parse_value(text) == value


def test_run_steps_injects_parameters_sets_env_and_cwd_and_stops_at_a_failure(project):
    out = project / "out"
    steps = _plan(project, overrides={"rate": "0.95", "name": "zz"})
    logs = []
    with pytest.raises(runner.NotebookFailed) as info:
        runner.run_steps(
            steps,
            out,
            progress_bar=False,
            notebooks_dir=project / "notebooks",
            log=lambda msg, end="\n": logs.append(msg),
        )
    # the first notebook ran with its parameters, in the notebooks folder, figures into out/figures
    assert (
        out / "figures" / "marker.txt"
    ).read_text() == f"5 zz {(project / 'notebooks').resolve()}"
    assert (out / "notebooks" / "01_first.ipynb").exists()
    assert any("ok (" in line for line in logs) and any("failed" in line for line in logs)
    err = info.value
    assert (err.notebook, err.ename, err.evalue) == (
        "02_second",
        "ValueError",
        "rate too high: 0.95",
    )
    report = err.report()
    # cell 4 of the executed copy (after the injected parameters) is cell 3 of the notebook
    assert (
        "FAILED: notebook 02_second, cell 4 of the executed copy (cell 3 of 02_second.ipynb)"
        in report
    )
    assert "if rate > 0.9:" in report and "NBVAL" not in report
    assert "ValueError: rate too high: 0.95" in report
    assert os.environ.get("HELPERS_FIGURES_DIR") != str((out / "figures").resolve())  # restored


# --------------------------------------------------------------------------------------------
# the project's profiles and notebooks
# --------------------------------------------------------------------------------------------
def test_profiles_exist_and_validate_against_the_notebooks():
    assert {"quick", "smoke", "full"} <= set(runner.available_profiles())
    for name in runner.available_profiles():
        steps = runner.plan_run(name)
        assert [s.name for s in steps] == list(NOTEBOOKS)


def test_quick_is_the_notebook_defaults():
    for step in runner.plan_run("quick"):
        declared = runner.declared_parameters(step.path)
        for name, value in step.parameters.items():
            assert ast.literal_eval(declared[name]["default"]) == value, (step.name, name)


def test_smoke_is_offline_and_small_and_full_is_cifar10():
    for step in runner.plan_run("smoke"):
        declared = runner.declared_parameters(step.path)
        if "dataset" in declared:
            assert (
                step.parameters.get("dataset", ast.literal_eval(declared["dataset"]["default"]))
                == "sample"
            )
        if "n_train" in declared:
            assert 0 < step.parameters["n_train"] <= 500
    for step in runner.plan_run("full"):
        if "dataset" in runner.declared_parameters(step.path):
            assert step.parameters["dataset"] == "cifar10"


@pytest.mark.parametrize("stem", list(NOTEBOOKS))
def test_notebook_parameters_cell(stem):
    nb = nbformat.read(NOTEBOOKS[stem], as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert tagged[0].cell_type == "code"
    assigned = [
        n.target.id for n in ast.parse(tagged[0].source).body if isinstance(n, ast.AnnAssign)
    ]
    plain = [
        ast.unparse(n) for n in ast.parse(tagged[0].source).body if not isinstance(n, ast.AnnAssign)
    ]
    assert assigned and plain in ([], ["from typing import Optional"]), (
        "only annotated assignments (name: type = value  # help) in the parameters cell, and the "
        "import of Optional (None: not given)"
    )
    declared = runner.declared_parameters(NOTEBOOKS[stem])
    assert list(declared) == assigned, "papermill must parse every line (no '=' in the comments)"
    for name, p in declared.items():
        assert runner._declared_type(p)[0] in runner._TYPES, name
        assert p["help"], f"{name} needs a comment"
        ast.literal_eval(p["default"])  # literal defaults only


@pytest.mark.parametrize("stem", list(NOTEBOOKS))
def test_notebook_is_committed_executed_and_clean(stem):
    nb = nbformat.read(NOTEBOOKS[stem], as_version=4)
    assert nb.metadata["kernelspec"] == {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "run the notebook before committing it"
    home = os.path.expanduser("~")
    for c in code:
        for o in c.outputs:
            assert o.output_type != "error", f"error output in: {c.source[:80]}"
            text = o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
            assert str(ROOT) not in text and (home in ("", "/") or home + "/" not in text), text


# --------------------------------------------------------------------------------------------
# end to end: python -m helpers run
# --------------------------------------------------------------------------------------------
def _helpers(args, cwd, timeout=600):
    env = {
        k: v for k, v in os.environ.items() if k != "HELPERS_FIGURES_DIR"
    }  # the runner must set it
    return subprocess.run(
        [sys.executable, "-m", "helpers", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _figures_snapshot():
    folder = ROOT / "figures"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*")} if folder.exists() else {}


@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path):
    before = _figures_snapshot()
    # the timeout guards against a hung kernel; the run takes about 6 minutes on 2 quiet cores
    res = _helpers(["run", "--profile", "smoke", "--output", "out"], cwd=tmp_path, timeout=1800)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _figures_snapshot() == before, "a run must not write into the project's figures/"
    out = tmp_path / "out"
    executed = sorted(p.stem for p in (out / "notebooks").glob("*.ipynb"))
    assert executed == list(NOTEBOOKS)
    plan = {step.name: step.parameters for step in runner.plan_run("smoke")}
    for stem in executed:
        nb = nbformat.read(out / "notebooks" / f"{stem}.ipynb", as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        if plan[stem]:
            assert len(injected) == 1
            assert all(f"{name} = " in injected[0].source for name in plan[stem]), injected[
                0
            ].source
        code = [c for c in nb.cells if c.cell_type == "code"]
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, (stem, errors)
        if any("save_fig" in c.source for c in code):
            images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
            assert images, f"{stem}: figures must show inline"
        assert re.search(rf"\[\d+/\d+\] {stem} \.\.\. ok \(\d+\.\d s\)", res.stdout), res.stdout
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "01_patch_grid.png" in figures and "02_mask_patterns.png" in figures
    assert {"05_cross_strategy_matrix.png", "05_psnr_masked_vs_ratio.png"} <= set(figures)
    assert not [f for f in figures if f.startswith("06_")], (
        "06 shows 05's figures, saves none again"
    )
    # the sweep's results land in the output folder, with the profile in the provenance
    results = out / "results" / "smoke"
    rows = list(csv.DictReader(open(results / "metrics.csv")))
    predictors = {r["predictor"] for r in rows}
    assert predictors == {"vit", "mae", "cnn", "biharmonic", "mean_colour"}, predictors
    assert len(rows) == 2 * 2 * len(predictors) and {r["strategy"] for r in rows} == {
        "random",
        "importance",
    }
    assert json.loads((results / "provenance.json").read_text())["profile"] == "smoke"
    assert len(list(csv.DictReader(open(results / "matrix.csv")))) == 4
    assert all((out / "figures" / f).read_bytes()[:4] == b"\x89PNG" for f in figures)


@pytest.mark.slow
def test_failing_notebook_exits_1_and_names_notebook_cell_and_error(tmp_path):
    # a value every check lets through, which fails only when the notebook runs: no CIFAR-10 there
    res = _helpers(
        [
            "run",
            "--profile",
            "smoke",
            "--output",
            "out",
            "--notebooks",
            "01",
            "-p",
            "dataset=cifar10",
            "-p",
            "data_dir=no_such_folder",
        ],
        cwd=tmp_path,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAILED: notebook 01_data_and_patches, cell" in res.stderr
    assert (
        "DatasetError: data_dir=" in res.stderr and "holds no CIFAR-10 python batches" in res.stderr
    )
    report = res.stderr[res.stderr.index("FAILED") :].splitlines()
    snippet = report[1 : report.index(next(ln for ln in report if ln.startswith("DatasetError")))]
    assert snippet and all(ln.startswith("    ") for ln in snippet), (
        report
    )  # the failing cell's source
    assert any("load_dataset" in ln for ln in snippet), snippet
    assert "01_data_and_patches ... failed" in res.stdout
    assert not (tmp_path / "out" / "notebooks" / "02_masking_strategies.ipynb").exists()


def test_strip_stderr_keeps_everything_else(tmp_path):
    from nbformat.v4 import new_output

    nb = new_notebook(cells=[new_code_cell("print(1)"), new_markdown_cell("text")])
    nb.cells[0].outputs = [
        new_output("stream", name="stderr", text="W /work/x.py: warning\n"),
        new_output("stream", name="stdout", text="1\n"),
        new_output("display_data", data={"text/plain": "fig"}),
    ]
    nb.metadata["papermill"] = {
        "input_path": "/home/me/p/notebooks/n.ipynb",
        "output_path": "/tmp/out/n.ipynb",
    }
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert runner.strip_stderr(path) == 1
    meta = nbformat.read(path, as_version=4).metadata["papermill"]
    assert meta["input_path"] == meta["output_path"] == "n.ipynb"
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream", "display_data"] and outputs[
        0
    ].text == "1\n"
    assert not list(tmp_path.glob(".*"))


def test_importing_helpers_silences_tensorflow_retracing_warnings(caplog):
    # tf.function retracing warnings (several models predicting in turn) reached notebook outputs;
    # inside Jupyter TensorFlow sets its logger to INFO, so a level alone does not keep them out
    import logging

    import helpers  # noqa: F401

    logger = logging.getLogger("tensorflow")
    logger.setLevel(logging.INFO)
    with caplog.at_level(logging.INFO, logger="tensorflow"):
        logger.warning(
            "5 out of the last 13 calls to <function f> triggered tf.function retracing. Tracing "
            "is expensive"
        )
        logger.warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]


def test_kernel_stderr_filter_drops_the_shutdown_interrupt_only():
    # jupyter_client interrupts every kernel before shutting it down; a kernel busy with a message
    # logged this line on the terminal of `python -m helpers run` after a notebook that had passed
    noise = [
        "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.\n",
        "I0000 00:00:1795477934.668584    3339 cpu_feature_guard.cc:227] This TensorFlow binary is "
        "optimized to use ...\n",
    ]
    kept = [
        "[IPKernelApp] ERROR | Exception in message handler:\n",
        "KeyboardInterrupt\n",
        "Traceback (most recent call last):\n",
    ]
    assert all(runner.kernel_noise(line) for line in noise)
    assert not any(runner.kernel_noise(line) for line in kept)
