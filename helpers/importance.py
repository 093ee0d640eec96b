"""Gradient-based patch importance: the L2 norm of the gradient of the reconstruction loss (the
MSE over hidden values, target held constant) with respect to each patch's input pixels."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from ._checks import (
    SettingError,
    SettingTypeError,
    check_images,
    check_mask,
    check_patch_size,
    check_positive_int,
)
from .models import MaskedImageModel, check_fits
from .patches import grid_shape, patch_mask_to_pixels, patchify


def _input_gradient(fn, x):
    """Gradient of the scalar ``fn(x)`` with respect to the tensor ``x``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # that backend only

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return tape.gradient(y, x)
    if backend == "jax":
        import jax  # that backend only

        return jax.jit(jax.grad(fn))(x)
    if backend == "torch":
        import torch  # that backend only

        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(x), x)
        return grad
    raise NotImplementedError(
        f"gradient_scores supports the tensorflow, jax and torch backends, not {backend!r}"
    )


def _loss_fn(model, mask: np.ndarray, patch_size: int, image_shape):
    """The loss as a function of the images: sum over images of the MSE over hidden values."""
    patch_mask = ops.convert_to_tensor(mask.astype("float32"))  # (n, L)
    pixels = patch_mask_to_pixels(mask, patch_size, image_shape).astype("float32")  # (n, H, W, 1)
    pixels = ops.convert_to_tensor(pixels)

    def loss(x):
        pred = model({"images": x, "mask": patch_mask}, training=False)
        squares = ops.square(ops.cast(pred, x.dtype) - ops.stop_gradient(x))
        err = ops.sum(squares * pixels, axis=(1, 2, 3))
        return ops.sum(err / ops.maximum(ops.sum(pixels, axis=(1, 2, 3)) * image_shape[2], 1.0))

    return loss


def partition_masks(n_images: int, n_patches: int, groups: int, seed=0) -> list[np.ndarray]:
    """``groups`` bool masks (N, L) of a random split of the patches into (nearly) equal groups;
    in mask ``g`` only group ``g`` is visible."""
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((n_images, n_patches)), axis=1)
    group_of = np.argsort(order, axis=1) % groups  # a patch's rank in the random order
    return [group_of != g for g in range(groups)]


def gradient_scores(
    model,
    images: np.ndarray,
    patch_size: int,
    mask: np.ndarray | None = None,
    *,
    groups: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
) -> np.ndarray:
    """Patch importance: the gradient norm of the reconstruction loss over each patch's pixels.

    Args:
        model: a :class:`helpers.models.MaskedImageModel`.
        images: (N, H, W, C) in [0, 1].
        mask: bool (N, L) for one pass with that mask; None: the ``groups`` passes.
        groups: passes when ``mask`` is None; default 2, or enough that each hides
            ``model.min_masked`` patches.
        batch_size: images per gradient pass.

    Returns:
        float32 (N, L).
    """
    check_images(images)
    check_patch_size(patch_size, images.shape[1:3])
    batch_size = check_positive_int(batch_size, "batch_size")
    if not isinstance(model, MaskedImageModel):
        problem = "gradient_scores needs a Keras model (vit, mae or cnn); this one has no gradients"
        raise SettingTypeError("model", type(model).__name__, problem)
    check_fits(model, images.shape[1:], patch_size)
    n_patches = math.prod(grid_shape(images.shape[1:3], patch_size))
    images = images.astype(np.float32, copy=False)
    if mask is not None:
        check_mask(mask, n_images=images.shape[0], n_patches=n_patches)
        masks = [mask]
    else:
        need = max(2, math.ceil(n_patches / (n_patches - model.min_masked)))
        groups = need if groups is None else check_positive_int(groups, "groups", minimum=2)
        if groups < need or groups > n_patches:
            problem = f"must be between {need} and {n_patches} for this {model.name} model"
            raise SettingError("groups", groups, problem)
        masks = partition_masks(images.shape[0], n_patches, groups, seed=seed)
    for m in masks:
        hidden = int(m.sum(axis=1).min()) if m.size else None
        check_fits(model, images.shape[1:], patch_size, hidden=hidden)
    scores = np.zeros((images.shape[0], n_patches), dtype=np.float32)
    for start in range(0, images.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        for m in masks:  # each patch is visible in at most one pass (exactly one by default)
            fn = _loss_fn(model, m[sl], patch_size, images.shape[1:])
            grad = ops.convert_to_numpy(_input_gradient(fn, ops.convert_to_tensor(images[sl])))
            norms = np.linalg.norm(patchify(grad, patch_size), axis=-1)
            scores[sl] += np.where(m[sl], 0.0, norms)
    return scores


def gradient_score_fn(model, **kwargs):
    """:func:`gradient_scores` of ``model`` as a ``score_fn`` of ``masking.make_mask``."""

    def score(images, patch_size):
        return gradient_scores(model, images, patch_size, **kwargs)

    score.__name__ = f"gradient_score_{getattr(model, 'name', 'model')}"
    return score
