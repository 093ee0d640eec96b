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

from helpers import checkpoints
from helpers.tools import grading
from helpers.tools.cli import main

pytestmark = pytest.mark.slow  # every test here starts processes or trains

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
POINTS = {  # graded cells of each notebook: grade_id -> points
    "01_data_and_patches.ipynb": {"ex1_patchify": 2, "ex1_unpatchify": 1},
    "02_masking_strategies.ipynb": {"ex2_rows": 3},
    "03_vit_masked_reconstruction.ipynb": {"ex3_mask_token": 2, "ex4_loss": 2, "ex5_psnr": 2},
    "04_autoencoder_baseline.ipynb": {"ex6_cnn_input": 2},
    "05_mask_ratio_experiments.ipynb": {"ex7_cell_psnr": 2},
    "06_report.ipynb": {"written_answer": 3},
}
SOLUTION = re.compile(r"### BEGIN SOLUTION\n.*?### END SOLUTION\n?", re.S)
HIDDEN = re.compile(
    r"^[ \t]*### BEGIN HIDDEN TESTS\n.*?^[ \t]*### END HIDDEN TESTS\n?", re.S | re.M
)
CONTEXT = {  # what an exercise's test cell reads from the notebook's own cells, built small
    "04_autoencoder_baseline.ipynb": "ds = data.load_dataset('sample', n_test=8)",
    "05_mask_ratio_experiments.ipynb": (
        "ds = data.load_dataset('sample', n_test=8)\n"
        "model = models.MeanColourInpainter()\n"
        "mask = masking.make_mask('rows', 0.5, images=ds.x_test, patch_size=4, seed=0)\n"
        "row = {'psnr_masked_mean': evaluation.score_predictor(model, ds.x_test, mask)[0]"
        "['psnr_masked_mean']}"
    ),
}


