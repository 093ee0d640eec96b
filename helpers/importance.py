"""Gradient-based patch importance: how much a model's reconstruction loss depends on each patch.

``gradient_scores(model, images, patch_size)`` gives, for every patch, the L2 norm of the
gradient of the model's reconstruction loss with respect to that patch's input pixels.

Which loss, on which input: the loss a model was trained for, the MSE over the *hidden*
patches, whose content the model never sees (the target is held constant). So the gradient of a
visible patch measures how much the prediction of the hidden ones relies on it, and a hidden
patch has gradient 0. To score every patch, by default (``mask=None``) the patches are split
at random (seeded) into ``groups`` groups of equal size (2 by default: half of the patches
visible, as at 50% masking); in pass ``g`` the patches of group ``g`` are visible and all the
others hidden, so each patch is scored in the one pass where it is visible. Pass a boolean
``mask`` (N, L) instead for one pass with that mask (hidden patches then score 0). The loss is
the sum over images of each image's mean squared error over its hidden values, so the score of
an image does not depend on the batch it is in.

Only :func:`_input_gradient` knows the backend (TensorFlow ``GradientTape``, ``jax.grad``,
``torch.autograd``); the rest is ``keras.ops``.
"""

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
    """Gradient of the scalar ``fn(x)`` with respect to the tensor ``x``, on the Keras backend."""
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
    pixels = ops.convert_to_tensor(
        patch_mask_to_pixels(mask, patch_size, image_shape).astype("float32")
    )  # (n,H,W,1)

    def loss(x):
        pred = model({"images": x, "mask": patch_mask}, training=False)
        err = ops.sum(
            ops.square(ops.cast(pred, x.dtype) - ops.stop_gradient(x)) * pixels, axis=(1, 2, 3)
        )
        return ops.sum(err / ops.maximum(ops.sum(pixels, axis=(1, 2, 3)) * image_shape[2], 1.0))

    return loss


def _scores_one_mask(model, images, mask, patch_size):
    fn = _loss_fn(model, mask, patch_size, images.shape[1:])
    grad = ops.convert_to_numpy(_input_gradient(fn, ops.convert_to_tensor(images)))
    return np.sqrt(np.sum(np.square(patchify(grad, patch_size)), axis=-1))


def partition_masks(n_images: int, n_patches: int, groups: int, seed=0) -> list[np.ndarray]:
    """``groups`` masks (N, L): a random split of the patches into groups of (nearly) equal size;
    in mask ``g`` only group ``g`` is visible. Every patch is visible in exactly one mask."""
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((n_images, n_patches)), axis=1)
    group_of = np.empty_like(order)
    np.put_along_axis(group_of, order, np.arange(n_patches)[None, :] % groups, axis=1)
    return [group_of != g for g in range(groups)]


def _default_groups(model, n_patches):
    """2 passes (half visible), or enough that each hides ``model.min_masked`` patches."""
    return max(2, math.ceil(n_patches / (n_patches - model.min_masked)))


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
    """Patch importance (N, L): L2 norm of the gradient of the reconstruction loss w.r.t. each
    patch's input pixels (see the module docstring for the loss and the ``mask=None`` scheme).

    ``groups``: number of passes of the default scheme (2; for an MAE at least enough passes that
    each hides as many patches as it was built for). ``batch_size`` images per gradient pass.
    """
    check_images(images)
    check_patch_size(patch_size, images.shape[1:3])
    batch_size = check_positive_int(batch_size, "batch_size")
    if not isinstance(model, MaskedImageModel):
        raise SettingTypeError(
            "model",
            type(model).__name__,
            "gradient_scores needs a Keras model (vit, mae or cnn); this one has no gradients",
        )
    check_fits(model, images.shape[1:], patch_size)
    gh, gw = grid_shape(images.shape[1:3], patch_size)
    n_patches = gh * gw
    images = images.astype(np.float32, copy=False)
    if mask is not None:
        check_mask(mask, n_images=images.shape[0], n_patches=n_patches)
        masks = [mask]
    else:
        need = _default_groups(model, n_patches)
        groups = need if groups is None else check_positive_int(groups, "groups", minimum=2)
        if groups < need or groups > n_patches:
            raise SettingError(
                "groups",
                groups,
                f"must be between {need} and {n_patches} for this {model.name} model",
            )
        masks = partition_masks(images.shape[0], n_patches, groups, seed=seed)
    for m in masks:
        check_fits(
            model, images.shape[1:], patch_size, hidden=int(m.sum(axis=1).min()) if m.size else None
        )
    scores = np.zeros((images.shape[0], n_patches), dtype=np.float32)
    for start in range(0, images.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        for m in masks:  # each patch is visible in at most one pass (exactly one by default)
            scores[sl] += np.where(
                m[sl], 0.0, _scores_one_mask(model, images[sl], m[sl], patch_size)
            )
    return scores


def gradient_score_fn(model, **kwargs):
    """A score function ``(images, patch_size) -> (N, L)`` for ``helpers.masking.make_mask(
    "importance", ..., score_fn=...)``; ``kwargs`` go to :func:`gradient_scores`."""

    def score(images, patch_size):
        return gradient_scores(model, images, patch_size, **kwargs)

    score.__name__ = f"gradient_score_{getattr(model, 'name', 'model')}"
    return score
