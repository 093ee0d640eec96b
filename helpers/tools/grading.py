"""Grade students' models on a hidden test set (``python -m helpers grade``): each untrusted
``.keras`` file is loaded in safe mode and scored in its own process under limits; nbgrader."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .._checks import (
    SettingError,
    check_choice,
    check_hidden,
    check_positive_int,
    check_positive_number,
    check_ratio,
)
from .._io import PROJECT_ROOT, write_atomic, write_csv
from ..checkpoints import CHECKPOINT_DIR
from ..masking import make_mask
from ..metrics import evaluate
from ..patches import patch_mask_to_pixels
from .evaluation import load_test_images

GRADED_STRATEGIES = ("random", "rows", "columns")
REFERENCES = ("biharmonic", "mean_colour")
MODEL_NAME = "model.keras"  # the one graded when a folder holds several .keras files
TWIN_SEED = 0  # the seed of every submission's untrained twin (fresh weights, same architecture)
MIN_TRAINING_GAIN_DB = 1.0  # masked-region PSNR (dB) training must add over the untrained twin
_ADDED = f"training added at least {MIN_TRAINING_GAIN_DB:g} dB of masked-region PSNR over its "
RUBRIC = (  # (criterion, points per strategy, what earns them)
    ("runs", 1, "returns finite images of the right shape"),
    ("training_added", 2, _ADDED + "untrained twin (same architecture, fresh weights)"),
    ("beats_biharmonic", 1, "masked-region PSNR at least biharmonic inpainting's"),
)
_POINTS = sum(p for _, p, _ in RUBRIC)  # per strategy
GRADES_CSV, LEADERBOARD, GRADING_JSON = "grades.csv", "leaderboard.md", "grading.json"
METRICS = ("psnr_masked", "ssim")
TWIN_COLUMNS = ("psnr_masked_untrained", "training_added")  # per strategy, students only


def find_submissions(folder) -> list[tuple[str, Path | None, str | None]]:
    """``(student, model file or None, reason it cannot be graded or None)`` per entry, by name."""
    folder = Path(folder)
    if not folder.is_dir():
        allowed = "allowed: a folder with one sub-folder per student, each holding a .keras model"
        raise SettingError("submissions", str(folder), f"is not a folder; {allowed}")
    found = []
    for entry in (e for e in sorted(folder.iterdir()) if not e.name.startswith(".")):
        models = sorted(p for p in entry.rglob("*.keras") if p.is_file()) if entry.is_dir() else []
        model = (entry / MODEL_NAME if len(models) > 1 else models[0]) if models else None
        why = None
        if not entry.is_dir():
            why = "not a folder: each student's model goes in a folder"
        elif not models:
            why = "no .keras file in the folder"
        elif len(models) > 1 and not (entry / MODEL_NAME).is_file():
            names = ", ".join(str(p.relative_to(entry)) for p in models)
            model, why = None, f"several .keras files ({names}); name one {MODEL_NAME}"
        found.append((entry.name, model, why))
    return found


def check_archive(path: Path, max_mb: float) -> str | None:
    """Why the file at ``path`` is no Keras model of at most ``max_mb`` MB to load, or None."""
    size = path.stat().st_size / 2**20
    if size > max_mb:
        return f"{path.name} is {size:.1f} MB, more than the {max_mb:g} MB allowed"
    if not zipfile.is_zipfile(path):
        return f"{path.name} is not a Keras model file (a .keras file is a zip archive)"
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"{path.name} is a corrupt zip archive ({exc})"
    unpacked = sum(e.file_size for e in entries) / 2**20
    if unpacked > max_mb:
        return f"{path.name} unpacks to {unpacked:.1f} MB, more than the {max_mb:g} MB allowed"
    if "config.json" not in {e.filename for e in entries}:
        return f"{path.name} is a zip archive without config.json: not a saved Keras model"


class _Refused(Exception):
    """The reason a submission gets no points, as the grader writes it."""


def _error(exc: Exception) -> str:
    """``"Type: message"`` of ``exc`` on one line, the message cut to 300 characters."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _untrained_twin(model):
    """``model`` rebuilt from its config with fresh weights (seed :data:`TWIN_SEED`)."""
    from ..models import untrained_twin  # lazy: pulls in Keras

    try:  # untrained_twin deserializes the config in safe mode
        return untrained_twin(model, seed=TWIN_SEED)
    except Exception as exc:  # untrusted config: any failure is the submission's
        raise _Refused(
            "could not be rebuilt from its config with fresh weights in safe mode, for its "
            f"untrained twin ({_error(exc)})"
        ) from None


