"""python -m helpers: the command line (argument errors, profile errors, the plan)."""

import os
import subprocess
import sys

import pytest

from helpers.tools import _startup, cli


def _main(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_module_help_lists_the_run_command():
    res = subprocess.run(
        [sys.executable, "-m", "helpers", "--help"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "usage: python -m helpers" in res.stdout and "run" in res.stdout


def test_run_help_shows_the_options(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--profile", "--output", "--notebooks", "-p NAME=VALUE", "--dry-run"):
        assert option in out


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_unknown_profile(capsys):
    code, out, err = _main(capsys, "run", "--profile", "nope", "--output", "x")
    assert code == 2 and out == ""
    assert "unknown profile 'nope'; available profiles:" in err
    for name in ("full", "quick", "smoke"):
        assert name in err


def test_unknown_parameter_names_it_and_the_allowed_ones(capsys):
    code, out, err = _main(capsys, "run", "--profile", "smoke", "-p", "epochz=3", "--dry-run")
    assert code == 2
    assert "unknown parameter 'epochz'" in err
    allowed = err.split("allowed:")[1]
    assert "patch_size" in allowed and "dataset" in allowed


def test_a_bad_value_is_refused_before_anything_runs(capsys, tmp_path):
    code, out, err = _main(
        capsys, "run", "--profile", "smoke", "-p", "ratio=1.5", "--output", str(tmp_path / "run")
    )
    assert code == 2 and out == ""
    assert (
        "parameter 'ratio' of notebook 03_vit_masked_reconstruction is 1.5" in err
        and "strictly between 0 and 1" in err
    )
    assert not (tmp_path / "run").exists()


def test_parameter_of_a_notebook_not_selected_is_an_error(capsys):
    code, _, err = _main(
        capsys, "run", "--profile", "quick", "--notebooks", "01", "-p", "ratios=[0.5]", "--dry-run"
    )
    assert code == 2 and "'ratios'" in err and "01_data_and_patches" in err


@pytest.mark.parametrize("bad", ["patch_size", "=4", "2x=1"])
def test_bad_p_syntax_is_a_usage_error(capsys, bad):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--profile", "smoke", "-p", bad])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument -p/--param" in err and "name=value" in err and repr(bad) in err


def test_wrong_type_is_reported_before_running(capsys):
    code, _, err = _main(capsys, "run", "--profile", "smoke", "-p", "n_train=many")
    assert code == 2 and "'n_train'" in err and "must be int" in err


def test_unknown_notebook(capsys):
    code, _, err = _main(capsys, "run", "--profile", "smoke", "--notebooks", "99")
    assert code == 2 and "no notebook '99'" in err


def test_dry_run_prints_the_plan_with_typed_values(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = _main(
        capsys,
        "run",
        "--profile",
        "smoke",
        "--output",
        "o",
        "--dry-run",
        "-p",
        "ratios=[0.5]",
        "-p",
        "patch_size=8",
        "-p",
        "dataset=cifar10",
        "-p",
        "data_dir=d",
    )
    assert code == 0
    assert "profile smoke:" in out and "o/notebooks" in out
    line02 = next(ln for ln in out.splitlines() if ln.strip().startswith("02_masking_strategies:"))
    assert "ratios=[0.5]" in line02 and "patch_size=8" in line02 and "dataset='cifar10'" in line02
    assert f"data_dir={str((tmp_path / 'd').resolve())!r}" in line02
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


_STARTUP_NOISE = (
    "oneDNN",
    "cpu_feature_guard",
    "TF_ENABLE_ONEDNN_OPTS",
    "cudart_stub",
    "cuInit",
    "absl::InitializeLog",
    "This TensorFlow binary is optimized",
)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate", "run"])
def test_module_start_up_hides_tensorflow_notices(tmp_path, command):
    # evaluate imports keras (TensorFlow backend) and writes the backend into its table; run's
    # parameter checks import the models before any kernel starts
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
    }
    env["KERAS_BACKEND"] = "tensorflow"
    args = {
        "evaluate": [
            "evaluate",
            "--model",
            "biharmonic",
            "--dataset",
            "sample",
            "--strategy",
            "random",
            "--ratio",
            "0.5",
            "--n-test",
            "2",
            "--output",
            str(tmp_path / "eval"),
        ],
        "run": ["run", "--profile", "quick", "--output", str(tmp_path / "run"), "--dry-run"],
    }[command]
    res = subprocess.run(
        [sys.executable, "-m", "helpers", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert (
        "keras backend tensorflow" if command == "evaluate" else "03_vit_masked_reconstruction"
    ) in res.stdout
    noisy = [
        line for line in res.stderr.splitlines() if any(word in line for word in _STARTUP_NOISE)
    ]
    assert noisy == []


def test_start_up_filter_keeps_other_lines():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795477927.274343    3286 cudart_stub.cc:31] Could not find cuda drivers on "
        "your machine, GPU will not be used.",
        "E0000 00:00:1795477931.603994    3286 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error",
        "I0000 00:00:1795477934.668584    3339 cpu_feature_guard.cc:227] This TensorFlow binary is "
        "optimized to use ...",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
        "with the appropriate compiler flags.",
        "I tensorflow/core/util/port.cc:153] oneDNN custom operations are on. You may see slightly "
        "different numerical results "
        "due to floating-point round-off errors from different computation orders. To turn them "
        "off, set the environment "
        "variable `TF_ENABLE_ONEDNN_OPTS=0`.",
        "E0000 00:00:1796287508.342811    1597 util.cc:131] oneDNN supports DT_BOOL only on "
        "platforms with AVX-512. Falling back to the default Eigen-based implementation if "
        "present.",
    ]
    kept = [
        "E0000 00:00:1795477931.603994    3286 bfc_allocator.cc:485] Allocator ran out of memory "
        "trying to allocate 2.0GiB",
        "Traceback (most recent call last):",
        "ImportError: libcudnn.so.9: cannot open shared object file",
    ]
    assert all(_startup.TF_STARTUP_NOISE.search(line) for line in noise)
    assert not any(_startup.TF_STARTUP_NOISE.search(line) for line in kept)
