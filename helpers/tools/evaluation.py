"""Score predictors on test images with fixed masks (``python -m helpers evaluate``)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .. import data
from .._checks import SettingError, check_choice, check_patch_size, check_positive_int, check_ratio
from .._io import write_atomic, write_csv
from ..masking import SCORES, STRATEGIES, cell_seed, make_mask
from ..metrics import evaluate, sharpness, summarize
from ..recipes import NON_LEARNED, learns

SCORE_CHOICES = (*SCORES, "gradient")  # importance scores: model-free, or the model's gradients
METRIC_LABELS = (  # (key, label) in table order
    ("psnr_masked", "PSNR masked region (dB)"),
    ("mse_masked", "MSE masked region"),
    ("psnr", "PSNR whole image (dB)"),
    ("ssim", "SSIM whole image"),
    ("mse", "MSE whole image"),
)
_CIFAR_FOLDER = "allowed: a folder in the CIFAR-10 python-batch format holding test_batch"


def check_score(score, strategy: str, model) -> str | None:
    """The importance score name to use (None unless the strategy is ``importance``)."""
    if score is not None and score not in SCORE_CHOICES and not callable(score):
        check_choice(score, "score", SCORE_CHOICES)
    if score == "gradient" and not learns(model):
        name = getattr(model, "name", model)
        problem = f"needs a trained Keras model (vit, mae or cnn); {name} has no gradients"
        raise SettingError("score", score, f"{problem}; allowed with it: {', '.join(SCORES)}")
    return ("variance" if score is None else score) if strategy == "importance" else None


def find_test_batch(data_dir) -> Path:
    """``test_batch`` in ``data_dir`` or in its ``cifar-10-batches-py/`` subfolder."""
    folder = Path(data_dir).expanduser()
    for candidate in (folder, folder / data.CIFAR_DIRNAME):
        if (candidate / "test_batch").is_file():
            return candidate / "test_batch"
    where = f"no test_batch in it or in its {data.CIFAR_DIRNAME}/ subfolder"
    where = where if folder.exists() else "the folder does not exist"
    problem = f"{where}; {_CIFAR_FOLDER} (data_batch_* are not needed for evaluation)"
    raise SettingError("data_dir", str(data_dir), problem)


def load_test_images(
    dataset: str = "cifar10", data_dir=None, n_test: int | None = None, grayscale: bool = False
) -> np.ndarray:
    """Test images (N, 32, 32, 3) float32 in [0, 1], or (N, 32, 32, 1) with ``grayscale``.

    Args:
        dataset: ``cifar10``: the ``test_batch`` of ``data_dir`` (default: the Keras cache
            folder); ``sample``: the test split of the embedded dataset, seed 0.
        n_test: the first ``n_test`` images; None or 0: all.
    """
    check_choice(dataset, "dataset", data.DATASETS)
    if n_test is not None:
        n_test = check_positive_int(n_test, "n_test", minimum=0) or None
    if dataset == "sample":
        images = data.load_dataset("sample", seed=0).x_test
    else:
        path = data.keras_cache_dir() / data.CIFAR_DIRNAME / "test_batch"
        if data_dir is not None:
            path = find_test_batch(data_dir)
        elif not path.is_file():
            problem = f"not given, and the Keras cache folder {path.parent} has no test_batch"
            raise SettingError("data_dir", None, f"{problem}; {_CIFAR_FOLDER}")
        try:
            raw, _ = data.read_cifar_batch(path)
        except data.DatasetError as exc:
            raise SettingError("data_dir", str(data_dir), f"{exc}") from None
        images = raw.astype(np.float32) / np.float32(255.0)
    if n_test is not None and n_test > (n := len(images)):
        problem = f"is more than the {n} test images; allowed: 1..{n} or 0 for all"
        raise SettingError("n_test", n_test, problem)
    images = images[:n_test]
    return data.to_gray(images) if grayscale else images


def check_model_path(model) -> None:
    """Without loading: ``model`` must be a name of :data:`NON_LEARNED` or a ``.keras`` file."""
    if isinstance(model, str) and not learns(model):
        return
    path = Path(os.fspath(model))
    if not (str(path).endswith(".keras") and path.is_file()):
        problem = "no such file; give" if str(path).endswith(".keras") else "must be"
        allowed = "a .keras file saved by train (e.g. RUN/best.keras) or one of"
        raise SettingError("model", str(model), f"{problem} {allowed} {', '.join(NON_LEARNED)}")


def load_model(model):
    """The non-learned predictor for a name of :data:`NON_LEARNED`, else the saved model."""
    from ..models import load_predictor  # lazy: pulls in Keras

    check_model_path(model)
    try:
        return load_predictor(model)
    except Exception as exc:  # corrupt or foreign file
        problem = f"could not be loaded as a Keras model ({type(exc).__name__}: {exc})"
        raise SettingError("model", str(model), problem) from None


def cell_mask(images, strategy, ratio, patch_size, mask_seed, score_fn="variance") -> np.ndarray:
    """The sweep's masks (N, L) of the cell (``strategy``, ``ratio``) for ``mask_seed``."""
    kwargs = dict(images=images, patch_size=patch_size, score_fn=score_fn)
    return make_mask(strategy, ratio, seed=cell_seed(mask_seed, strategy, ratio), **kwargs)