def _scores(model, images: np.ndarray, mask: np.ndarray, batch_size: int) -> dict:
    """Mean :data:`METRICS` of ``model`` on ``images``, ``mask`` zeroed; else :class:`_Refused`."""
    from ..models import mask_patch_size  # lazy: pulls in Keras

    names = sorted(t.name for t in (getattr(model, "inputs", None) or []))
    if names and names != ["images", "mask"]:
        takes = "a graded model takes 'images' and 'mask'"
        raise _Refused(f"wrong interface: its inputs are {names}; {takes}")
    need, hidden = getattr(model, "min_masked", 0), int(mask.sum(axis=1).min())
    try:
        check_hidden(hidden, need, mask.shape[1], "mask", hidden)
    except SettingError as exc:
        raise _Refused(f"the graded masks: {exc.problem}") from None
    patch = mask_patch_size(images.shape[1:3], mask.shape[1])
    zeroed = np.where(patch_mask_to_pixels(mask, patch, images.shape[1:3]), 0, images)
    out = np.empty(images.shape, dtype=np.float32)
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        inputs = {"images": zeroed[sl], "mask": mask[sl].astype(np.float32)}
        try:
            pred = np.asarray(model.predict_on_batch(inputs), dtype=np.float32)
        except Exception as exc:
            shape = ", ".join(str(n) for n in images.shape[1:])
            raise _Refused(
                f"wrong interface: it must take {{'images': (N, {shape}) float32, 'mask': "
                f"(N, {mask.shape[1]}) 0/1}} and return images (N, {shape}) ({_error(exc)})"
            ) from None
        if pred.shape != images[sl].shape:
            raise _Refused(
                f"wrong interface: returned shape {tuple(pred.shape)} for images of shape "
                f"{tuple(images[sl].shape)}; it must return full images of the same shape"
            )
        if not np.isfinite(pred).all():
            raise _Refused("returned NaN or infinite values")
        out[sl] = pred
    values = evaluate(images, out, mask, patch)
    return {metric: round(float(np.mean(values[metric])), 4) for metric in METRICS}


def grade_one(model: str, work: Path, strategies, batch_size: int = 256) -> dict:
    """Row of ``model`` (reference or ``.keras`` path) on ``work``'s images: per strategy scores."""
    import keras  # lazy: Keras is heavy

    from ..models import load_predictor  # lazy: pulls in Keras

    images = np.load(work / "images.npy", allow_pickle=False)
    masks = {s: np.load(work / f"mask_{s}.npy", allow_pickle=False) for s in strategies}
    start = time.perf_counter()
    if model in REFERENCES:
        predictor = load_predictor(model)
    else:
        try:
            predictor = keras.saving.load_model(model, compile=False, safe_mode=True)
        except Exception as exc:  # untrusted file: any failure is the submission's
            raise _Refused(f"could not be loaded in safe mode ({_error(exc)})") from None
    row = {"load_seconds": round(time.perf_counter() - start, 3)}
    for s in strategies:
        start = time.perf_counter()
        values = _scores(predictor, images, masks[s], batch_size)
        row[f"{s}_seconds"] = round(time.perf_counter() - start, 3)
        row.update({f"{s}_{metric}": v for metric, v in values.items()})
    if model in REFERENCES:  # no weights, nothing learned: no twin
        return row | {f"{s}_{c}": None for s in strategies for c in TWIN_COLUMNS}
    twin = _untrained_twin(predictor)
    del predictor  # the twin is scored alone, within the same memory limit
    for s in strategies:
        try:
            psnr = _scores(twin, images, masks[s], batch_size)["psnr_masked"]
        except _Refused as exc:
            raise _Refused(f"its untrained twin (fresh weights) failed: {exc}") from None
        row[f"{s}_psnr_masked_untrained"] = psnr
        row[f"{s}_training_added"] = round(row[f"{s}_psnr_masked"] - psnr, 4)
    return row


