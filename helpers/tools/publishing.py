"""Publish a course checkpoint (:mod:`helpers.checkpoints`) with its provenance in ``NAME.json``:
command, commit, :func:`data_hash`, training budget, held-out and reproducible metrics."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from .._checks import SettingError
from .._io import PROJECT_ROOT, write_atomic
from ..checkpoints import path
from ..data import load_dataset
from ..masking import cell_seed, make_mask
from .evaluation import load_test_images, score_predictor

STRATEGIES = ("random", "rows", "columns")
RATIOS = (0.3, 0.5, 0.7)
REPRODUCE_N = 200
REFERENCES = ("biharmonic", "mean_colour")


def data_hash(data_dir) -> str:
    """SHA-256 of the ``data_batch_*`` files of a CIFAR-10 python-batch folder, in name order."""
    files = sorted(Path(data_dir).glob("data_batch_*"), key=lambda p: (len(p.name), p.name))
    if not files:
        raise SettingError("data_dir", str(data_dir), "holds no data_batch_* files")
    digest = hashlib.sha256()
    for file in files:  # one file in memory at a time
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _commit() -> str:
    git = ["git", "rev-parse", "HEAD"]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(git, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    return "unknown"


def reproduce_metrics(model) -> dict:
    """``{strategy: {"psnr_masked": dB, "ssim": value}}`` of ``model`` on notebook 03's test set:
    the first :data:`REPRODUCE_N` test images of the sample dataset (seed 0), 50 % masks, seed 0."""
    images = load_dataset("sample", n_test=REPRODUCE_N, seed=0).x_test
    out = {}
    for s in STRATEGIES:
        mask = make_mask(s, 0.5, images=images, patch_size=4, seed=cell_seed(0, s, 0.5))
        v = score_predictor(model, images, mask)[0]
        out[s] = {"psnr_masked": round(v["psnr_masked_mean"], 4), "ssim": round(v["ssim_mean"], 5)}
    return out


def heldout_metrics(model, data_dir, seed: int = 0) -> dict:
    """Masked-region PSNR of ``model``, its untrained twin and the references on the
    ``test_batch`` of ``data_dir``: ``{"model"|"untrained"|reference: {"strategy@ratio": dB}}``."""
    from ..models import load_predictor, untrained_twin  # lazy: pulls in Keras

    images = load_test_images("cifar10", data_dir)
    predictors = {"model": model, "untrained": untrained_twin(model, seed)}
    predictors.update({name: load_predictor(name) for name in REFERENCES})
    out = {name: {} for name in predictors}
    for s, r in itertools.product(STRATEGIES, RATIOS):
        mask = make_mask(s, r, images=images, patch_size=4, seed=cell_seed(seed, s, r))
        for name, predictor in predictors.items():
            summary, _ = score_predictor(predictor, images, mask)
            out[name][f"{s}@{r:g}"] = round(summary["psnr_masked_mean"], 4)
    return out


def publish(run_dir, name: str, data_dir, command: str, folder=None) -> Path:
    """Atomically save ``run_dir/best.keras`` (no optimizer state) and provenance as ``name``."""
    from ..models import load_predictor  # lazy: pulls in Keras
    from ..training import BEST, read_history, save_atomic  # lazy: pulls in Keras

    run_dir = Path(run_dir)
    target = path(name, folder)
    if not (run_dir / BEST).exists():
        raise SettingError("run", str(run_dir), f"holds no {BEST}: train it first")
    model = load_predictor(run_dir / BEST)
    if model.builder != name:
        raise SettingError("name", name, f"the run's model is a {model.builder!r}")
    history = read_history(run_dir / "history.csv")
    start = time.perf_counter()
    record = {
        "name": name,
        "label": model.label,
        "command": command,
        "commit": _commit(),
        "data_sha256": data_hash(data_dir),
        "minutes": round(sum(float(r["seconds"]) for r in history) / 60, 1),
        "epochs": len(history),
        "images_seen": int(float(history[-1]["images_seen"])) if history else 0,
        "parameters": int(model.count_params()),
        "settings": model.get_config(),
        "heldout": heldout_metrics(model, data_dir),
        "reproduce": reproduce_metrics(model),
    }
    record["scoring_seconds"] = round(time.perf_counter() - start, 1)
    save_atomic(model, target)  # loaded uncompiled: the weights without the optimizer's state
    write_atomic(target.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    return target


def heldout_table(record: dict, ratio: float = 0.5) -> list[dict]:
    """Held-out metrics at ``ratio``: a row per predictor and the model's margin over biharmonic."""
    who = ("model", "untrained", *REFERENCES)
    rows = {w: {s: record["heldout"][w][f"{s}@{ratio:g}"] for s in STRATEGIES} for w in who}
    rows["model - biharmonic"] = {s: rows["model"][s] - rows["biharmonic"][s] for s in STRATEGIES}
    return [{"predictor": w, **values} for w, values in rows.items()]


def close_enough(a, b, tolerance: float = 0.02) -> bool:
    """Two metric values within ``tolerance`` (dB or SSIM units), as machines differ a little."""
    return bool(np.isclose(a, b, atol=tolerance, rtol=0))
