"""``python -m helpers bench quality``: train predictors on a time budget, score on test_batch."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .._checks import (
    check_choice,
    check_positive_int,
    check_positive_number,
    check_ratio,
    check_ratio_spec,
)
from .._io import write_atomic
from ..data import load_dataset
from ..masking import make_mask
from ..metrics import sharpness
from ..patches import grid_shape
from ..recipes import LOSSES, PREDICTORS, check_recipe, learns, model_settings, train_settings
from .evaluation import add_training_added, score_predictor
from .experiments import append_row

QUALITY_STRATEGIES = ("random", "rows", "columns")
QUALITY_RATIO_RANGE = (0.3, 0.7)  # training ratios drawn per batch, as in the notebooks
QUALITY_PLANS = ("mixed", "per_strategy")


def matmul_gflops(n: int = 2048, repeat: int = 5) -> float:
    """GFLOP/s of NumPy's float32 ``n`` x ``n`` matrix product, best of ``repeat``."""
    from .bench import _timed  # lazy: pulls in Keras

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    return 2 * n**3 / _timed(lambda: a @ a, repeat) / 1e9


def recipe_settings(recipe: str, predictor: str, model_kwargs=None) -> tuple[dict, float]:
    """(builder kwargs, peak lr) of ``predictor`` in ``recipe``, updated by ``model_kwargs``."""
    kwargs = {**model_settings(recipe, predictor), **(model_kwargs or {}).get(predictor, {})}
    return kwargs, train_settings(recipe, predictor)["lr"]


def recipe_loss(recipe: str, predictor: str, loss: str | None = None) -> str:
    """``loss`` where given, else ``recipe``'s training loss of ``predictor`` (default ``mse``)."""
    return loss or train_settings(recipe, predictor).get("loss", "mse")


def _train_ratio(ratio) -> tuple:
    """(ratio for train, default eval ratios, its record) of a ratio or a (low, high) range."""
    if not isinstance(ratio, (tuple, list)):
        ratio = check_ratio(ratio)
        return ratio, (ratio,), ratio
    low, high = check_ratio_spec(ratio)
    return (low, high), (low, round((low + high) / 2, 6), high), f"{low:g}-{high:g}"


