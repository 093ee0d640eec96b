"""Cut images into non-overlapping square patches and put them back.

Layout (as in MAE's ``patchify``): images ``(N, H, W, C)`` become ``(N, L, p*p*C)`` with
``L = (H/p) * (W/p)`` patches in row-major order over the patch grid; each patch is flattened
in ``(row, column, channel)`` order. CIFAR-10 with ``p = 4``: 64 patches of 48 values.

``patchify``/``unpatchify`` work on NumPy arrays; ``patchify_ops``/``unpatchify_ops`` do the
same with ``keras.ops`` so they run inside models on any Keras backend.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import SettingError, check_patch_size, check_positive_int


def grid_shape(image_shape, patch_size: int) -> tuple[int, int]:
    """The patch grid of an image.

    Args:
        image_shape: (H, W) or (H, W, C).
        patch_size: side ``p`` of a square patch; must divide H and W.

    Returns:
        ``(H // p, W // p)``: patch rows and columns.
    """
    p = check_patch_size(patch_size, image_shape)
    return int(image_shape[0]) // p, int(image_shape[1]) // p


def patch_size_of(n_patches: int, image_shape) -> int:
    """The square patch size that a mask of shape (N, ``n_patches``) implies.

    Args:
        n_patches: patches per image.
        image_shape: (H, W) or (H, W, C).

    Returns:
        The patch side ``p`` with ``(H // p) * (W // p) == n_patches``; a SettingError when no
        square patch cuts the image into that many.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    p = math.isqrt(h * w // n_patches) if 0 < n_patches <= h * w else 0
    if p == 0 or p * p * n_patches != h * w or h % p or w % p:
        raise SettingError(
            "mask",
            f"{n_patches} patches per image",
            f"no square patch size cuts a {h}x{w} image into that many",
        )
    return p


def _check_batch(images, name="images"):
    if getattr(images, "ndim", None) != 4:
        shape = getattr(images, "shape", None)
        raise SettingError(name, shape, "must have rank 4 (N, H, W, C), channels last")


def patchify(images: np.ndarray, patch_size: int) -> np.ndarray:
    """Cut images into patches (NumPy).

    Args:
        images: (N, H, W, C).
        patch_size: side ``p`` of a square patch; must divide H and W.

    Returns:
        (N, L, p*p*C), ``L = (H/p) * (W/p)`` patches in row-major order, each flattened in
        (row, column, channel) order.
    """
    images = np.asarray(images)
    _check_batch(images)
    n, h, w, c = images.shape
    gh, gw = grid_shape((h, w), patch_size)
    p = patch_size
    x = images.reshape(n, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, gh * gw, p * p * c)


def unpatchify(patches: np.ndarray, patch_size: int, image_shape) -> np.ndarray:
    """Put patches back into images (NumPy): the inverse of :func:`patchify`.

    Args:
        patches: (N, L, p*p*C).
        patch_size: side ``p`` of a square patch.
        image_shape: (H, W, C) of the images.

    Returns:
        (N, H, W, C).
    """
    patches = np.asarray(patches)
    h, w, c = _check_patch_layout(patches, patch_size, image_shape)
    gh, gw, p = h // patch_size, w // patch_size, patch_size
    x = patches.reshape(patches.shape[0], gh, gw, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(patches.shape[0], h, w, c)


def _check_patch_layout(patches, patch_size, image_shape):
    if len(image_shape) != 3:
        raise SettingError("image_shape", tuple(image_shape), "must be (H, W, C)")
    h, w, c = (int(v) for v in image_shape)
    check_positive_int(c, "image_shape channels")
    gh, gw = grid_shape((h, w), patch_size)
    expected = (gh * gw, patch_size * patch_size * c)
    if len(patches.shape) != 3 or tuple(patches.shape[1:]) != expected:
        raise SettingError(
            "patches",
            tuple(patches.shape),
            f"must have shape (N, {expected[0]}, {expected[1]}) for image_shape "
            f"{tuple(image_shape)} and patch_size {patch_size}",
        )
    return h, w, c


def patchify_ops(images, patch_size: int):
    """:func:`patchify` with ``keras.ops``, for use inside a model on any backend.

    Args:
        images: a tensor (N, H, W, C) whose H, W and C are static.
        patch_size: side ``p`` of a square patch; must divide H and W.

    Returns:
        A tensor (N, L, p*p*C).
    """
    from keras import ops  # lazy: Keras is heavy

    _check_batch(images)
    _, h, w, c = images.shape
    gh, gw = grid_shape((h, w), patch_size)
    p = patch_size
    x = ops.reshape(images, (-1, gh, p, gw, p, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, gh * gw, p * p * c))


def unpatchify_ops(patches, patch_size: int, image_shape):
    """:func:`unpatchify` with ``keras.ops``, for use inside a model on any backend.

    Args:
        patches: a tensor (N, L, p*p*C).
        patch_size: side ``p`` of a square patch.
        image_shape: (H, W, C) of the images.

    Returns:
        A tensor (N, H, W, C).
    """
    from keras import ops  # lazy: Keras is heavy

    h, w, c = _check_patch_layout(patches, patch_size, image_shape)
    gh, gw, p = h // patch_size, w // patch_size, patch_size
    x = ops.reshape(patches, (-1, gh, gw, p, p, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, h, w, c))


def patch_mask_to_pixels(mask: np.ndarray, patch_size: int, image_shape) -> np.ndarray:
    """Expand a patch mask to a pixel mask.

    Args:
        mask: (N, L), 1/True = hidden patch.
        patch_size: side ``p`` of a square patch.
        image_shape: (H, W) or (H, W, C) of the images.

    Returns:
        bool (N, H, W, 1), True = hidden pixel.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    gh, gw = grid_shape((h, w), patch_size)
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or mask.shape[1] != gh * gw:
        raise SettingError(
            "mask", mask.shape, f"must have shape (N, {gh * gw}) for a {gh}x{gw} patch grid"
        )
    grid = mask.reshape(-1, gh, gw)
    pixels = np.repeat(np.repeat(grid, patch_size, axis=1), patch_size, axis=2)
    return pixels[..., None]
