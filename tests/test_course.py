"""The notebooks' nbgrader exercises: the student versions hide the solutions and the hidden tests,
the solutions pass every test, and a fake class is autograded end to end (nbgrader in its own
processes, offline) with its models graded by ``python -m helpers grade``."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest
from test_evaluation import write_cifar_folder

from helpers import grading
from helpers.cli import main

pytestmark = pytest.mark.slow  # every test here starts processes or trains

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
POINTS = {  # graded cells of each notebook: grade_id -> points
    "01_data_and_patches.ipynb": {"ex1_patchify": 2, "ex1_unpatchify": 1},
    "02_masking_strategies.ipynb": {"ex2_rows": 3},
    "03_vit_masked_reconstruction.ipynb": {"ex3_mask_token": 2, "ex4_loss": 2, "ex5_psnr": 2},
    "06_report.ipynb": {"written_answer": 3},
}
SOLUTION = re.compile(r"### BEGIN SOLUTION\n.*?### END SOLUTION\n?", re.S)


def nbgrader(course, *args):
    """Run nbgrader in its own process in ``course`` (the venv's scripts first on PATH: nbgrader
    starts alembic by name)."""
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def graded_cells(nb):
    return {
        c.metadata.nbgrader["grade_id"]: c
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade")
    }


def test_every_exercise_notebook_is_listed_with_its_points():
    assert tuple(POINTS) == grading.EXERCISE_NOTEBOOKS
    for name, points in POINTS.items():
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        cells = graded_cells(nb)
        assert {k: c.metadata.nbgrader["points"] for k, c in cells.items()} == points, name
        ids = [c.metadata.nbgrader["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
        assert len(ids) == len(set(ids)), name
        for cell in cells.values():  # tests are locked; the written answer is the student's
            assert cell.metadata.nbgrader["locked"] == (cell.cell_type == "code")


def exercise_code(name, answer=lambda source: source):
    """The notebook's import cell and its exercise cells (answers passed through ``answer``) as
    one script."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    imports = next(
        c.source for c in nb.cells if c.cell_type == "code" and "from helpers" in c.source
    )
    parts = [imports]
    for c in nb.cells:
        meta = c.metadata.get("nbgrader", {})
        if c.cell_type == "code" and meta.get("solution"):
            parts.append(answer(c.source))
        elif c.cell_type == "code" and meta.get("grade"):
            parts.append(c.source)
    return "\n\n".join(parts)


@pytest.mark.parametrize("name", [n for n in POINTS if n != "06_report.ipynb"])
def test_the_solutions_pass_their_hidden_tests_and_the_stubs_do_not(name):
    namespace = {}
    exec(compile(exercise_code(name), name, "exec"), namespace)  # raises if any test fails
    stub = exercise_code(name, lambda s: SOLUTION.sub("raise NotImplementedError()\n", s))
    with pytest.raises(NotImplementedError):
        exec(compile(stub, name, "exec"), {})


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    course = grading.make_course(tmp_path_factory.mktemp("course"), "mim")
    nbgrader(course, "generate_assignment", "mim")
    return course


def test_the_student_versions_hold_no_solution_and_no_hidden_test(released):
    for name in POINTS:
        source = nbformat.read(released / "source" / "mim" / name, as_version=4)
        student = nbformat.read(released / "release" / "mim" / name, as_version=4)
        text = "\n".join(c.source for c in student.cells)
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, name
        outside = SOLUTION.sub("", "\n".join(c.source for c in source.cells))
        for cell in source.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") and cell.cell_type == "code":
                for region in SOLUTION.findall(cell.source):
                    body = {ln.strip() for ln in region.splitlines()[1:-1]} - {""}
                    own = [line for line in body if line not in outside]  # the answer's own lines
                    assert own and not any(line in text for line in own), (name, own)
            if "### BEGIN HIDDEN TESTS" in cell.source:
                hidden = cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END")[0]
                assert hidden.strip().splitlines()[0].strip() not in text, name
        kept = graded_cells(student)
        assert set(kept) == set(POINTS[name]), name
        if name != "06_report.ipynb":
            assert "raise NotImplementedError()" in text, name
            visible = graded_cells(source)
            for key, cell in kept.items():  # the visible tests stay
                assert (
                    cell.source == visible[key].source.split("### BEGIN HIDDEN TESTS")[0].rstrip()
                )
        else:
            assert kept["written_answer"].source == "YOUR ANSWER HERE"
        assert not any(c.get("outputs") for c in student.cells if c.cell_type == "code")


