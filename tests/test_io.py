"""helpers._io.write_atomic: whole files or none."""

import pytest

from helpers._io import write_atomic


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
