"""Reconstruction metrics per image: MSE and PSNR (hidden region, whole image) and SSIM, scored
on the :func:`composite` of a prediction with the original's visible pixels."""

from __future__ import annotations

import math

import numpy as np

from ._checks import SettingError, check_images, check_mask
from .patches import grid_shape, patch_mask_to_pixels, patch_size_of

MAX_PSNR = 100.0  # dB, reported when the error is exactly zero


def _pair(original, predicted):
    check_images(original, "original")
    check_images(predicted, "predicted", value_range=False)
    if original.shape != predicted.shape:
        raise SettingError(
            "predicted", predicted.shape, f"must have the shape of original {original.shape}"
        )


def _pixel_mask(mask, patch_size, images):
    if patch_size is None:  # the mask's width implies it
        check_mask(mask, n_images=images.shape[0])
        patch_size = patch_size_of(mask.shape[1], images.shape[1:3])
    gh, gw = grid_shape(images.shape[1:3], patch_size)
    check_mask(mask, n_images=images.shape[0], n_patches=gh * gw)
    return patch_mask_to_pixels(mask, patch_size, images.shape[1:3])


def composite(
    original: np.ndarray, predicted: np.ndarray, mask: np.ndarray, patch_size: int | None = None
) -> np.ndarray:
    """Visible pixels from ``original`` (N, H, W, C) in [0, 1], hidden pixels from ``predicted``
    (clipped to [0, 1]), in ``original``'s dtype.

    Args:
        mask: bool (N, L), True = hidden patch.
        patch_size: here and below, None takes the one the mask's width implies.
    """
    _pair(original, predicted)
    out = np.where(_pixel_mask(mask, patch_size, original), np.clip(predicted, 0.0, 1.0), original)
    return out.astype(original.dtype, copy=False)


def mse_masked(original, predicted, mask, patch_size=None) -> np.ndarray:
    """Per-image mean squared error over the hidden pixels, ``predicted`` clipped; float64 (N,)."""
    _pair(original, predicted)
    pixels = _pixel_mask(mask, patch_size, original)
    err = (original.astype(np.float64) - np.clip(predicted, 0.0, 1.0)) ** 2 * pixels
    count = pixels.sum(axis=(1, 2, 3)) * original.shape[-1]
    return err.sum(axis=(1, 2, 3)) / np.maximum(count, 1)


def mse(original, predicted) -> np.ndarray:
    """Mean squared error over all pixels, per image (not clipped); float64 (N,)."""
    _pair(original, predicted)
    return ((original.astype(np.float64) - predicted) ** 2).mean(axis=(1, 2, 3))


def psnr_from_mse(mse_values, data_range: float = 1.0) -> np.ndarray:
    """PSNR in dB, ``10 log10(data_range**2 / mse)`` at most :data:`MAX_PSNR`, float64."""
    mse_values = np.asarray(mse_values, dtype=np.float64)
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(data_range**2 / mse_values)
    return np.minimum(values, MAX_PSNR)


def _window_means(stack: np.ndarray, win_size: int) -> np.ndarray:
    """Means over every full window of (..., H, W, C): (..., H - win + 1, W - win + 1, C)."""
    c = np.cumsum(stack, axis=-3)
    c = np.concatenate([np.zeros_like(c[..., :1, :, :]), c], axis=-3)
    rows = c[..., win_size:, :, :] - c[..., :-win_size, :, :]
    c = np.cumsum(rows, axis=-2)
    c = np.concatenate([np.zeros_like(c[..., :1, :]), c], axis=-2)
    return (c[..., win_size:, :] - c[..., :-win_size, :]) / (win_size * win_size)


def ssim(
    original: np.ndarray, predicted: np.ndarray, win_size: int = 7, chunk: int = 32
) -> np.ndarray:
    """Per-image SSIM, as ``skimage.metrics.structural_similarity(a, b, data_range=1,
    channel_axis=-1)``; skimage crops the map's border, so only full windows are computed.

    Args:
        original, predicted: (N, H, W, C) in [0, 1].
        win_size: odd side of the uniform window, from 3 to the image's shorter side.
        chunk: images computed together (a memory bound; the values do not depend on it).

    Returns:
        float64 (N,).
    """
    _pair(original, predicted)
    if min(original.shape[1:3]) < win_size or win_size % 2 == 0 or win_size < 3:
        raise SettingError(
            "win_size",
            win_size,
            f"must be odd, >= 3 and at most the image side {min(original.shape[1:3])}",
        )
    if len(original) > chunk:  # small chunks stay in cache: faster than one big array
        parts = [slice(i, i + chunk) for i in range(0, len(original), chunk)]
        return np.concatenate([ssim(original[s], predicted[s], win_size, chunk) for s in parts])
    x, y = original.astype(np.float64), predicted.astype(np.float64)
    ux, uy, uxx, uyy, uxy = _window_means(np.stack([x, y, x * x, y * y, x * y]), win_size)
    n = win_size * win_size
    cov_norm = n / (n - 1)  # sample covariance, as skimage's default
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.mean(axis=(1, 2, 3))


def evaluate(original, predicted, mask, patch_size=None, batch_size=512) -> dict[str, np.ndarray]:
    """Per-image metrics of a prediction, scored on its :func:`composite`.

    Args:
        batch_size: images scored together (a memory bound; the values do not depend on it).

    Returns:
        ``mse_masked``, ``psnr_masked`` (hidden pixels), ``mse``, ``psnr`` and ``ssim`` (the
        whole composite), each float64 (N,).
    """
    _pair(original, predicted)
    _pixel_mask(mask, patch_size, original)
    patch_size = patch_size or patch_size_of(mask.shape[1], original.shape[1:3])
    parts = []
    for start in range(0, original.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        o, m = original[sl], mask[sl]
        comp = composite(o, predicted[sl], m, patch_size)
        mm, mw = mse_masked(o, comp, m, patch_size), mse(o, comp)
        row = dict(mse_masked=mm, psnr_masked=psnr_from_mse(mm), mse=mw, psnr=psnr_from_mse(mw))
        parts.append({**row, "ssim": ssim(o, comp)})
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def summarize(values: dict[str, np.ndarray]) -> dict[str, float]:
    """``{name}_mean`` and ``{name}_std`` (population) of each per-image metric, as floats."""
    stats = (("mean", np.mean), ("std", np.std))
    return {f"{key}_{s}": float(f(v)) for key, v in values.items() for s, f in stats}


def sharpness(original, predicted, mask, patch_size=None) -> float:
    """Mean absolute difference between neighbouring hidden pixels of ``predicted`` (clipped),
    divided by the original's: below 1 blurred, above 1 noisier; NaN if the original is flat."""
    _pair(original, predicted)
    hidden = _pixel_mask(mask, patch_size, original)[..., 0]
    pairs = (hidden[:, 1:, :] & hidden[:, :-1, :], hidden[:, :, 1:] & hidden[:, :, :-1])

    def detail(images):
        x = images.astype(np.float64)
        dy = np.abs(np.diff(x, axis=1)).mean(axis=-1)
        dx = np.abs(np.diff(x, axis=2)).mean(axis=-1)
        return (dy * pairs[0]).sum() + (dx * pairs[1]).sum()

    truth = detail(original)
    return float(detail(np.clip(predicted, 0.0, 1.0)) / truth) if truth > 0 else math.nan
