"""Gradient importance: shapes, zero on hidden patches, agreement with finite differences."""

import keras
import numpy as np
import pytest
from _refused import refused

from helpers import importance, masking, models
from helpers._checks import SettingTypeError
from helpers.patches import patch_mask_to_pixels, patchify, unpatchify

SHAPE = (16, 16, 3)
P = 4
TINY = dict(image_shape=SHAPE, patch_size=P, embed_dim=16, depth=1, num_heads=2, mlp_dim=16)


@pytest.fixture(scope="module")
def vit():
    return models.build_vit(**TINY)


@pytest.fixture(scope="module")
def images():
    return (0.1 + 0.8 * np.random.default_rng(0).random((3, *SHAPE))).astype(np.float32)


def loss_at(model, images, mask):
    fn = importance._loss_fn(model, mask, P, images.shape[1:])
    return lambda x: float(keras.ops.convert_to_numpy(fn(keras.ops.convert_to_tensor(x))))


def test_scores_match_finite_differences(vit, images):
    """The score of a visible patch is the slope of the loss along that patch's own gradient
    direction; any visible direction agrees with the directional derivative."""
    mask = masking.make_mask("random", 0.5, images=images, patch_size=P, seed=1)
    scores = importance.gradient_scores(vit, images, P, mask=mask)
    f = loss_at(vit, images, mask)
    fn = importance._loss_fn(vit, mask, P, SHAPE)
    grad = keras.ops.convert_to_numpy(
        importance._input_gradient(fn, keras.ops.convert_to_tensor(images))
    )
    eps = 1e-2
    for i, j in [(0, int(np.flatnonzero(~mask[0])[0])), (2, int(np.flatnonzero(~mask[2])[-1]))]:
        d = np.zeros((3, 16, 48), np.float32)
        d[i, j] = (
            patchify(grad, P)[i, j] / scores[i, j]
        )  # unit vector along the gradient of patch j
        d = unpatchify(d, P, SHAPE)
        slope = (f(images + eps * d) - f(images - eps * d)) / (2 * eps)
        assert slope == pytest.approx(scores[i, j], rel=2e-2)
    d = np.random.default_rng(5).standard_normal(images.shape).astype(np.float32)
    d *= ~patch_mask_to_pixels(
        mask, P, SHAPE
    )  # visible pixels only: the hidden ones are only targets
    slope = (f(images + eps * d) - f(images - eps * d)) / (2 * eps)
    assert slope == pytest.approx(float(np.sum(grad * d)), rel=2e-2)


def test_hidden_patches_score_zero_and_default_scores_all(vit, images):
    mask = masking.make_mask("random", 0.5, images=images, patch_size=P, seed=2)
    s = importance.gradient_scores(vit, images, P, mask=mask)
    assert s.shape == (3, 16) and s.dtype == np.float32
    assert np.all(s[mask] == 0) and np.all(s[~mask] > 0)
    default = importance.gradient_scores(vit, images, P, batch_size=2)
    assert default.shape == (3, 16) and np.all(default > 0)
    np.testing.assert_allclose(
        default, importance.gradient_scores(vit, images, P), rtol=1e-5
    )  # seeded


def test_partition_masks_cover_every_patch_once():
    masks = importance.partition_masks(4, 16, 3, seed=0)
    visible = np.stack([~m for m in masks])
    assert np.all(visible.sum(axis=0) == 1)
    assert set(visible.sum(axis=2).ravel()) <= {5, 6}


def test_score_fn_drives_importance_masking(vit, images):
    score_fn = importance.gradient_score_fn(vit, seed=3)
    mask = masking.make_mask("importance", 0.25, images=images, patch_size=P, score_fn=score_fn)
    assert mask.shape == (3, 16) and np.all(mask.sum(axis=1) == 4)
    scores = score_fn(images, P)
    for s, m in zip(scores, mask):
        assert s[m].min() >= s[~m].max()


def test_other_models(images):
    mae = models.build_mae(
        **TINY,
        decoder_dim=8,
        decoder_depth=1,
        decoder_num_heads=2,
        decoder_mlp_dim=8,
        min_mask_ratio=0.7,
    )
    s = importance.gradient_scores(mae, images, P)  # 4 passes: each hides >= 11 of 16
    assert s.shape == (3, 16) and np.all(s > 0)
    with refused("groups", 2, problem="between 4 and 16"):
        importance.gradient_scores(mae, images, P, groups=2)
    with refused("mask", "8 hidden", problem="at least 11"):
        importance.gradient_scores(
            mae, images, P, mask=masking.make_mask("random", 0.5, images=images, patch_size=P)
        )
    cnn = models.build_cnn_autoencoder(image_shape=SHAPE, patch_size=P, filters=(4, 8))
    assert np.all(importance.gradient_scores(cnn, images, P) > 0)
    with refused("model", "BiharmonicInpainter", SettingTypeError) as info:
        importance.gradient_scores(models.BiharmonicInpainter(), images, P)
    assert isinstance(info.value, ValueError)  # a ValueError, as before