def score_predictor(
    predictor, images: np.ndarray, mask: np.ndarray, *, batch_size: int = 256
) -> tuple[dict, np.ndarray]:
    """Reconstruct ``images`` with ``mask`` (N, L) hidden: (the metrics' mean and std, result)."""
    from ..models import reconstruct  # lazy: pulls in Keras

    predicted = reconstruct(predictor, images, mask, batch_size=batch_size)
    return summarize(evaluate(images, predicted, mask)), predicted


def evaluate_predictor(
    predictor,
    images: np.ndarray,
    *,
    strategy: str,
    ratio: float,
    patch_size: int = 4,
    mask_seed: int = 0,
    score_fn=None,
    batch_size: int = 256,
    untrained=None,
) -> dict:
    """Score ``predictor`` on ``images`` with the sweep's masks of (``strategy``, ``ratio``).

    Args:
        score_fn: ``importance`` only: a name of :data:`helpers.masking.SCORES` (default
            ``variance``), ``"gradient"`` or a function ``(images, patch_size) -> (N, L)``.
        untrained: the predictor's untrained twin (:func:`helpers.models.untrained_twin`).

    Returns:
        The settings, ``n_test``, ``n_masked`` (patches hidden per image), ``seconds``, the
        metrics, ``sharpness``; with ``untrained``, ``psnr_masked_untrained``, ``training_added``.
    """
    from ..importance import gradient_score_fn  # lazy: pulls in Keras
    from ..models import check_fits  # lazy: pulls in Keras

    strategy = check_choice(strategy, "strategy", STRATEGIES)
    ratio = check_ratio(ratio)
    patch_size = check_patch_size(patch_size, images.shape[1:3])
    check_positive_int(mask_seed, "mask_seed", minimum=0)
    score = check_score(score_fn, strategy, predictor)
    check_fits(predictor, images.shape[1:], patch_size, ratio=ratio)
    start = time.perf_counter()
    score_fn = gradient_score_fn(predictor) if score == "gradient" else score or "variance"
    mask = cell_mask(images, strategy, ratio, patch_size, mask_seed, score_fn)
    summary, predicted = score_predictor(predictor, images, mask, batch_size=batch_size)
    if untrained is not None:
        add_training_added(summary, untrained, images, mask)
    score = getattr(score, "__name__", "custom") if callable(score) else score
    n_masked = int(mask.sum(axis=1).max()) if mask.size else 0
    row = dict(strategy=strategy, ratio=ratio, patch_size=patch_size, mask_seed=mask_seed)
    row |= {"score": score, "n_test": int(images.shape[0]), "n_masked": n_masked}
    row |= {"seconds": time.perf_counter() - start, **summary}
    return row | {"sharpness": sharpness(images, predicted, mask)}


def run_evaluation(
    model,
    *,
    dataset: str = "cifar10",
    data_dir=None,
    strategy: str = "random",
    ratio: float = 0.5,
    n_test: int | None = None,
    mask_seed: int = 0,
    patch_size: int = 4,
    score=None,
    batch_size: int = 256,
    grayscale: bool = False,
) -> dict:
    """Check the settings, load the images and the model: settings + :func:`evaluate_predictor`."""
    # cheap checks first: a typo should not wait for TensorFlow to start
    check_model_path(model)
    strategy = check_choice(strategy, "strategy", STRATEGIES)
    ratio = check_ratio(ratio)
    score = check_score(score, strategy, model)
    check_positive_int(mask_seed, "mask_seed", minimum=0)
    check_positive_int(batch_size, "batch_size", minimum=1)
    images = load_test_images(dataset, data_dir, n_test, grayscale=grayscale)
    patch_size = check_patch_size(patch_size, images.shape[1:3])

    import keras  # lazy: Keras is heavy

    from ..models import untrained_twin  # lazy: pulls in Keras

    predictor = load_model(model)
    cell = dict(strategy=strategy, ratio=ratio, patch_size=patch_size, mask_seed=mask_seed)
    twin = untrained_twin(predictor, seed=0) if predictor.learned else None
    result = evaluate_predictor(
        predictor, images, **cell, score_fn=score, batch_size=batch_size, untrained=twin
    )
    settings = {"model": str(model), "model_name": predictor.name, "dataset": dataset}
    settings["data_dir"] = None if data_dir is None else str(data_dir)
    settings |= {"grayscale": bool(grayscale), "keras_backend": keras.backend.backend()}
    return {**settings, "keras_version": keras.__version__, **result}


