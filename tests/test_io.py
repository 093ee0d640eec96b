"""helpers._io: whole files or none, CSV rows, output folders checked before any work."""

from pathlib import Path

import pytest

from helpers._checks import SettingError
from helpers._io import atomic_path, read_csv, writable_dir, write_atomic, write_csv


def test_write_atomic_creates_folders_and_replaces(tmp_path):
    path = tmp_path / "a" / "b" / "out.csv"
    write_atomic(path, "x,y\n1,2\n")
    write_atomic(path, "x,y\n3,4\n")
    assert path.read_text() == "x,y\n3,4\n"
    assert [p.name for p in path.parent.iterdir()] == ["out.csv"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_atomic(path, "{}\n")
    with pytest.raises(TypeError):
        write_atomic(path, b"not text")
    assert path.read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_path_replaces_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "fig.png"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != path
        tmp.write_bytes(b"first")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("the writer failed")
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_csv_rows_round_trip_with_numbers_and_new_columns(tmp_path):
    path = tmp_path / "rows.csv"
    assert read_csv(path) == []
    write_csv(path, [{"predictor": "vit", "psnr": 27.5}, {"predictor": "cnn", "epochs": 5}])
    rows = read_csv(path)
    assert rows == [
        {"predictor": "vit", "psnr": 27.5, "epochs": ""},
        {"predictor": "cnn", "psnr": "", "epochs": 5},
    ]
    assert isinstance(rows[1]["epochs"], int) and isinstance(rows[0]["psnr"], float)
    assert path.read_text().splitlines()[0] == "predictor,psnr,epochs"
    # rewritten (as append_row does), a whole number stays one: 5, not 5.0
    write_csv(path, [*rows, {"predictor": "mae", "psnr": 26.0, "epochs": 7}])
    assert path.read_text().splitlines()[1:] == ["vit,27.5,", "cnn,,5", "mae,26.0,7"]


def test_writable_dir_names_the_option_and_leaves_nothing_behind(tmp_path):
    missing = tmp_path / "new" / "deeper"
    assert writable_dir(missing) == missing and not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SettingError) as info:
        writable_dir(tmp_path / "file" / "out", "output")
    assert info.value.param == "output" and info.value.value == str(tmp_path / "file" / "out")


def test_folders_are_the_projects_in_a_checkout_and_local_in_a_wheel(tmp_path, monkeypatch):
    from helpers import _io

    assert _io.project_folder("results") == _io.PROJECT_ROOT / "results"  # this checkout
    monkeypatch.setattr(_io, "PROJECT_ROOT", tmp_path)  # site-packages: no pyproject.toml
    assert _io.project_folder("checkpoints") == Path("checkpoints")
