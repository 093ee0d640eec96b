"""python -m helpers: the command line (argument errors, profile errors, the plan)."""

import os
import subprocess
import sys

import pytest

from helpers import cli


def _main(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_module_help_lists_the_run_command():
    res = subprocess.run([sys.executable, "-m", "helpers", "--help"], capture_output=True, text=True, timeout=120)
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
    code, out, err = _main(capsys, "run", "--profile", "smoke", "-p", "ratio=1.5", "--output", str(tmp_path / "run"))
    assert code == 2 and out == ""
    assert "parameter 'ratio' of notebook 03_vit_masked_reconstruction is 1.5" in err and "strictly between 0 and 1" in err
    assert not (tmp_path / "run").exists()


def test_parameter_of_a_notebook_not_selected_is_an_error(capsys):
    code, _, err = _main(capsys, "run", "--profile", "quick", "--notebooks", "01", "-p", "ratios=[0.5]", "--dry-run")
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
    code, out, _ = _main(capsys, "run", "--profile", "smoke", "--output", "o", "--dry-run",
                         "-p", "ratios=[0.5]", "-p", "patch_size=8", "-p", "dataset=cifar10", "-p", "data_dir=d")
    assert code == 0
    assert "profile smoke:" in out and "o/notebooks" in out
    line02 = next(ln for ln in out.splitlines() if ln.strip().startswith("02_masking_strategies:"))
    assert "ratios=[0.5]" in line02 and "patch_size=8" in line02 and "dataset='cifar10'" in line02
    assert f"data_dir={str((tmp_path / 'd').resolve())!r}" in line02
    assert not (tmp_path / "o").exists()  # a dry run writes nothing
