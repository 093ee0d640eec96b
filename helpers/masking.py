"""Masking strategies over the patch grid.

A mask is a boolean array ``(N, L)``; ``True`` marks a hidden (masked) patch. Every strategy
hides exactly ``k = round(ratio * L)`` patches per image (kept between 1 and L - 1), so the
strategies differ only in *which* patches they hide:

- ``random``: k patches drawn uniformly without replacement.
- ``rows``: whole rows of the patch grid, then a contiguous run in one more row.
- ``columns``: the same with columns.
- ``importance``: the k patches with the highest score from a score function
  (model-free :func:`variance_score` / :func:`edge_score` here; gradients of a trained model
  come with the models).

All draws are vectorised over the batch and seeded: pass an int seed for a fixed draw, or a
``numpy.random.Generator`` and call again each epoch for fresh masks.
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
    """Number of patches hidden at ``ratio``.

    Args:
        ratio: fraction of the patches to hide, in (0, 1).
        n_patches: patches per image L, at least 2.

    Returns:
        ``round(ratio * L)`` kept within [1, L - 1].
    """
    ratio = check_ratio(ratio)
    n_patches = check_positive_int(n_patches, "n_patches", minimum=2)
    return int(min(max(round(ratio * n_patches), 1), n_patches - 1))


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise SettingTypeError("seed", seed, "must be an int or a numpy.random.Generator")
    return np.random.default_rng(int(seed))


def _check_grid(grid) -> tuple[int, int]:
    if len(grid) != 2:
        raise SettingError("grid", grid, "must be (rows, columns) of the patch grid")
    return check_positive_int(grid[0], "grid rows"), check_positive_int(grid[1], "grid columns")


def random_masking(n_images: int, grid, ratio: float, seed=0) -> np.ndarray:
    """Hide k patches per image, uniformly at random.

    Args:
        n_images: masks to draw (N).
        grid: (rows, columns) of the patch grid; L = rows * columns.
        ratio: fraction of the patches to hide, in (0, 1); k = :func:`n_masked` (ratio, L).
        seed: an int or a ``numpy.random.Generator``.

    Returns:
        bool (N, L), True = hidden patch, row-major over the grid.
    """
    gh, gw = _check_grid(grid)
    n = check_positive_int(n_images, "n_images")
    k = n_masked(ratio, gh * gw)
    noise = _rng(seed).random((n, gh * gw))
    # The patches with the k smallest noise values are masked (as in MAE's random_masking).
    mask = np.zeros((n, gh * gw), dtype=bool)
    np.put_along_axis(mask, np.argpartition(noise, k - 1, axis=1)[:, :k], True, axis=1)
    return mask


def _line_masking(n: int, lines: int, length: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Mask whole lines of ``length`` patches, then a contiguous run in one more line.

    Returns (n, lines, length): line-major layout, so rows use it as is and columns transpose it.
    """
    full, rest = divmod(k, length)
    rank = np.argsort(rng.random((n, lines)), axis=1).argsort(axis=1)  # random order of the lines
    start = rng.integers(0, length - rest + 1, size=(n, 1, 1))
    pos = np.arange(length)[None, None, :]
    run = (pos >= start) & (pos < start + rest)
    return (rank[:, :, None] < full) | ((rank[:, :, None] == full) & run)


def rows_masking(n_images: int, grid, ratio: float, seed=0) -> np.ndarray:
    """Hide whole rows of the patch grid (in random order), then a contiguous run in one more
    row, k patches in all.

    Args:
        n_images: masks to draw (N).
        grid: (rows, columns) of the patch grid; L = rows * columns.
        ratio: fraction of the patches to hide, in (0, 1); k = :func:`n_masked` (ratio, L).
        seed: an int or a ``numpy.random.Generator``.

    Returns:
        bool (N, L), True = hidden patch, row-major over the grid.
    """
    gh, gw = _check_grid(grid)
    n = check_positive_int(n_images, "n_images")
    k = n_masked(ratio, gh * gw)
    return _line_masking(n, gh, gw, k, _rng(seed)).reshape(n, gh * gw)


def columns_masking(n_images: int, grid, ratio: float, seed=0) -> np.ndarray:
    """Hide whole columns of the patch grid (in random order), then a contiguous run in one more
    column, k patches in all.

    Args:
        n_images: masks to draw (N).
        grid: (rows, columns) of the patch grid; L = rows * columns.
        ratio: fraction of the patches to hide, in (0, 1); k = :func:`n_masked` (ratio, L).
        seed: an int or a ``numpy.random.Generator``.

    Returns:
        bool (N, L), True = hidden patch, row-major over the grid.
    """
    gh, gw = _check_grid(grid)
    n = check_positive_int(n_images, "n_images")
    k = n_masked(ratio, gh * gw)
    lines = _line_masking(n, gw, gh, k, _rng(seed))  # (n, columns, rows)
    return lines.transpose(0, 2, 1).reshape(n, gh * gw)