def submit(course, student, notebook, assignment="ps"):
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / "01_data_and_patches.ipynb")


def test_a_fake_class_is_graded_end_to_end(tmp_path):
    """Five students: a correct one, one with a wrong patchify, one whose notebook raises, one
    whose model is corrupt, one whose notebook asks for too much memory. nbgrader autogrades the
    notebook exercises (each notebook in its own kernel); ``grade`` scores the models (each in its
    own process)."""
    course = grading.make_course(
        tmp_path / "course", "ps", notebooks=("01_data_and_patches.ipynb",), memory_mb=8192
    )
    nbgrader(course, "generate_assignment", "ps")
    solution = nbformat.read(course / "source" / "ps" / "01_data_and_patches.ipynb", as_version=4)
    student = nbformat.read(course / "release" / "ps" / "01_data_and_patches.ipynb", as_version=4)
    answers = {c.metadata.nbgrader["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}  # fmt: skip

    def answered(change=lambda s: s):
        nb = nbformat.from_dict(json.loads(json.dumps(student)))
        for c in nb.cells:
            if c.metadata.get("nbgrader", {}).get("solution"):
                c.source = change(answers[c.metadata.nbgrader["grade_id"]])
        return nb

    submit(course, "ana", answered())
    no_transpose = ".transpose(0, 1, 3, 2, 4, 5)\n    return grid.reshape(n,"
    submit(
        course, "bo", answered(lambda s: s.replace(no_transpose, "\n    return grid.reshape(n,"))
    )
    submit(course, "cas", answered(lambda s: 'raise RuntimeError("my notebook is broken")\n' + s))
    submit(course, "dia", answered())
    # 20 GB of zeros: allowed by Linux without the limit (never touched), refused with it
    greedy = "np.zeros(20 * 2**30, dtype=np.uint8)\n"
    submit(course, "eli", answered(lambda s: greedy + s))
    nbgrader(course, "autograde", "ps")
    nbgrader(course, "generate_feedback", "ps")
    nbgrader(course, "export")
    with open(course / "grades.csv", newline="") as f:
        points = {r["student_id"]: float(r["raw_score"]) for r in csv.DictReader(f)}
    assert points == {"ana": 3.0, "bo": 1.0, "cas": 0.0, "dia": 3.0, "eli": 0.0}
    for who in points:
        assert (course / "feedback" / who / "ps" / "01_data_and_patches.html").is_file()
    feedback = (course / "feedback" / "cas" / "ps" / "01_data_and_patches.html").read_text()
    assert "my notebook is broken" in feedback
    eli = (course / "feedback" / "eli" / "ps" / "01_data_and_patches.html").read_text()
    assert "MemoryError" in eli

    # the same students' models
    models = tmp_path / "models"
    images = keras.Input((32, 32, 3), name="images")
    mask = keras.Input((64,), name="mask")
    for who in ("ana", "bo", "cas"):
        (models / who).mkdir(parents=True)
        out = keras.layers.Rescaling(0.0, offset=0.5)(images)
        keras.Model({"images": images, "mask": mask}, out).save(models / who / "model.keras")
    (models / "dia").mkdir()
    (models / "dia" / "model.keras").write_bytes(np.random.default_rng(1).bytes(3000))
    data = write_cifar_folder(tmp_path / "hidden", n=8)
    args = ["grade", "--submissions", str(models), "--data-dir", str(data), "--output"]
    assert main([*args, str(tmp_path / "grades"), "--mask-seed", "3"]) == 0
    with open(tmp_path / "grades" / grading.GRADES_CSV, newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert [rows[w]["status"] for w in ("ana", "bo", "cas")] == ["graded"] * 3
    assert rows["dia"]["status"] == "not graded" and "not a Keras model" in rows["dia"]["reason"]


def test_the_course_command(tmp_path, capsys):
    assert main(["course", "--output", str(tmp_path / "c"), "--assignment", "hw1"]) == 0
    assert sorted(p.name for p in (tmp_path / "c" / "source" / "hw1").iterdir()) == sorted(POINTS)
    config = (tmp_path / "c" / "nbgrader_config.py").read_text()
    assert "c.ExecutePreprocessor.timeout = 1800" in config
    assert f"if {16384 * 2**20} and" in config
    assert "nbgrader generate_assignment hw1" in capsys.readouterr().out
    assert main(["course", "--output", str(tmp_path / "d"), "--assignment", "../x"]) == 2