def run_isolated(
    model: str, work: Path, strategies, *, timeout: float, memory_mb: float | None
) -> dict:
    """:func:`grade_one` in a new session, killed past ``timeout`` s or ``memory_mb`` MB of RSS."""
    out = work / f"result-{secrets.token_hex(4)}.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "helpers.tools.grading", model, str(work), str(out), *strategies]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, cwd=work, env=env, stdout=log, stderr=log, start_new_session=True
        )
        start, peak, why = time.monotonic(), 0.0, None
        while proc.poll() is None:
            with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/status") as f:  # VmRSS in kB
                peak = max([peak, *(int(n.split()[1]) / 1024 for n in f if n.startswith("VmRSS:"))])
            if memory_mb is not None and peak > memory_mb:
                why = f"used more than the {memory_mb:g} MB of memory allowed (stopped)"
            elif time.monotonic() - start > timeout:
                why = f"took longer than the {timeout:g} s allowed (stopped)"
            if why:
                os.killpg(proc.pid, signal.SIGKILL)  # the process and anything it started
                proc.wait()
                break
            time.sleep(0.05)
        log.seek(0)
        tail = log.read().decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
    if why is None and proc.returncode == 0 and out.is_file():
        result = json.loads(out.read_text())
        out.unlink()
    else:
        why = why or f"the grading process failed (exit code {proc.returncode}): {tail[0][:300]}"
        result = {"ok": False, "reason": why}
    return {**result, "seconds": round(time.monotonic() - start, 2), "peak_mb": round(peak)}


def score(row: dict, biharmonic: dict, strategies) -> int:
    """Points of one row by :data:`RUBRIC` (0 unless it ran); ``biharmonic``: that reference."""
    if not row["ok"]:
        return 0
    runs, trained, beats = (points for _, points, _ in RUBRIC)
    earned = [trained * (row[f"{s}_training_added"] >= MIN_TRAINING_GAIN_DB) for s in strategies]
    earned += [beats * (row[k] >= biharmonic[k]) for k in (f"{s}_psnr_masked" for s in strategies)]
    return runs * len(strategies) + sum(earned)