def write_results(output_dir, results: dict) -> tuple[Path, Path]:
    """Write ``results`` atomically to ``metrics.json`` and a one-row ``metrics.csv``; the paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "metrics.json", out / "metrics.csv"
    write_atomic(json_path, json.dumps(results, indent=2, default=str) + "\n")
    write_csv(csv_path, [results])
    return json_path, csv_path


def format_table(results: dict) -> str:
    """The settings on a few lines, then one row per metric: mean and standard deviation."""
    lines = []
    if "model" in results:
        name, backend = results.get("model_name", "?"), results.get("keras_backend", "?")
        lines.append(f"model    {results['model']} ({name}, keras backend {backend})")
    if "dataset" in results:
        where = results.get("data_dir") and results["dataset"] == "cifar10"
        where = f" from {results['data_dir']}" if where else ""
        lines.append(f"data     {results['dataset']} test images{where}: {results['n_test']}")
    score = f", score {results['score']}" if results.get("score") else ""
    lines.append(
        f"masks    {results['strategy']} {results['ratio']:.2f} ({results['n_masked']} patches "
        f"hidden per image, patch {results['patch_size']}, mask seed {results['mask_seed']}{score})"
    )
    width = max(len(label) for _, label in METRIC_LABELS)
    lines += ["", f"{'metric':<{width}}  {'mean':>10}  {'std':>10}"]
    for key, label in METRIC_LABELS:
        if f"{key}_mean" in results:
            mean, std = results[f"{key}_mean"], results[f"{key}_std"]
            lines.append(f"{label:<{width}}  {mean:10.5f}  {std:10.5f}")
    if "sharpness" in results:  # one ratio for the set (helpers.metrics.sharpness): no std
        lines.append(f"{'sharpness hidden region':<{width}}  {results['sharpness']:10.5f}")
    if "training_added" in results:
        lines.append(
            f"\ntraining added {results['training_added']:+.2f} dB of masked-region PSNR over the "
            f"model's untrained twin ({results['psnr_masked_untrained']:.2f} dB: the same "
            "architecture and seed 0, its initial weights, on the same masks)"
        )
    return "\n".join(lines)


def add_training_added(summary: dict, twin, images: np.ndarray, mask: np.ndarray) -> dict:
    """Score ``twin`` on ``images``/``mask``; add ``psnr_masked_untrained``, ``training_added``."""
    scored, _ = score_predictor(twin, images, mask)
    summary["psnr_masked_untrained"] = scored["psnr_masked_mean"]
    summary["training_added"] = summary["psnr_masked_mean"] - scored["psnr_masked_mean"]
    return summary


def compare_predictors(
    predictors: dict,
    images: np.ndarray,
    *,
    strategy: str,
    ratio: float,
    patch_size: int = 4,
    mask_seed: int = 0,
    score_fn="variance",
    with_sharpness: bool = False,
    untrained: dict | None = None,
) -> tuple[list[dict], dict, np.ndarray]:
    """Reconstruct ``images`` with every predictor (label -> predictor) under the sweep's mask.

    Args:
        untrained: label -> its untrained twin; adds ``psnr_masked_untrained``, ``training_added``.

    Returns:
        ``(rows, reconstructions, mask)``: one row per predictor (``predictor``, the mean/std of
        every metric, ``seconds``), label -> reconstructed images, and the boolean mask (N, L).
    """
    untrained = untrained or {}
    if unknown := [label for label in untrained if label not in predictors]:
        raise SettingError("untrained", unknown, f"must name predictors of {list(predictors)}")
    if not isinstance(predictors, dict) or not predictors:
        raise SettingError("predictors", predictors, "must be a non-empty dict label -> predictor")
    strategy = check_choice(strategy, "strategy", STRATEGIES)
    ratio = check_ratio(ratio)
    patch_size = check_patch_size(patch_size, images.shape[1:3])
    mask = cell_mask(images, strategy, ratio, patch_size, mask_seed, score_fn)
    rows, recon = [], {}
    for label, predictor in predictors.items():
        start = time.perf_counter()
        summary, recon[label] = score_predictor(predictor, images, mask)
        if with_sharpness:
            summary["sharpness"] = sharpness(images, recon[label], mask)
        if label in untrained:
            add_training_added(summary, untrained[label], images, mask)
        rows.append({"predictor": label, **summary, "seconds": time.perf_counter() - start})
    return rows, recon, mask


def format_comparison(rows: list[dict]) -> str:
    """A plain-text table of :func:`compare_predictors` rows (mean ± std of PSNR and SSIM)."""
    keys = [(k, lab) for k, lab in METRIC_LABELS if f"{k}_mean" in rows[0] and k[:3] != "mse"]
    width = max(len(r["predictor"]) for r in rows)
    sharp = "sharpness" in rows[0]
    added = any("training_added" in r for r in rows)
    head = f"{'predictor':<{width}}" + "".join(f"  {label:>24}" for _, label in keys)
    lines = [head + ("  sharpness" if sharp else "") + ("  training added (dB)" if added else "")]
    for r in rows:
        cells = "".join(f"  {r[f'{k}_mean']:>15.3f} ± {r[f'{k}_std']:<6.3f}" for k, _ in keys)
        cells += f"  {r['sharpness']:9.2f}" if sharp else ""
        gain = f"{r['training_added']:+20.2f}" if "training_added" in r else f"{'-':>20}"
        lines.append(f"{r['predictor']:<{width}}{cells}" + (f"  {gain}" if added else ""))
    return "\n".join(lines)
