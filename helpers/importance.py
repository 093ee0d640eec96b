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

import numpy as np

from ._checks import check_images, check_mask, check_patch_size, check_positive_int
from .models import CNN_FILL, NON_LEARNED, check_mask_for_model, mae_min_masked, model_kind
from .patches import grid_shape, patch_mask_to_pixels, patchify, patchify_ops


def _input_gradient(fn, x):
    """Gradient of the scalar ``fn(x)`` with respect to the tensor ``x``, on the Keras backend."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return tape.gradient(y, x)
    if backend == "jax":
        import jax

        return jax.jit(jax.grad(fn))(x)
    if backend == "torch":
        import torch

        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(x), x)
        return grad
    raise NotImplementedError(f"gradient_scores supports the tensorflow, jax and torch backends, not {backend!r}")


def _loss_fn(model, kind: str, mask: np.ndarray, patch_size: int, image_shape):
    """The loss as a function of the images: sum over images of the MSE over hidden values."""
    from keras import ops

    hidden_patches = ops.convert_to_tensor(mask.astype("float32"))  # (n, L)
    pixels = ops.convert_to_tensor(patch_mask_to_pixels(mask, patch_size, image_shape).astype("float32"))  # (n,H,W,1)
    values_per_patch = patch_size * patch_size * image_shape[2]

    def loss(x):
        target = ops.stop_gradient(x)
        if kind == "cnn":
            masked = ops.where(pixels > 0.5, ops.full_like(x, CNN_FILL), x)
            pred = model({"image": ops.concatenate([masked, pixels], axis=-1)}, training=False)
            err = ops.sum(ops.square(ops.cast(pred, x.dtype) - target) * pixels, axis=(1, 2, 3))
            count = ops.sum(pixels, axis=(1, 2, 3)) * image_shape[2]
        else:
            patches = patchify_ops(x, patch_size)
            pred = model({"patches": patches, "mask": hidden_patches}, training=False)
            sq = ops.sum(ops.square(ops.cast(pred, x.dtype) - patchify_ops(target, patch_size)), axis=-1)
            err = ops.sum(sq * hidden_patches, axis=1)
            count = ops.sum(hidden_patches, axis=1) * values_per_patch
        return ops.sum(err / ops.maximum(count, 1.0))

    return loss


def _scores_one_mask(model, kind, images, mask, patch_size):
    from keras import ops

    fn = _loss_fn(model, kind, mask, patch_size, images.shape[1:])
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


def _default_groups(model, kind, n_patches):
    if kind != "mae":
        return 2
    max_visible = n_patches - mae_min_masked(model)
    return max(2, math.ceil(n_patches / max_visible))


def gradient_scores(
    model, images: np.ndarray, patch_size: int, mask: np.ndarray | None = None, *,
    groups: int | None = None, batch_size: int = 128, seed: int = 0,
) -> np.ndarray:
    """Patch importance (N, L): L2 norm of the gradient of the reconstruction loss w.r.t. each
    patch's input pixels (see the module docstring for the loss and the ``mask=None`` scheme).

    ``groups``: number of passes of the default scheme (2; for an MAE at least enough passes that
    each hides as many patches as it was built for). ``batch_size`` images per gradient pass.
    """
    check_images(images)
    check_patch_size(patch_size, images.shape[1:3])
    batch_size = check_positive_int(batch_size, "batch_size")
    kind = model_kind(model)
    if kind in NON_LEARNED:
        raise ValueError(f"gradient_scores needs a Keras model (vit, mae or cnn); the {kind} inpainter has no gradients")
    gh, gw = grid_shape(images.shape[1:3], patch_size)
    n_patches = gh * gw
    images = images.astype(np.float32, copy=False)
    if mask is not None:
        check_mask(mask, n_images=images.shape[0], n_patches=n_patches)
        masks = [mask]
    else:
        need = _default_groups(model, kind, n_patches)
        groups = need if groups is None else check_positive_int(groups, "groups", minimum=2)
        if groups < need or groups > n_patches:
            raise ValueError(f"groups must be between {need} and {n_patches} for this {kind} model, got {groups}")
        masks = partition_masks(images.shape[0], n_patches, groups, seed=seed)
    for m in masks:
        check_mask_for_model(model, m)
    scores = np.zeros((images.shape[0], n_patches), dtype=np.float32)
    for start in range(0, images.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        for m in masks:  # each patch is visible in at most one pass (exactly one by default)
            scores[sl] += np.where(m[sl], 0.0, _scores_one_mask(model, kind, images[sl], m[sl], patch_size))
    return scores


def gradient_score_fn(model, **kwargs):
    """A score function ``(images, patch_size) -> (N, L)`` for ``helpers.masking.make_mask(
    "importance", ..., score_fn=...)``; ``kwargs`` go to :func:`gradient_scores`."""

    def score(images, patch_size):
        return gradient_scores(model, images, patch_size, **kwargs)

    score.__name__ = f"gradient_score_{getattr(model, 'name', 'model')}"
    return score
