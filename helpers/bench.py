"""Benchmarks (not tests): speed measured in one run and reported as ratios.

``python -m helpers bench speed`` prints:
- mask generation for 50,000 images per strategy (the random/rows/columns draws are vectorised);
- the metrics on 10,000 images, and batched SSIM against a per-image ``skimage`` loop;
- training images per second of the MAE-style ViT against the mask-token ViT at 50% and 70%.

:func:`bench_speed` runs the three parts (``quick=True``: much smaller sizes, for tests) and hands
each part's rows to a callback as soon as they are measured; :func:`format_rows` prints them.
"""

from __future__ import annotations

import time

import numpy as np

from . import masking, metrics


def _timed(fn, repeat: int = 3) -> float:
    """Best of ``repeat`` wall times in seconds."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_masks(n_images: int = 50_000, grid=(8, 8), ratio: float = 0.5) -> list[dict]:
    """Seconds to draw masks for ``n_images`` images with each data-free strategy."""
    rows = []
    for strategy in ("random", "rows", "columns"):
        sec = _timed(lambda: masking.make_mask(strategy, ratio, n_images=n_images, grid=grid, seed=0))
        rows.append({"what": f"{strategy} masks, {n_images} images", "seconds": sec})
    return rows


def bench_metrics(n_images: int = 10_000, loop_images: int = 500, seed: int = 0) -> list[dict]:
    """Seconds for :func:`metrics.evaluate` on ``n_images`` images, and batched SSIM vs a skimage loop.

    The skimage loop runs on ``loop_images`` images and is scaled to ``n_images`` (it is linear).
    """
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(seed)
    a = rng.random((n_images, 32, 32, 3), dtype=np.float32)
    b = rng.random((n_images, 32, 32, 3), dtype=np.float32)
    m = masking.make_mask("random", 0.5, n_images=n_images, grid=(8, 8), seed=seed)
    t_eval = _timed(lambda: metrics.evaluate(a, b, m, 4), repeat=1)
    t_ssim = _timed(lambda: metrics.ssim(a, b), repeat=1)
    k = min(loop_images, n_images)
    t_loop = _timed(
        lambda: [structural_similarity(x, y, data_range=1, channel_axis=-1) for x, y in zip(a[:k], b[:k])], repeat=1
    ) * (n_images / k)
    return [
        {"what": f"metrics.evaluate, {n_images} images", "seconds": t_eval},
        {"what": f"batched SSIM, {n_images} images", "seconds": t_ssim},
        {"what": f"skimage SSIM loop, {n_images} images (from {k})", "seconds": t_loop},
        {"what": "ratio: skimage loop / batched SSIM", "ratio": t_loop / t_ssim},
    ]


def bench_training(
    n_images: int = 1024,
    ratios=(0.5, 0.7),
    *,
    epochs: int = 2,
    batch_size: int = 128,
    seed: int = 0,
    vit_kwargs: dict | None = None,
    mae_kwargs: dict | None = None,
) -> list[dict]:
    """Training images per second of the mask-token ViT and the MAE-style ViT, and their ratio.

    Both train on the same ``n_images`` random images with ``random`` masks at each ratio, in this
    run (one model of each per ratio; the MAE is built with ``min_mask_ratio`` = the ratio, so its
    encoder sees only the visible patches). :func:`helpers.training.training_throughput` runs one
    untimed warm-up epoch (tracing, compilation), then times ``epochs`` epochs, mask drawing
    included. ``vit_kwargs``/``mae_kwargs`` go to the builders (default: their default sizes).
    """
    from .models import build_model
    from .training import training_throughput

    images = np.random.default_rng(seed).random((n_images, 32, 32, 3), dtype=np.float32)
    vit_kwargs, mae_kwargs = dict(vit_kwargs or {}), dict(mae_kwargs or {})
    rows, ratio_rows = [], []
    for ratio in ratios:
        speeds = {}
        for kind, kwargs, label in (("vit", vit_kwargs, "mask-token ViT"), ("mae", {**mae_kwargs, "min_mask_ratio": ratio}, "MAE-style ViT")):
            model = build_model(kind, seed=seed, **kwargs)
            speeds[kind] = training_throughput(model, images, strategy="random", ratio=ratio, batch_size=batch_size,
                                               epochs=epochs, seed=seed)
            rows.append({"what": f"{label} training, {ratio:.0%} masked, {n_images} images x {epochs} epochs",
                         "images_per_s": speeds[kind]})
            del model
        ratio_rows.append({"what": f"ratio: MAE / ViT training speed, {ratio:.0%} masked", "ratio": speeds["mae"] / speeds["vit"]})
    return rows + ratio_rows


#: Sizes of :func:`bench_speed`: the default run (a few minutes on 2 CPU cores) and ``quick``.
SPEED_SETTINGS = {
    False: {
        "masks": {"n_images": 50_000},
        "metrics": {"n_images": 10_000, "loop_images": 500},
        "training": {"n_images": 1024, "epochs": 2, "batch_size": 128},
    },
    True: {
        "masks": {"n_images": 5_000},
        "metrics": {"n_images": 500, "loop_images": 50},
        "training": {
            "n_images": 64, "epochs": 1, "batch_size": 32,
            "vit_kwargs": {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32},
            "mae_kwargs": {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32, "decoder_dim": 16,
                           "decoder_depth": 1, "decoder_num_heads": 2, "decoder_mlp_dim": 32},
        },
    },
}


def bench_speed(quick: bool = False, report=None) -> list[dict]:
    """Masks, metrics and training speed in one run (sizes from :data:`SPEED_SETTINGS`).

    ``report(title, rows)`` is called after each part (e.g. to print it at once). Returns all rows.
    """
    settings = SPEED_SETTINGS[bool(quick)]
    parts = (
        ("mask generation", lambda: bench_masks(**settings["masks"])),
        ("metrics", lambda: bench_metrics(**settings["metrics"])),
        ("training throughput" + (" (tiny models)" if quick else " (default model sizes)"),
         lambda: bench_training(**settings["training"])),
    )
    rows = []
    for title, run in parts:
        part = run()
        if report is not None:
            report(title, part)
        rows.extend(part)
    return rows


def format_rows(rows: list[dict]) -> str:
    """A plain-text table of benchmark rows."""
    width = max(len(r["what"]) for r in rows)
    lines = []
    for r in rows:
        if "ratio" in r:
            lines.append(f"{r['what']:<{width}}  x{r['ratio']:.2f}")
        elif "images_per_s" in r:
            lines.append(f"{r['what']:<{width}}  {r['images_per_s']:10.1f} images/s")
        else:
            lines.append(f"{r['what']:<{width}}  {r['seconds']:10.3f} s")
    return "\n".join(lines)