def nbgrader(course, *args):
    """Run nbgrader in its own process in ``course`` (the venv's scripts first on PATH: nbgrader
    starts alembic by name)."""
    env = {  # without the test session's HELPERS_RESULTS_DIR: the course's own config sets it
        **{k: v for k, v in os.environ.items() if k != "HELPERS_RESULTS_DIR"},
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
        text=True, timeout=2400,  # a guard against a hung kernel: six students' 01, 04 and 05
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


def exercise_points(name, answer=lambda source: source) -> dict:
    """Run the notebook's import cell and its exercise cells (answers passed through ``answer``)
    in one namespace: grade_id -> the points its test cell ends with (nbgrader's partial credit).
    Raises where a test fails."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    imports = next(
        c.source for c in nb.cells if c.cell_type == "code" and "from helpers" in c.source
    )
    namespace, points = {}, {}
    exec(compile(imports + "\n" + CONTEXT.get(name, ""), name, "exec"), namespace)
    for c in nb.cells:
        meta = c.metadata.get("nbgrader", {})
        if c.cell_type == "code" and meta.get("solution"):
            exec(compile(answer(c.source), name, "exec"), namespace)
        elif c.cell_type == "code" and meta.get("grade"):
            exec(compile(c.source, name, "exec"), namespace)
            points[meta["grade_id"]] = namespace["points"]
    return points


@pytest.mark.parametrize("name", [n for n in POINTS if n != "06_report.ipynb"])
def test_the_solutions_earn_every_point_and_the_stubs_none_without_stopping(name):
    assert exercise_points(name) == POINTS[name]  # raises if any test fails
    stub = exercise_points(name, lambda s: SOLUTION.sub("raise NotImplementedError()\n", s))
    assert stub == dict.fromkeys(POINTS[name], 0)


def test_a_wrong_answer_fails_its_test():
    def no_transpose(source):
        return source.replace(
            ".transpose(0, 1, 3, 2, 4, 5)\n    return grid.reshape(n,",
            "\n    return grid.reshape(n,",
        )

    with pytest.raises(AssertionError):
        exercise_points("01_data_and_patches.ipynb", no_transpose)


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
            for key, cell in kept.items():  # the visible tests stay, the hidden ones go
                assert cell.source.strip() == HIDDEN.sub("", visible[key].source).strip()
        else:
            assert kept["written_answer"].source == "YOUR ANSWER HERE"
        assert not any(c.get("outputs") for c in student.cells if c.cell_type == "code")


SMALL = {  # a cheap assignment: a few seconds of training per notebook
    "04_autoencoder_baseline": {
        "n_train": 100, "n_test": 20, "epochs": 1, "filters": [8, 16], "hybrid_epochs": 0,
        "with_checkpoints": False, "n_show": 2,
    },
    "05_mask_ratio_experiments": {
        "n_test": 20, "strategies": ["random"], "ratios": [0.5], "matrix": False,
        "predictors": ["biharmonic", "mean_colour"], "models_from": "train",
        "probe_predictors": [], "n_show": 2,
    },
}  # fmt: skip
CLASS = (
    "01_data_and_patches.ipynb",
    "04_autoencoder_baseline.ipynb",
    "05_mask_ratio_experiments.ipynb",
)


def submit(course, student, notebooks, assignment="ps"):
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    for name, notebook in notebooks.items():
        nbformat.write(notebook, folder / name)


def test_a_fake_class_is_graded_end_to_end(tmp_path):
    """Six students: a correct one, one with a wrong patchify, one whose notebooks raise, one
    whose model is corrupt, one whose notebooks ask for too much memory, one who answered nothing.
    nbgrader autogrades the exercises of notebooks 01, 04 and 05 (each notebook in its own
    kernel, small parameters); ``grade`` scores the models (each in its own process)."""
    course = grading.make_course(
        tmp_path / "course", "ps", notebooks=CLASS, memory_mb=8192, parameters=SMALL
    )
    nbgrader(course, "generate_assignment", "ps")
    solution = {n: nbformat.read(course / "source" / "ps" / n, as_version=4) for n in CLASS}
    student = {n: nbformat.read(course / "release" / "ps" / n, as_version=4) for n in CLASS}
    answers = {
        c.metadata.nbgrader["grade_id"]: c.source
        for nb in solution.values()
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }

    def answered(change=lambda s: s):
        out = {}
        for name, released in student.items():
            nb = nbformat.from_dict(json.loads(json.dumps(released)))
            for c in nb.cells:
                if c.metadata.get("nbgrader", {}).get("solution"):
                    c.source = change(answers[c.metadata.nbgrader["grade_id"]])
            out[name] = nb
        return out

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
    submit(course, "fay", student)  # nothing answered
    nbgrader(course, "autograde", "ps")
    nbgrader(course, "generate_feedback", "ps")
    nbgrader(course, "export")
    with open(course / "grades.csv", newline="") as f:
        points = {r["student_id"]: float(r["raw_score"]) for r in csv.DictReader(f)}
    # 01: 2 + 1 points, 04: 2, 05: 2
    assert points == {"ana": 7.0, "bo": 5.0, "cas": 0.0, "dia": 7.0, "eli": 0.0, "fay": 0.0}
    for who in points:
        for name in CLASS:
            assert (course / "feedback" / who / "ps" / name.replace(".ipynb", ".html")).is_file()
    feedback = (course / "feedback" / "cas" / "ps" / "01_data_and_patches.html").read_text()
    assert "my notebook is broken" in feedback
    eli = (course / "feedback" / "eli" / "ps" / "01_data_and_patches.html").read_text()
    assert "MemoryError" in eli
    # the unanswered notebooks ran to their last cell: 05's sweep wrote its results
    fay = course / "autograded" / "fay" / "ps"
    assert (fay / "results" / "quick" / "metrics.csv").is_file()

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
    notebooks = (tmp_path / "c" / "source" / "hw1").glob("*.ipynb")
    assert sorted(p.name for p in notebooks) == sorted(POINTS)
    config = (tmp_path / "c" / "nbgrader_config.py").read_text()
    assert "c.ExecutePreprocessor.timeout = 1800" in config
    assert f"if {16384 * 2**20} and" in config
    assert "nbgrader generate_assignment hw1" in capsys.readouterr().out
    kit = tmp_path / "c" / "source" / "hw1"  # released with the notebooks
    requirements = (kit / "requirements.txt").read_text()
    assert "tensorflow==" in requirements and "-e ." not in requirements
    shipped = sorted(p.name for p in checkpoints.CHECKPOINT_DIR.glob("*.keras"))
    assert sorted(p.name for p in (kit / "checkpoints").glob("*.keras")) == shipped
    assert main(["course", "--output", str(tmp_path / "d"), "--assignment", "../x"]) == 2


def test_an_unanswered_student_version_runs_to_its_last_cell(tmp_path, monkeypatch):
    """The student versions of all six notebooks, nothing answered, run in order at the smoke
    profile's sizes (05 on the models 03 and 04 trained): every notebook reaches its last cell,
    writes what the next one reads, and every exercise's test cell says 0 points."""
    import papermill
    import yaml
    from nbgrader.utils import determine_grade

    course = grading.make_course(tmp_path / "course", "mim")
    nbgrader(course, "generate_assignment", "mim")
    release = course / "release" / "mim"
    monkeypatch.setenv("HELPERS_RESULTS_DIR", str(release / "results"))
    smoke = yaml.safe_load((NOTEBOOKS.parent / "params" / "smoke.yaml").read_text())
    overrides = {"05_mask_ratio_experiments": {"plan": "mixed", "models_from": "notebooks"}}
    order = sorted(p.name for p in release.glob("*.ipynb"))
    assert order == sorted(grading.EXERCISE_NOTEBOOKS)
    for name in order:
        stem = name.removesuffix(".ipynb")
        parameters = {
            **smoke["common"], **smoke["notebooks"].get(stem, {}), **overrides.get(stem, {})
        }  # fmt: skip
        if stem == "06_report":
            parameters = {k: v for k, v in parameters.items() if k == "run_name"}
        done = papermill.execute_notebook(
            str(release / name),
            str(tmp_path / name),
            parameters=parameters,
            cwd=str(release),
            kernel_name="python3",
            progress_bar=False,
        )  # fmt: skip; raises where a cell fails
        code = [c for c in done.cells if c.cell_type == "code"]
        assert code[-1].get("execution_count"), f"{name} stopped before its last cell"
        for cell in graded_cells(done).values():
            if cell.cell_type == "code":
                assert determine_grade(cell)[0] == 0, (name, cell.metadata.nbgrader["grade_id"])
        if stem == "03_vit_masked_reconstruction":  # what 04 and 05 read
            for kind in ("vit", "mae"):
                assert (release.parent / "saved_models" / f"03_{kind}" / "best.keras").is_file()
        if stem == "04_autoencoder_baseline":
            assert "mask-token ViT (notebook 03)" in json.dumps(done.cells[-1].outputs)
    assert (release / "results" / "smoke" / "metrics.csv").is_file()
    provenance = json.loads((release / "results" / "smoke" / "provenance.json").read_text())
    assert set(provenance["pretrained"]) == {"vit", "mae", "cnn"}  # the models of 03 and 04