def leaderboard(rows: list[dict], settings: dict) -> str:
    """The ranking as Markdown: graded rows by score, the rows not graded, the rubric."""
    strategies = settings["strategies"]
    head = ["#", "student", "score", *(f"{s} PSNR (dB) / SSIM" for s in strategies)]
    head += [f"{s} untrained twin PSNR / training added (dB)" for s in strategies] + ["seconds"]
    lines = [
        "# Leaderboard",
        "",
        f"{settings['n_test']} hidden test images, {', '.join(strategies)} masks at "
        f"{settings['ratio']:.0%}, masked-region PSNR and whole-image SSIM (mean over the "
        "images); the untrained twin is the same model rebuilt from its config with fresh "
        "weights, and training added is the model's masked-region PSNR minus the twin's; "
        "references (no twin: they do not learn) in italics. Rubric below.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    rank = 0
    for row in (r for r in rows if r["status"] == "graded"):
        student = row["kind"] == "student"
        rank += student  # references are not ranked
        cells = [str(rank) if student else "", row["student"] if student else f"*{row['student']}*"]
        cells.append(f"{row['score']} / {row['max_score']}" if student else "")
        cells += [f"{row[f'{s}_psnr_masked']:.2f} / {row[f'{s}_ssim']:.3f}" for s in strategies]
        for s in strategies:  # empty for a reference: no twin
            twin, added = row[f"{s}_psnr_masked_untrained"], row[f"{s}_training_added"]
            cells.append("" if twin is None else f"{twin:.2f} / {added:+.2f}")
        lines.append("| " + " | ".join([*cells, f"{row['seconds']:.1f}"]) + " |")
    if failed := [r for r in rows if r["status"] != "graded"]:
        lines += ["", "## Not graded", "", "| student | score | reason |", "|---|---|---|"]
        lines += [f"| {r['student']} | 0 / {r['max_score']} | {r['reason']} |" for r in failed]
    lines += ["", "## Rubric (points per strategy)", "", *(f"- {p}: {w}" for _, p, w in RUBRIC)]
    lines.append(f"- {len(strategies) * _POINTS} points in all")
    return "\n".join(lines) + "\n"


def grade(
    submissions,
    data_dir,
    output,
    *,
    ratio: float = 0.5,
    strategies=GRADED_STRATEGIES,
    n_test: int | None = None,
    mask_seed: int | None = None,
    patch_size: int = 4,
    timeout: float = 600.0,
    memory_mb: float | None = 4096.0,
    max_model_mb: float = 200.0,
    progress: bool = True,
) -> dict:
    """Grade each submission on ``data_dir``'s ``test_batch``, files in ``output``; ``timeout`` (s)
    and ``memory_mb`` per model process, ``max_model_mb`` per file: rows, settings and paths."""
    ratio = check_ratio(ratio)
    strategies = [
        check_choice(s, "strategies", GRADED_STRATEGIES) for s in dict.fromkeys(strategies)
    ]
    check_positive_number(timeout, "timeout")
    if memory_mb is not None:
        check_positive_number(memory_mb, "memory_mb")
    check_positive_number(max_model_mb, "max_model_mb")
    found = find_submissions(submissions)
    mask_seed = secrets.randbelow(2**31) if mask_seed is None else mask_seed
    check_positive_int(mask_seed, "mask_seed", minimum=0)
    images = load_test_images("cifar10", data_dir, n_test)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    settings = {"submissions": str(submissions), "data_dir": str(data_dir), "n_test": len(images)}
    settings |= dict(ratio=ratio, strategies=strategies, mask_seed=mask_seed, patch_size=patch_size)
    settings |= dict(timeout=timeout, memory_mb=memory_mb, max_model_mb=max_model_mb)
    settings["rubric"] = [{"column": c, "points": p, "for": w} for c, p, w in RUBRIC]
    settings |= {"min_training_gain_db": MIN_TRAINING_GAIN_DB, "twin_seed": TWIN_SEED}
    settings["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with tempfile.TemporaryDirectory(prefix="grading-") as tmp:
        work = Path(tmp)
        np.save(work / "images.npy", images)
        for s in strategies:
            mask = make_mask(s, ratio, images=images, patch_size=patch_size, seed=mask_seed)
            np.save(work / f"mask_{s}.npy", mask)
        jobs = [(name, "reference", None, None) for name in REFERENCES]
        jobs += [(student, "student", path, why) for student, path, why in found]
        rows = []
        for student, kind, path, why in tqdm(jobs, desc="grading", disable=not progress):
            row = {"student": student, "kind": kind, "model": None, "size_mb": None}
            if path is not None:  # a student's model file
                row["model"] = f"{student}/{path.name}"
                row["size_mb"] = round(path.stat().st_size / 2**20, 3)
                why = check_archive(path, max_model_mb)
            if why is not None:
                row |= {"ok": False, "reason": why}
            else:
                model = student if path is None else str(path.resolve())
                row |= run_isolated(model, work, strategies, timeout=timeout, memory_mb=memory_mb)
            rows.append(row)
    references = dict(zip(REFERENCES, rows))
    if broken := [r for r in references.values() if not r["ok"]]:
        raise RuntimeError(f"a reference could not be graded: {broken[0]['reason']}")
    for row in rows:
        student = row["kind"] == "student"
        row["score"] = score(row, references["biharmonic"], strategies) if student else None
        row["max_score"] = len(strategies) * _POINTS if student else None
        row["status"] = "graded" if row.pop("ok") else "not graded"

    def rank(row):  # students by score, then the references; each by mean masked-region PSNR
        psnr = np.mean([row[f"{s}_psnr_masked"] for s in strategies])
        return (-(row["score"] if row["kind"] == "student" else -1), -psnr, row["student"])

    graded = sorted((r for r in rows if r["status"] == "graded"), key=rank)
    rows = graded + [r for r in rows if r["status"] != "graded"]
    per = [f"{s}_{m}" for group in (METRICS, TWIN_COLUMNS) for s in strategies for m in group]
    tail = ["load_seconds", *(f"{s}_seconds" for s in strategies), "seconds", "peak_mb", "reason"]
    columns = ["student", "kind", "status", "score", "max_score", *per, "model", "size_mb", *tail]
    paths = [output / GRADES_CSV, output / LEADERBOARD, output / GRADING_JSON]
    write_csv(paths[0], rows, columns)
    write_atomic(paths[1], leaderboard(rows, settings))
    write_atomic(paths[2], json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
    return {"rows": rows, "settings": settings, "paths": paths}


EXERCISE_NOTEBOOKS = (  # the committed notebooks that hold nbgrader exercises (solution versions)
    "01_data_and_patches.ipynb",
    "02_masking_strategies.ipynb",
    "03_vit_masked_reconstruction.ipynb",
    "04_autoencoder_baseline.ipynb",
    "05_mask_ratio_experiments.ipynb",
    "06_report.ipynb",
)

NBGRADER_CONFIG = '''\
"""nbgrader settings of this course folder (written by python -m helpers course)."""

import os
import resource
from pathlib import Path

c = get_config()  # noqa: F821 (nbgrader defines it)
c.CourseDirectory.course_id = {course!r}
c.CourseDirectory.root = str(Path(__file__).resolve().parent)
# every notebook runs in its own kernel; a cell that runs longer than this is stopped (notebook 03
# trains two models for a few minutes at its defaults)
c.ExecutePreprocessor.timeout = {timeout}
# figures of the students' runs stay in the course folder, not in the project's figures/
os.environ.setdefault("HELPERS_FIGURES_DIR", str(Path(__file__).resolve().parent / "figures"))
# each student's sweep (notebook 05) and report (06) use a results folder beside their notebooks
# (a relative path: every kernel starts in the folder of the notebook it runs), never the
# project's committed results
os.environ.setdefault("HELPERS_RESULTS_DIR", "results")
# every kernel nbgrader starts (and nbgrader itself) may map at most this many bytes: a notebook
# that asks for more gets a MemoryError in its own cell (TensorFlow maps about 3.2 GB virtual)
if {memory_bytes} and hasattr(resource, "RLIMIT_AS"):
    _hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    _limit = {memory_bytes} if _hard == resource.RLIM_INFINITY else min({memory_bytes}, _hard)
    resource.setrlimit(resource.RLIMIT_AS, (_limit, _hard))
'''


def make_course(
    folder,
    assignment: str = "mim",
    notebooks=EXERCISE_NOTEBOOKS,
    timeout: int = 1800,
    memory_mb: float | None = 16384,
    parameters: dict | None = None,
):
    """Write the nbgrader course ``folder`` (``nbgrader_config.py``, ``source/<assignment>/``) and
    return it. ``timeout``: seconds a cell may run; ``memory_mb``: each kernel's address space
    (None: no limit); ``parameters``: notebook stem -> {parameter: value}, injected by papermill."""
    import nbformat  # lazy: notebooks only
    from papermill.parameterize import parameterize_notebook  # lazy: notebooks only

    if not assignment or not assignment.replace("-", "").replace("_", "").isalnum():
        allowed = "allowed: letters, digits, - and _ (a folder name)"
        raise SettingError("assignment", assignment, allowed)
    check_positive_int(timeout, "timeout")
    if memory_mb is not None:
        check_positive_number(memory_mb, "memory_mb")
    source_dir = PROJECT_ROOT / "notebooks"
    if missing := [n for n in notebooks if not (source_dir / n).is_file()]:
        raise SettingError("notebooks", missing, f"allowed: notebooks of {source_dir}")
    folder = Path(folder)
    target = folder / "source" / assignment
    target.mkdir(parents=True, exist_ok=True)
    parameters = dict(parameters or {})
    if unknown := sorted(set(parameters) - {Path(n).stem for n in notebooks}):
        raise SettingError("parameters", unknown, "allowed: the stems of the course's notebooks")
    for name in notebooks:
        nb = nbformat.read(source_dir / name, as_version=4)
        if parameters.get(Path(name).stem):
            nb = parameterize_notebook(nb, parameters[Path(name).stem], kernel_name="python3")
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
            cell.metadata.pop("papermill", None)
        write_atomic(target / name, nbformat.writes(nb) + "\n")
    memory_bytes = 0 if memory_mb is None else int(memory_mb * 2**20)
    config = dict(course="masked-image-modeling", timeout=timeout, memory_bytes=memory_bytes)
    write_atomic(folder / "nbgrader_config.py", NBGRADER_CONFIG.format(**config))
    for file in sorted(CHECKPOINT_DIR.glob("*.keras")) + sorted(CHECKPOINT_DIR.glob("*.json")):
        (target / "checkpoints").mkdir(exist_ok=True)
        shutil.copyfile(file, target / "checkpoints" / file.name)
    source = CHECKPOINT_DIR.parent / "requirements.txt"
    if source.is_file():
        lines = [ln for ln in source.read_text().splitlines() if not ln.strip().startswith("-e")]
        write_atomic(target / "requirements.txt", "\n".join(lines) + "\n")
    return folder


if __name__ == "__main__":  # the worker of run_isolated: MODEL WORK OUT STRATEGY...
    model, work, out, *strategies = sys.argv[1:]
    try:
        result = {"ok": True, **grade_one(model, Path(work), strategies)}
    except _Refused as exc:
        result = {"ok": False, "reason": str(exc)}
    write_atomic(out, json.dumps(result) + "\n")