def bench_quality(
    data_dir,
    *,
    minutes_per_model: float = 30.0,
    ratio=QUALITY_RATIO_RANGE,
    eval_ratios=None,
    strategies=QUALITY_STRATEGIES,
    plan: str = "mixed",
    recipe: str = "long",
    predictors=PREDICTORS,
    output="runs/bench_quality",
    patch_size: int = 4,
    batch_size: int = 64,
    seed: int = 0,
    mask_seed: int = 0,
    val_fraction: float = 0.05,
    grayscale: bool = False,
    model_kwargs=None,
    loss: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train and score each predictor on each strategy: the rows, also in ``quality.json``/``.csv``.

    Args:
        minutes_per_model: training budget of one predictor, split over the strategies with
            ``plan="per_strategy"``.
        ratio: the training ratio, or a ``(low, high)`` range drawn per batch.
        eval_ratios: the ratios scored, one row each; default the range's low, middle and high.
        model_kwargs: predictor -> builder arguments overriding the recipe's.
        loss: the learned predictors' training loss (``mse`` or ``psnr``); None: the recipe's.
    """
    from ..models import build_model, load_predictor, untrained_twin  # lazy: pulls in Keras
    from ..training import train  # lazy: pulls in Keras

    ratio, default_eval, train_ratio = _train_ratio(ratio)
    eval_ratios = tuple(check_ratio(r, "eval_ratios") for r in (eval_ratios or default_eval))
    check_choice(plan, "plan", QUALITY_PLANS)
    check_recipe(recipe)
    check_positive_number(minutes_per_model, "minutes_per_model")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(patch_size, "patch_size")
    if loss is not None:
        check_choice(loss, "loss", LOSSES)
    for p in predictors:
        check_choice(p, "predictor", PREDICTORS)
    settings = {p: recipe_settings(recipe, p, model_kwargs) for p in predictors if learns(p)}
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    split = dict(val_fraction=val_fraction, seed=seed, download=False, grayscale=grayscale)
    ds = load_dataset("cifar10", data_dir=data_dir, **split)
    strategies = tuple(strategies)
    seconds = 60.0 * minutes_per_model / (1 if plan == "mixed" else len(strategies))
    rows = []
    gflops = round(matmul_gflops(), 1)
    csv_path = out / "quality.csv"
    csv_path.unlink(missing_ok=True)
    grid = grid_shape(ds.image_shape[:2], patch_size)
    cells = [(s, r) for s in strategies for r in eval_ratios]
    masks = {c: make_mask(*c, n_images=len(ds.x_test), grid=grid, seed=mask_seed) for c in cells}
    jobs = [(p, s) for p in predictors for s in strategies]
    bar = tqdm(jobs, desc="bench quality", unit="cell", disable=not progress)
    trained: dict[str, tuple] = {}
    lowest = min(ratio) if isinstance(ratio, tuple) else ratio
    shapes = {"image_shape": ds.image_shape, "seed": seed, "patch_size": patch_size}
    fit = dict(ratio=ratio, minutes=seconds / 60, batch_size=batch_size, seed=seed, recipe=recipe)
    fit |= dict(lr_schedule="cosine", augment=True, verbose=0)
    for predictor, strategy in bar:
        bar.set_postfix_str(f"{predictor}/{strategy}")
        start = time.perf_counter()
        key = predictor if plan == "mixed" else f"{predictor}-{strategy}"
        described = "-"
        if not learns(predictor):
            trained[key] = load_predictor(predictor), {"epochs": 0, "seconds": 0.0}
        else:
            sizes, lr = settings[predictor]
            this_loss = recipe_loss(recipe, predictor, loss)
            items = {k: v for k, v in sizes.items() if k not in ("image_shape", "seed")}
            items["lr"] = lr
            described = ", ".join(f"{k}={v}" for k, v in sorted(items.items()))
            described += "" if this_loss == "mse" else f", loss={this_loss}"
            if key not in trained:  # within ``seconds`` of wall time; the best epoch's weights
                kwargs = {**shapes, **sizes}
                model = build_model(predictor, recipe=recipe, lowest_ratio=lowest, **kwargs)
                tasks = list(strategies) if plan == "mixed" else strategy
                run_dir = out / "models" / key
                result = train(model, ds, strategy=tasks, run_dir=run_dir, loss=this_loss, **fit)
                best = Path(result["best"])
                trained[key] = (load_predictor(best) if best.exists() else model), result
        model, info = trained[key]
        twin = untrained_twin(model, seed=seed) if model.learned else None
        for test_ratio in eval_ratios:
            mask = masks[strategy, test_ratio]
            summary, predicted = score_predictor(model, ds.x_test, mask)
            if twin is not None:
                add_training_added(summary, twin, ds.x_test, mask)
            row = {"predictor": predictor, "strategy": strategy, "ratio": test_ratio}
            row.update(train_ratio=train_ratio, plan=plan, recipe=recipe, settings=described)
            row.update(channels=ds.image_shape[-1], matmul_gflops=gflops)
            row.update(n_train=len(ds.x_train), n_test=len(ds.x_test), epochs=info["epochs"])
            row["train_minutes"] = round(info["seconds"] / 60, 2)
            row["total_minutes"] = round((time.perf_counter() - start) / 60, 2)
            row.update({k: round(v, 4) for k, v in summary.items()})
            row["sharpness"] = round(sharpness(ds.x_test, predicted, mask), 4)
            rows.append(row)
            append_row(csv_path, row)
    write_atomic(out / "quality.json", json.dumps(rows, indent=2) + "\n")
    return rows


def format_quality(rows) -> str:
    """The quality table as Markdown; with a ratio column where the rows have several ratios."""
    several = len({r.get("ratio") for r in rows}) > 1
    lines = [
        "| predictor | strategy | " + ("ratio | " if several else "") + "masked PSNR (dB) | "
        "training added (dB) | image PSNR (dB) | SSIM | sharpness | epochs | training (min) |",
        "|---|---|" + ("---|" if several else "") + "---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio']:.0%} | " if several else ""
        added = r.get("training_added")
        added = "–" if added in (None, "") else f"{float(added):+.2f}"
        lines.append(
            f"| {r['predictor']} | {r['strategy']} | {ratio}{r['psnr_masked_mean']:.2f} ± "
            f"{r['psnr_masked_std']:.2f} | {added} | {r['psnr_mean']:.2f} | {r['ssim_mean']:.3f} | "
            f"{r.get('sharpness', float('nan')):.2f} | {int(r['epochs'])} | "
            f"{r['train_minutes']:.1f} |"
        )
    return "\n".join(lines)
