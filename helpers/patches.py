"""Cut images (N, H, W, C) into square patches (N, L, p*p*C) and back, as MAE's ``patchify``: L =
(H/p) * (W/p) in row-major order, each patch flattened (row, column, channel). The ``_ops``
versions use ``keras.ops``, to run inside models on any backend."""

from __future__ import annotations

import math

import numpy as np

from ._checks import SettingError, check_patch_size, check_positive_int


def grid_shape(image_shape, patch_size: int) -> tuple[int, int]:
    """The patch grid (H // p, W // p) of an image (H, W) or (H, W, C); p must divide H and W."""
    p = check_patch_size(patch_size, image_shape)
    return int(image_shape[0]) // p, int(image_shape[1]) // p


def patch_size_of(n_patches: int, image_shape) -> int:
    """The square patch side p with (H // p) * (W // p) == ``n_patches``, else a SettingError."""
    h, w = int(image_shape[0]), int(image_shape[1])
    p = math.isqrt(h * w // n_patches) if 0 < n_patches <= h * w else 0
    if p == 0 or p * p * n_patches != h * w or h % p or w % p:
        raise SettingError(
            "mask",
            f"{n_patches} patches per image",
            f"no square patch size cuts a {h}x{w} image into that many",
        )
    return p


def _patchify(xp, images, patch_size):
    """:func:`patchify` with the array module ``xp``: NumPy or ``keras.ops``."""
    if getattr(images, "ndim", None) != 4:
        shape = getattr(images, "shape", None)
        raise SettingError("images", shape, "must have rank 4 (N, H, W, C), channels last")
    n, h, w, c = images.shape
    gh, gw = grid_shape((h, w), patch_size)
    n, p = n if xp is np else -1, patch_size
    x = xp.transpose(xp.reshape(images, (n, gh, p, gw, p, c)), (0, 1, 3, 2, 4, 5))
    return xp.reshape(x, (n, gh * gw, p * p * c))


def _unpatchify(xp, patches, patch_size, image_shape):
    """:func:`unpatchify` with the array module ``xp``: NumPy or ``keras.ops``."""
    if len(image_shape) != 3:
        raise SettingError("image_shape", tuple(image_shape), "must be (H, W, C)")
    h, w, c = (int(v) for v in image_shape)
    check_positive_int(c, "image_shape channels")
    gh, gw = grid_shape((h, w), patch_size)
    p, expected = patch_size, (gh * gw, patch_size * patch_size * c)
    if len(patches.shape) != 3 or tuple(patches.shape[1:]) != expected:
        raise SettingError(
            "patches",
            tuple(patches.shape),
            f"must have shape (N, {expected[0]}, {expected[1]}) for image_shape "
            f"{tuple(image_shape)} and patch_size {patch_size}",
        )
    n = patches.shape[0] if xp is np else -1
    x = xp.transpose(xp.reshape(patches, (n, gh, gw, p, p, c)), (0, 1, 3, 2, 4, 5))
    return xp.reshape(x, (n, h, w, c))


def patchify(images: np.ndarray, patch_size: int) -> np.ndarray:
    """Cut images (N, H, W, C) into patches (N, L, p*p*C); ``patch_size`` p must divide H and W."""
    return _patchify(np, np.asarray(images), patch_size)


def unpatchify(patches: np.ndarray, patch_size: int, image_shape) -> np.ndarray:
    """Put patches (N, L, p*p*C) back into images (N, H, W, C) of ``image_shape`` (H, W, C)."""
    return _unpatchify(np, np.asarray(patches), patch_size, image_shape)


def patchify_ops(images, patch_size: int):
    """:func:`patchify` with ``keras.ops`` on a tensor whose H, W and C are static."""
    from keras import ops  # lazy: Keras is heavy

    return _patchify(ops, images, patch_size)


def unpatchify_ops(patches, patch_size: int, image_shape):
    """:func:`unpatchify` with ``keras.ops``."""
    from keras import ops  # lazy: Keras is heavy

    return _unpatchify(ops, patches, patch_size, image_shape)


def patch_mask_to_pixels(mask: np.ndarray, patch_size: int, image_shape) -> np.ndarray:
    """Expand a patch mask (N, L), 1/True = hidden, to a bool pixel mask (N, H, W, 1) for images
    of ``image_shape`` (H, W) or (H, W, C)."""
    gh, gw = grid_shape(image_shape, patch_size)
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or mask.shape[1] != gh * gw:
        raise SettingError(
            "mask", mask.shape, f"must have shape (N, {gh * gw}) for a {gh}x{gw} patch grid"
        )
    pixels = np.repeat(np.repeat(mask.reshape(-1, gh, gw), patch_size, axis=1), patch_size, axis=2)
    return pixels[..., None]
