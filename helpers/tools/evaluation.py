"""Evaluate one predictor on a test set with fixed masks: the logic behind ``python -m helpers
evaluate``.

- :func:`load_test_images`: the test images of a dataset, float32 in [0, 1]. For ``cifar10`` only
  the ``test_batch`` file is needed (read with :func:`helpers.data.read_cifar_batch`), so any folder
  in the CIFAR-10 python-batch format works, with or without ``data_batch_*``; ``sample`` gives the
  test split of the embedded dataset (seed 0).
- :func:`load_model`: a saved ``.keras`` model, ``"biharmonic"`` or ``"mean_colour"`` (not learned).
- :func:`evaluate_predictor`: masks drawn with a fixed seed, the reconstruction, and the summary
  (mean and standard deviation over the images) of :func:`helpers.metrics.evaluate`.
- :func:`run_evaluation`: all of the above with the settings recorded next to the numbers;
  :func:`write_results` writes ``metrics.json`` and ``metrics.csv`` atomically;
  :func:`format_table` prints them.

Bad settings raise :class:`SettingError`, whose message names the parameter, the value and
what is allowed; they are checked before the model is loaded whenever possible.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from .._checks import SettingError, check_choice, check_patch_size, check_positive_int, check_ratio
from .._io import write_atomic
from ..data import (
    CIFAR_DIRNAME,
    DATASETS,
    DatasetError,
    keras_cache_dir,
    load_dataset,
    read_cifar_batch,
    to_gray,
)
from ..masking import SCORES, STRATEGIES, cell_seed, make_mask
from ..metrics import evaluate, sharpness, summarize
from ..recipes import NON_LEARNED, learns

METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
SCORE_CHOICES = (
    *SCORES,
    "gradient",
)  # importance scores: model-free ones, or the model's gradients
METRIC_LABELS = (  # (key, label) in table order
    ("psnr_masked", "PSNR masked region (dB)"),
    ("mse_masked", "MSE masked region"),
    ("psnr", "PSNR whole image (dB)"),
    ("ssim", "SSIM whole image"),
    ("mse", "MSE whole image"),
)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def check_score(score, strategy: str, model) -> str | None:
    """The importance score name to use (None unless the strategy is ``importance``)."""
    if score is not None and score not in SCORE_CHOICES and not callable(score):
        check_choice(score, "score", SCORE_CHOICES)
    if score == "gradient" and not learns(model):
        raise SettingError(
            "score",
            score,
            f"needs a trained Keras model (vit, mae or cnn); {getattr(model, 'name', model)} "
            f"has no gradients; allowed with it: {', '.join(SCORES)}",
        )
    if strategy != "importance":
        return None
    return "variance" if score is None else score


def _check_n_test(n_test):
    if n_test is None:
        return None
    return check_positive_int(n_test, "n_test", minimum=0) or None  # 0: all test images


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def find_test_batch(data_dir) -> Path:
    """``test_batch`` in ``data_dir`` or in its ``cifar-10-batches-py/`` subfolder."""
    folder = Path(data_dir).expanduser()
    for candidate in (folder, folder / CIFAR_DIRNAME):
        if (candidate / "test_batch").is_file():
            return candidate / "test_batch"
    where = (
        "the folder does not exist"
        if not folder.exists()
        else f"no test_batch in it or in its {CIFAR_DIRNAME}/ subfolder"
    )
    raise SettingError(
        "data_dir",
        str(data_dir),
        f"{where}; allowed: a folder in the CIFAR-10 python-batch format holding test_batch "
        "(data_batch_* are not needed for evaluation)",
    )


def load_test_images(
    dataset: str = "cifar10", data_dir=None, n_test: int | None = None, grayscale: bool = False
) -> np.ndarray:
    """Test images (N, 32, 32, 3) float32 in [0, 1]: all, or the first ``n_test``; ``grayscale``:
    (N, 32, 32, 1), :func:`helpers.data.to_gray`.

    ``cifar10``: ``test_batch`` of ``data_dir`` (default: the Keras cache folder). ``sample``: the
    test split of the embedded dataset built with seed 0 (``data_dir`` is ignored).
    """
    check_choice(dataset, "dataset", DATASETS)

    n_test = _check_n_test(n_test)
    if dataset == "sample":
        images = load_dataset("sample", seed=0).x_test
    else:
        if data_dir is None:
            cache = keras_cache_dir() / CIFAR_DIRNAME
            if not (cache / "test_batch").is_file():
                raise SettingError(
                    "data_dir",
                    None,
                    f"not given, and the Keras cache folder {cache} has no test_batch; "
                    "allowed: a folder in the CIFAR-10 python-batch format holding test_batch",
                )
            path = cache / "test_batch"
        else:
            path = find_test_batch(data_dir)
        try:
            raw, _ = read_cifar_batch(path)
        except DatasetError as exc:
            raise SettingError("data_dir", str(data_dir), f"{exc}") from None
        images = raw.astype(np.float32) / np.float32(255.0)
    if n_test is not None:
        if n_test > len(images):
            raise SettingError(
                "n_test",
                n_test,
                f"is more than the {len(images)} test images; allowed: 1..{len(images)} or 0 for "
                "all",
            )
        images = images[:n_test]
    if grayscale:
        images = to_gray(images)
    return images


def check_model_path(model) -> None:
    """``model`` must be a name of :data:`NON_LEARNED` or an existing ``.keras`` file (checked
    without loading)."""
    if isinstance(model, str) and not learns(model):
        return
    path = Path(os.fspath(model))
    if not (str(path).endswith(".keras") and path.is_file()):
        problem = "no such file; give" if str(path).endswith(".keras") else "must be"
        raise SettingError(
            "model",
            str(model),
            f"{problem} a .keras file saved by train (e.g. RUN/best.keras) or one of "
            f"{', '.join(NON_LEARNED)}",
        )


def load_model(model):
    """The non-learned predictor for a name of :data:`NON_LEARNED`, else the saved model."""
    from ..models import load_predictor  # lazy: pulls in Keras

    check_model_path(model)
    try:
        return load_predictor(model)
    except Exception as exc:  # corrupt or foreign file
        raise SettingError(
            "model",
            str(model),
            f"could not be loaded as a Keras model ({type(exc).__name__}: {exc})",
        ) from None


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
def _score_fn(score, predictor):
    if score is None or callable(score):
        return score if score is not None else "variance"
    if score == "gradient":
        from ..importance import gradient_score_fn  # lazy: pulls in Keras

        return gradient_score_fn(predictor)
    return score


def score_predictor(
    predictor, images: np.ndarray, mask: np.ndarray, *, batch_size: int = 256
) -> tuple[dict, np.ndarray]:
    """Reconstruct ``images`` with ``mask`` hidden and score the composite: returns
    (mean and std of every metric of :func:`helpers.metrics.evaluate`, the reconstructed images)."""
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
    """Score ``predictor`` on ``images`` with the masks of the cell (``strategy``, ``ratio``) drawn
    from ``mask_seed`` (:func:`helpers.masking.cell_seed`: the sweep's masks for the same seed).

    ``score_fn`` (``importance`` only): a name of :data:`helpers.masking.SCORES`, ``"gradient"``
    (:func:`helpers.importance.gradient_score_fn` of the predictor) or a function
    ``(images, patch_size) -> (N, L)``; default ``variance``.

    Returns a dict: ``strategy``, ``ratio``, ``patch_size``, ``mask_seed``, ``score`` (None unless
    ``importance``), ``n_test``, ``n_masked`` (patches hidden per image), ``seconds``, then
    ``{metric}_mean`` and ``{metric}_std`` for ``mse_masked``, ``psnr_masked``, ``mse``, ``psnr``
    and ``ssim`` (:func:`helpers.metrics.summarize` of :func:`helpers.metrics.evaluate`), and
    ``sharpness`` of the filled-in region (:func:`helpers.metrics.sharpness`); with
    ``untrained`` (the predictor's untrained twin, :func:`helpers.models.untrained_twin`) also
    ``psnr_masked_untrained`` and ``training_added`` on the same masks.
    """
    from ..models import check_fits  # lazy: pulls in Keras

    strategy = check_choice(strategy, "strategy", STRATEGIES)
    ratio = check_ratio(ratio)
    patch_size = check_patch_size(patch_size, images.shape[1:3])
    check_positive_int(mask_seed, "mask_seed", minimum=0)
    score = check_score(score_fn, strategy, predictor)
    check_fits(predictor, images.shape[1:], patch_size, ratio=ratio)
    start = time.perf_counter()
    mask = make_mask(
        strategy,
        ratio,
        images=images,
        patch_size=patch_size,
        score_fn=_score_fn(score, predictor),
        seed=cell_seed(mask_seed, strategy, ratio),
    )
    summary, predicted = score_predictor(predictor, images, mask, batch_size=batch_size)
    if untrained is not None:
        add_training_added(summary, untrained, images, mask)
    return {
        "strategy": strategy,
        "ratio": ratio,
        "patch_size": patch_size,
        "mask_seed": mask_seed,
        "score": score
        if isinstance(score, str) or score is None
        else getattr(score, "__name__", "custom"),
        "n_test": int(images.shape[0]),
        "n_masked": int(mask.sum(axis=1).max()) if mask.size else 0,
        "seconds": time.perf_counter() - start,
        **summary,
        "sharpness": sharpness(images, predicted, mask),
    }


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
    """Check the settings, load the test images (``grayscale``: one channel) and the model,
    evaluate; the result dict starts
    with the settings (``model`` and ``data_dir`` as given, ``model_name``, ``dataset``,
    ``keras_backend``, ``keras_version``) followed by :func:`evaluate_predictor`'s keys."""
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
    twin = untrained_twin(predictor, seed=0) if predictor.learned else None
    result = evaluate_predictor(
        predictor,
        images,
        strategy=strategy,
        ratio=ratio,
        patch_size=patch_size,
        mask_seed=mask_seed,
        score_fn=score,
        batch_size=batch_size,
        untrained=twin,
    )
    settings = {
        "model": str(model),
        "model_name": predictor.name,
        "dataset": dataset,
        "data_dir": None if data_dir is None else str(data_dir),
        "grayscale": bool(grayscale),
        "keras_backend": keras.backend.backend(),
        "keras_version": keras.__version__,
    }
    return {**settings, **result}


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def write_results(output_dir, results: dict) -> tuple[Path, Path]:
    """Write ``results`` to ``output_dir/metrics.json`` and ``output_dir/metrics.csv`` (one header
    row, one value row), each through a temporary file and ``os.replace``. Returns both paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / METRICS_JSON, out / METRICS_CSV
    write_atomic(json_path, json.dumps(results, indent=2, default=str) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(results), lineterminator="\n")
    writer.writeheader()
    writer.writerow({k: ("" if v is None else v) for k, v in results.items()})
    write_atomic(csv_path, buf.getvalue())
    return json_path, csv_path


def format_table(results: dict) -> str:
    """The settings on a few lines, then one row per metric: mean and standard deviation."""
    lines = []
    if "model" in results:
        lines.append(
            f"model    {results['model']} ({results.get('model_name', '?')}, keras backend "
            f"{results.get('keras_backend', '?')})"
        )
    if "dataset" in results:
        where = (
            f" from {results['data_dir']}"
            if results.get("data_dir") and results["dataset"] == "cifar10"
            else ""
        )
        lines.append(f"data     {results['dataset']} test images{where}: {results['n_test']}")
    score = f", score {results['score']}" if results.get("score") else ""
    lines.append(
        f"masks    {results['strategy']} {results['ratio']:.2f} ({results['n_masked']} patches "
        "hidden per image, "
        f"patch {results['patch_size']}, mask seed {results['mask_seed']}{score})"
    )
    width = max(len(label) for _, label in METRIC_LABELS)
    lines.append("")
    lines.append(f"{'metric':<{width}}  {'mean':>10}  {'std':>10}")
    for key, label in METRIC_LABELS:
        if f"{key}_mean" in results:
            lines.append(
                f"{label:<{width}}  {results[f'{key}_mean']:10.5f}  {results[f'{key}_std']:10.5f}"
            )
    if "sharpness" in results:  # one ratio for the set (helpers.metrics.sharpness): no std
        lines.append(f"{'sharpness hidden region':<{width}}  {results['sharpness']:10.5f}")
    if "training_added" in results:
        lines.append(
            f"\ntraining added {results['training_added']:+.2f} dB of masked-region PSNR over the "
            f"model's untrained twin ({results['psnr_masked_untrained']:.2f} dB: the same "
            "architecture and seed 0, its initial weights, on the same masks)"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Several predictors on the same masks (the notebooks' comparisons)
# --------------------------------------------------------------------------------------------
def add_training_added(summary: dict, twin, images: np.ndarray, mask: np.ndarray) -> dict:
    """Score ``twin`` (a learned model's untrained twin, :func:`helpers.models.untrained_twin`) on
    the same images and mask as ``summary`` and add ``psnr_masked_untrained`` and
    ``training_added`` (dB of masked-region PSNR that training added) to it."""
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
    """Reconstruct ``images`` with every predictor of ``predictors`` (label -> model or
    :class:`~helpers.models.BiharmonicInpainter`) under one mask, the sweep's for ``mask_seed``
    (:func:`helpers.masking.cell_seed`).

    Returns ``(rows, reconstructions, mask)``: one row per predictor (``predictor`` and the
    mean/std of every metric of :func:`helpers.metrics.evaluate`), label -> reconstructed images,
    and the boolean mask (N, L) they all had to fill in. ``with_sharpness``: each row also has the
    ``sharpness`` of its filled-in region (:func:`helpers.metrics.sharpness`), a column of
    :func:`format_comparison`. ``untrained``: label -> the learned model's untrained twin
    (:func:`helpers.models.untrained_twin`); the twin is scored on the same masks and the row of
    that label gets ``psnr_masked_untrained`` and ``training_added`` (dB of masked-region PSNR
    that training added), a column of :func:`format_comparison`.
    """
    untrained = untrained or {}
    unknown = [label for label in untrained if label not in predictors]
    if unknown:
        raise SettingError("untrained", unknown, f"must name predictors of {list(predictors)}")
    if not isinstance(predictors, dict) or not predictors:
        raise SettingError("predictors", predictors, "must be a non-empty dict label -> predictor")
    strategy = check_choice(strategy, "strategy", STRATEGIES)
    ratio = check_ratio(ratio)
    patch_size = check_patch_size(patch_size, images.shape[1:3])
    mask = make_mask(
        strategy,
        ratio,
        images=images,
        patch_size=patch_size,
        score_fn=score_fn,
        seed=cell_seed(mask_seed, strategy, ratio),
    )
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
    """A plain-text table of :func:`compare_predictors` rows: mean ± std of each metric, the
    sharpness and what training added, where the rows have them."""
    keys = [
        (k, label)
        for k, label in METRIC_LABELS
        if f"{k}_mean" in rows[0] and not k.startswith("mse")
    ]
    width = max(len(r["predictor"]) for r in rows)
    sharp = "sharpness" in rows[0]
    added = any("training_added" in r for r in rows)
    head = f"{'predictor':<{width}}" + "".join(f"  {label:>24}" for _, label in keys)
    lines = [head + ("  sharpness" if sharp else "") + ("  training added (dB)" if added else "")]
    for r in rows:
        cells = "".join(f"  {r[f'{k}_mean']:>15.3f} ± {r[f'{k}_std']:<6.3f}" for k, _ in keys)
        if sharp:
            cells += f"  {r['sharpness']:9.2f}"
        if "training_added" in r:
            cells += f"  {r['training_added']:+20.2f}"
        elif added:
            cells += f"  {'-':>20}"
        lines.append(f"{r['predictor']:<{width}}{cells}")
    return "\n".join(lines)
