"""Masking strategies over the patch grid: bool masks (N, L), True = hidden patch.

Every strategy hides exactly ``k = n_masked(ratio, L)`` patches per image; ``seed``: an int, or a
``numpy.random.Generator`` for fresh masks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._checks import (
    SettingError,
    SettingTypeError,
    check_choice,
    check_images,
    check_positive_int,
    check_ratio,
)
from .patches import grid_shape, patch_mask_to_pixels, patchify

STRATEGIES = ("random", "rows", "columns", "importance")

ScoreFn = Callable[[np.ndarray, int], np.ndarray]


def n_masked(ratio: float, n_patches: int) -> int:
    """Patches hidden at ``ratio`` in (0, 1): ``round(ratio * n_patches)`` in [1, n_patches - 1]."""
    ratio = check_ratio(ratio)
    n_patches = check_positive_int(n_patches, "n_patches", minimum=2)
    return int(min(max(round(ratio * n_patches), 1), n_patches - 1))


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise SettingTypeError("seed", seed, "must be an int or a numpy.random.Generator")
    return np.random.default_rng(int(seed))


def _setup(n_images, grid, ratio) -> tuple[int, int, int, int]:  # checked (N, rows, columns, k)
    if len(grid) != 2:
        raise SettingError("grid", grid, "must be (rows, columns) of the patch grid")
    gh, gw = check_positive_int(grid[0], "grid rows"), check_positive_int(grid[1], "grid columns")
    n = check_positive_int(n_images, "n_images")
    return n, gh, gw, n_masked(ratio, gh * gw)


def _top_k(order: np.ndarray, k: int) -> np.ndarray:  # True at the indices order[:, :k]
    mask = np.zeros(order.shape, dtype=bool)
    np.put_along_axis(mask, order[:, :k], True, axis=1)
    return mask


def random_masking(n_images: int, grid, ratio: float, seed=0) -> np.ndarray:
    """Hide k = :func:`n_masked` (ratio, L) patches per image, uniformly at random.

    Args:
        n_images: masks to draw (N).
        grid: (rows, columns) of the patch grid; L = rows * columns.
        seed: an int or a ``numpy.random.Generator``.

    Returns:
        bool (N, L), True = hidden patch, row-major over the grid.
    """
    n, gh, gw, k = _setup(n_images, grid, ratio)
    noise = _rng(seed).random((n, gh * gw))
    return _top_k(np.argpartition(noise, k - 1, axis=1), k)  # the k smallest noise values


def _line_masking(n: int, lines: int, length: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n, lines, length): whole lines in random order, then a run in one more line."""
    full, rest = divmod(k, length)
    rank = np.argsort(rng.random((n, lines)), axis=1).argsort(axis=1)[:, :, None]
    start = rng.integers(0, length - rest + 1, size=(n, 1, 1))
    pos = np.arange(length)[None, None, :]
    return (rank < full) | ((rank == full) & (pos >= start) & (pos < start + rest))


def rows_masking(n_images: int, grid, ratio: float, seed=0) -> np.ndarray:
    """Hide whole rows, then a contiguous run in one more row (as :func:`random_masking`)."""
    n, gh, gw, k = _setup(n_images, grid, ratio)
    return _line_masking(n, gh, gw, k, _rng(seed)).reshape(n, gh * gw)


def columns_masking(n_images: int, grid, ratio: float, seed=0) -> np.ndarray:
    """Hide whole columns, then a contiguous run in one more column (as :func:`random_masking`)."""
    n, gh, gw, k = _setup(n_images, grid, ratio)
    return _line_masking(n, gw, gh, k, _rng(seed)).transpose(0, 2, 1).reshape(n, gh * gw)


def variance_score(images: np.ndarray, patch_size: int) -> np.ndarray:
    """Pixel variance of each patch of ``images`` (N, H, W, C) in [0, 1]; returns (N, L)."""
    check_images(images)
    return patchify(images, patch_size).var(axis=2)


def edge_score(images: np.ndarray, patch_size: int) -> np.ndarray:
    """Mean Sobel edge energy of each patch, on the mean of the channels; returns float64 (N, L)."""
    from scipy import ndimage  # lazy: slow to import

    check_images(images)
    grey = images.mean(axis=-1, dtype=np.float64)
    gx = ndimage.sobel(grey, axis=2, mode="reflect")
    gy = ndimage.sobel(grey, axis=1, mode="reflect")
    return patchify((gx**2 + gy**2)[..., None], patch_size).mean(axis=2)


