import numpy as np
import pytest
from _refused import refused
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from helpers import masking, metrics
from helpers._checks import SettingTypeError
from helpers.patches import patch_mask_to_pixels


def _random_pair(n=20, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    a = rng.random((n, 32, 32, channels), dtype=np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape).astype(np.float32), 0, 1)
    return a, b


def test_batched_ssim_equals_skimage_on_random_images():
    rng = np.random.default_rng(0)
    a = rng.random((12, 32, 32, 3), dtype=np.float32)
    b = rng.random((12, 32, 32, 3), dtype=np.float32)
    ours = metrics.ssim(a, b)
    ref = [structural_similarity(x, y, data_range=1, channel_axis=-1) for x, y in zip(a, b)]
    assert np.allclose(ours, ref, atol=1e-4)


def test_batched_ssim_equals_skimage_on_similar_and_grey_images():
    a, b = _random_pair(8, seed=1)
    ref = [structural_similarity(x, y, data_range=1, channel_axis=-1) for x, y in zip(a, b)]
    assert np.allclose(metrics.ssim(a, b), ref, atol=1e-4)
    g, h = _random_pair(4, seed=2, channels=1)
    ref = [structural_similarity(x, y, data_range=1, channel_axis=-1) for x, y in zip(g, h)]
    assert np.allclose(metrics.ssim(g, h), ref, atol=1e-4)
    assert np.allclose(metrics.ssim(a, a), 1.0)


def test_composite_keeps_visible_pixels_and_takes_masked_from_prediction():
    a, b = _random_pair(6)
    m = masking.make_mask("random", 0.5, n_images=6, grid=(8, 8), seed=0)
    c = metrics.composite(a, b, m, 4)
    pix = patch_mask_to_pixels(m, 4, (32, 32))[..., 0]
    assert np.array_equal(c[~pix], a[~pix])
    assert np.array_equal(c[pix], b[pix])


def test_mse_and_psnr_masked_and_whole():
    a, b = _random_pair(6)
    m = masking.make_mask("rows", 0.5, n_images=6, grid=(8, 8), seed=0)
    res = metrics.evaluate(a, b, m, 4)
    pix = np.broadcast_to(patch_mask_to_pixels(m, 4, (32, 32)), a.shape)
    c = metrics.composite(a, b, m, 4)
    for i in range(6):
        expected_masked = np.mean((a[i][pix[i]].astype(np.float64) - b[i][pix[i]]) ** 2)
        assert res["mse_masked"][i] == pytest.approx(expected_masked, rel=1e-6)
        assert res["psnr_masked"][i] == pytest.approx(10 * np.log10(1 / expected_masked), rel=1e-6)
        assert res["psnr"][i] == pytest.approx(
            peak_signal_noise_ratio(a[i], c[i], data_range=1), rel=1e-5
        )
        assert res["ssim"][i] == pytest.approx(
            structural_similarity(a[i], c[i], data_range=1, channel_axis=-1), abs=1e-4
        )
    # half the pixels are untouched, so the whole-image error is half the masked error
    assert np.allclose(res["mse"], res["mse_masked"] / 2, rtol=1e-6)


def test_a_perfect_prediction_scores_the_maximum():
    a, _ = _random_pair(3)
    m = masking.make_mask("random", 0.3, n_images=3, grid=(8, 8), seed=0)
    res = metrics.evaluate(a, a.copy(), m, 4)
    assert np.all(res["psnr_masked"] == metrics.MAX_PSNR)
    assert np.allclose(res["ssim"], 1.0)


def test_summary_has_mean_and_std():
    s = metrics.summarize({"psnr": np.array([10.0, 20.0])})
    assert s == {"psnr_mean": 15.0, "psnr_std": 5.0}


def test_evaluate_in_batches_equals_one_batch():
    a, b = _random_pair(10)
    m = masking.make_mask("columns", 0.7, n_images=10, grid=(8, 8), seed=1)
    one = metrics.evaluate(a, b, m, 4)
    many = metrics.evaluate(a, b, m, 4, batch_size=3)
    for key in one:
        assert np.allclose(one[key], many[key])


def test_the_patch_size_follows_from_the_mask():
    a, b = _random_pair(5)
    for grid, p in (((8, 8), 4), ((4, 4), 8), ((16, 16), 2)):
        m = masking.make_mask("random", 0.5, n_images=5, grid=grid, seed=0)
        given = metrics.evaluate(a, b, m, p)
        implied = metrics.evaluate(a, b, m)
        for key in given:
            assert np.array_equal(given[key], implied[key])
        assert metrics.sharpness(a, b, m) == metrics.sharpness(a, b, m, p)
        assert np.array_equal(metrics.composite(a, b, m), metrics.composite(a, b, m, p))
    # 48 patches cut no 32x32 image into squares; a patch size given must agree with the mask
    with refused("mask", "48 patches per image"):
        metrics.mse_masked(a, b, np.zeros((5, 48), bool))
    with refused("mask", (5, 64), problem="expected 16"):
        metrics.evaluate(a, b, masking.make_mask("rows", 0.5, n_images=5, grid=(8, 8)), 8)


def test_bad_inputs_are_rejected():
    a, b = _random_pair(4)
    m = masking.make_mask("random", 0.5, n_images=4, grid=(8, 8))
    with refused("predicted", (2, 32, 32, 3)):
        metrics.evaluate(a, b[:2], m, 4)
    with refused("mask", (2, 64)):
        metrics.evaluate(a, b, m[:2], 4)
    with refused("mask", str(m.astype(int).dtype), SettingTypeError):
        metrics.evaluate(a, b, m.astype(int), 4)
    with refused("patch_size", 5):
        metrics.composite(a, b, m, 5)
    with refused("original", "uint8", SettingTypeError):
        metrics.evaluate((a * 255).astype(np.uint8), b, m, 4)
    with refused("original", (float((a * 2).min()), float((a * 2).max()))):
        metrics.evaluate(a * 2, b, m, 4)


def test_sharpness_of_the_filled_in_region():
    rng = np.random.default_rng(0)
    images = rng.random((4, 16, 16, 3)).astype(np.float32)
    mask = np.zeros((4, 16), bool)
    mask[:, 5:11] = True
    assert metrics.sharpness(images, images, mask, 4) == pytest.approx(1.0)  # the original
    flat = np.full_like(images, 0.5)
    assert metrics.sharpness(images, flat, mask, 4) == 0.0  # a flat fill: no detail
    blurred = (images + np.roll(images, 1, axis=1) + np.roll(images, 1, axis=2)) / 3
    assert metrics.sharpness(images, blurred, mask, 4) < 0.9
    noisy = np.clip(images + rng.normal(0, 0.3, images.shape), 0, 1).astype(np.float32)
    assert metrics.sharpness(images, noisy, mask, 4) > 1.1  # noise counts as more than detail
    # only pairs of hidden pixels count: what is predicted for the visible pixels, and the seams
    # between them and the hidden ones, change nothing
    pixels = np.repeat(np.repeat(mask.reshape(4, 4, 4), 4, 1), 4, 2)[..., None]
    elsewhere = np.where(pixels, images, 0.5).astype(np.float32)
    assert metrics.sharpness(images, elsewhere, mask, 4) == pytest.approx(1.0)
    noise_outside = np.where(pixels, images, rng.random(images.shape)).astype(np.float32)
    assert metrics.sharpness(images, noise_outside, mask, 4) == pytest.approx(1.0)
    assert np.isnan(metrics.sharpness(np.full_like(images, 0.3), images, mask, 4))
    with refused("predicted", (2, 16, 16, 3)):
        metrics.sharpness(images, images[:2], mask, 4)