def variance_score(images: np.ndarray, patch_size: int) -> np.ndarray:
    """Model-free importance: the pixel variance of each patch.

    Args:
        images: (N, H, W, C) in [0, 1].
        patch_size: side of a square patch; must divide H and W.

    Returns:
        (N, L), one score per patch.
    """
    check_images(images)
    return patchify(images, patch_size).var(axis=2)


def edge_score(images: np.ndarray, patch_size: int) -> np.ndarray:
    """Model-free importance: the mean Sobel edge energy of each patch, on grey levels (the mean
    of the channels).

    Args:
        images: (N, H, W, C) in [0, 1].
        patch_size: side of a square patch; must divide H and W.

    Returns:
        float64 (N, L), one score per patch.
    """
    from scipy import ndimage  # lazy: slow to import

    check_images(images)
    grey = images.mean(axis=-1, dtype=np.float64)
    gx = ndimage.sobel(grey, axis=2, mode="reflect")
    gy = ndimage.sobel(grey, axis=1, mode="reflect")
    energy = (gx**2 + gy**2)[..., None]
    return patchify(energy, patch_size).mean(axis=2)


SCORES = {"variance": variance_score, "edge": edge_score}


def importance_masking(
    images: np.ndarray, patch_size: int, ratio: float, score_fn: ScoreFn | str = "variance", seed=0
) -> np.ndarray:
    """Hide the k patches with the highest score; ties are broken at random (seeded).

    Args:
        images: (N, H, W, C) in [0, 1].
        patch_size: side of a square patch; must divide H and W.
        ratio: fraction of the patches to hide, in (0, 1); k = :func:`n_masked` (ratio, L).
        score_fn: ``"variance"``, ``"edge"`` (:data:`SCORES`) or a function
            ``(images, patch_size) -> (N, L)`` of finite scores.
        seed: an int or a ``numpy.random.Generator``, for the tie-break.

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
    if scores.shape != (images.shape[0], gh * gw):
        raise SettingError(
            "score_fn",
            name,
            f"must return shape {(images.shape[0], gh * gw)} (images, patches), got {scores.shape}",
        )
    if not np.all(np.isfinite(scores)):
        raise SettingError("score_fn", name, "returned NaN or infinite scores")
    tiebreak = _rng(seed).random(scores.shape)
    order = np.lexsort((tiebreak, -scores), axis=1)  # highest score first, random among equals
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, order[:, :k], True, axis=1)
    return mask


def cell_seed(seed: int, strategy: str, ratio: float) -> int:
    """The seed of the evaluation masks of one (strategy, ratio) cell, from a run's ``seed``:
    notebooks 03, 04 and 05, the sweep, ``evaluate`` and the benchmarks score the same test
    images with the same masks for the same seed, and each cell has masks of its own."""
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
    """Draw masks for any strategy.

    Args:
        strategy: ``random``, ``rows``, ``columns`` or ``importance`` (:data:`STRATEGIES`).
        ratio: fraction of the patches to hide, in (0, 1).
        n_images, grid: N and the patch grid (rows, columns); ``random``/``rows``/``columns``
            need them, or ``images`` and ``patch_size``, from which both follow.
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
        if images is None or patch_size is None:
            raise SettingError(
                "images", images, "strategy 'importance' needs images and patch_size to score them"
            )
        return importance_masking(images, patch_size, ratio, score_fn=score_fn, seed=seed)
    if n_images is None or grid is None:
        raise SettingError(
            "n_images" if n_images is None else "grid",
            None,
            f"strategy {strategy!r} needs n_images and grid, or images and patch_size",
        )
    draw = {"random": random_masking, "rows": rows_masking, "columns": columns_masking}[strategy]
    return draw(n_images, grid, ratio, seed=seed)


def apply_mask(
    images: np.ndarray, mask: np.ndarray, patch_size: int, fill: float = 0.5
) -> np.ndarray:
    """Images with the hidden patches replaced by ``fill``.

    Args:
        images: (N, H, W, C).
        mask: (N, L), 1/True = hidden patch.
        patch_size: side of a square patch.
        fill: the value of every hidden pixel (0.5: grey).

    Returns:
        (N, H, W, C) of ``images``' dtype.
    """
    check_images(images)
    pixels = patch_mask_to_pixels(mask, patch_size, images.shape[1:3])
    if pixels.shape[0] != images.shape[0]:
        raise SettingError(
            "mask",
            np.shape(mask),
            f"has {pixels.shape[0]} rows but there are {images.shape[0]} images",
        )
    return np.where(pixels, np.asarray(fill, dtype=images.dtype), images)


def masked_fraction(mask: np.ndarray) -> float:
    """Fraction of patches hidden.

    Args:
        mask: (N, L), 1/True = hidden patch.

    Returns:
        The mean over the whole batch.
    """
    return float(np.mean(mask))