SCORES = {"variance": variance_score, "edge": edge_score}


def importance_masking(
    images: np.ndarray, patch_size: int, ratio: float, score_fn: ScoreFn | str = "variance", seed=0
) -> np.ndarray:
    """Hide the k patches with the highest score; ties are broken at random (seeded).

    Args:
        images: (N, H, W, C) in [0, 1]; ``patch_size`` must divide H and W.
        score_fn: a name of :data:`SCORES` or a function ``(images, patch_size) -> (N, L)`` of
            finite scores.

    Returns:
        bool (N, L), True = hidden patch.
    """
    check_images(images)
    gh, gw = grid_shape(images.shape[1:3], patch_size)
    k = n_masked(ratio, gh * gw)
    if isinstance(score_fn, str):
        score_fn = SCORES[check_choice(score_fn, "score_fn", SCORES)]
    scores = np.asarray(score_fn(images, patch_size), dtype=np.float64)
    name = getattr(score_fn, "__name__", repr(score_fn))
    shape = (images.shape[0], gh * gw)
    if scores.shape != shape:
        raise SettingError(
            "score_fn", name, f"must return shape {shape} (images, patches), got {scores.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise SettingError("score_fn", name, "returned NaN or infinite scores")
    return _top_k(np.lexsort((_rng(seed).random(scores.shape), -scores), axis=1), k)


def cell_seed(seed: int, strategy: str, ratio: float) -> int:
    """The seed of the evaluation masks of one (strategy, ratio) cell of a run's ``seed``."""
    return int(seed) + STRATEGIES.index(strategy) * 1000 + int(round(float(ratio) * 100))


def make_mask(
    strategy: str,
    ratio: float,
    *,
    n_images: int | None = None,
    grid=None,
    images: np.ndarray | None = None,
    patch_size: int | None = None,
    score_fn: ScoreFn | str = "variance",
    seed=0,
) -> np.ndarray:
    """Draw masks for any strategy of :data:`STRATEGIES`.

    Args:
        n_images, grid: N and the patch grid (rows, columns), or ``images`` and ``patch_size``.
        images, patch_size: (N, H, W, C) and the patch side; ``importance`` needs them.
        score_fn: the importance score (:func:`importance_masking`).
        seed: an int or a ``numpy.random.Generator``.

    Returns:
        bool (N, L), True = hidden patch.
    """
    check_choice(strategy, "strategy", STRATEGIES)
    check_ratio(ratio)
    if images is not None:
        check_images(images)
        if patch_size is None:
            raise SettingError("patch_size", None, "is required when images are given")
        grid = grid_shape(images.shape[1:3], patch_size)
        n_images = images.shape[0]
    if strategy == "importance":
        if images is None:
            raise SettingError(
                "images", images, "strategy 'importance' needs images and patch_size to score them"
            )
        return importance_masking(images, patch_size, ratio, score_fn=score_fn, seed=seed)
    if n_images is None or grid is None:
        problem = f"strategy {strategy!r} needs n_images and grid, or images and patch_size"
        raise SettingError("n_images" if n_images is None else "grid", None, problem)
    draw = {"random": random_masking, "rows": rows_masking, "columns": columns_masking}[strategy]
    return draw(n_images, grid, ratio, seed=seed)


def apply_mask(
    images: np.ndarray, mask: np.ndarray, patch_size: int, fill: float = 0.5
) -> np.ndarray:
    """``images`` (N, H, W, C) with the hidden patches of ``mask`` (N, L) set to ``fill``."""
    check_images(images)
    pixels = patch_mask_to_pixels(mask, patch_size, images.shape[1:3])
    n, n_images = pixels.shape[0], images.shape[0]
    if n != n_images:
        raise SettingError("mask", np.shape(mask), f"has {n} rows but there are {n_images} images")
    return np.where(pixels, np.asarray(fill, dtype=images.dtype), images)


def masked_fraction(mask: np.ndarray) -> float:
    """Fraction of the patches of ``mask`` (N, L) hidden, over the whole batch."""
    return float(np.mean(mask))
