"""Benchmarks (not tests): speed measured in one run and reported as ratios.

``python -m helpers bench speed`` prints:
- mask generation for 50,000 images per strategy (the random/rows/columns draws are vectorised);
- the metrics on 10,000 images, and batched SSIM against a per-image ``skimage`` loop;
- training images per second of the MAE-style ViT against the mask-token ViT at 50% and 70%.
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
