"""Grayscale: one-channel datasets, the Transformers' learned 1x1 adapters, a colour-trained model
moved to gray images, metrics and pictures of one channel."""

import keras
import numpy as np
import pytest
from _refused import refused
from skimage.color import rgb2gray

from helpers import data, metrics, models, plots, training
from helpers.masking import make_mask
from helpers.tools.cli import main

TINY = dict(depth=1, num_heads=2, embed_dim=16, mlp_dim=16, seed=0)
MAE = dict(decoder_depth=1, decoder_dim=16, decoder_num_heads=2, decoder_mlp_dim=16)
BUILDERS = {
    "vit": lambda shape, **kw: models.build_vit(shape, **TINY, **kw),
    "vit_token": lambda shape: models.build_vit(shape, **TINY, fill="token"),
    "mae": lambda shape: models.build_mae(shape, **TINY, **MAE, min_mask_ratio=0.3),
    "vit_cnn": lambda shape: models.build_vit_cnn(shape, **TINY),
}
GRAY, COLOUR = (32, 32, 1), (32, 32, 3)


@pytest.fixture(scope="module")
def gray_images():
    rng = np.random.default_rng(0)
    return rng.random((4, 32, 32, 1), dtype=np.float32)


@pytest.fixture(scope="module")
def mask():
    return make_mask("random", 0.5, n_images=4, grid=(8, 8), seed=0).astype(np.float32)


def test_to_gray_is_rgb2gray():
    rgb = np.random.default_rng(1).random((3, 8, 8, 3), dtype=np.float32)
    gray = data.to_gray(rgb)
    assert gray.shape == (3, 8, 8, 1) and gray.dtype == np.float32
    np.testing.assert_allclose(gray[..., 0], rgb2gray(rgb), rtol=1e-6)
    with refused("images", (3, 8, 8, 1)):
        data.to_gray(gray)


def test_a_gray_dataset_has_one_channel():
    colour = data.load_dataset("sample", n_train=50, n_test=20, seed=0)
    gray = data.load_dataset("sample", n_train=50, n_test=20, seed=0, grayscale=True)
    assert gray.image_shape == GRAY and gray.x_test.shape == (20, 32, 32, 1)
    np.testing.assert_allclose(gray.x_train, data.to_gray(colour.x_train))
    np.testing.assert_array_equal(gray.y_test, colour.y_test)
    assert "grayscale" in gray.source


@pytest.mark.parametrize("kind", ["vit", "vit_token", "mae", "vit_cnn"])
def test_the_adapter_starts_as_three_equal_channels(kind, gray_images, mask):
    model = BUILDERS[kind](GRAY)
    adapted = keras.Model(model.input, model.get_layer("gray_to_rgb").output)
    rgb = np.asarray(adapted({"images": gray_images, "mask": mask}))
    assert rgb.shape[-1] == 3
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 1])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    if kind in ("mae", "vit_token"):  # no fill before it: the gray value itself
        np.testing.assert_allclose(rgb[..., :1], gray_images, atol=1e-6)
    out = np.asarray(model.predict_on_batch({"images": gray_images, "mask": mask}))
    assert out.shape == gray_images.shape


@pytest.mark.parametrize("kind", ["vit", "vit_token", "mae", "vit_cnn"])
def test_a_colour_model_moves_to_gray_images(kind, gray_images, mask, tmp_path):
    """The gray variant of a colour model gives rgb2gray of what the colour model gives for the
    gray image in three channels: it starts where the colour model stood."""
    colour = BUILDERS[kind](COLOUR)
    colour.set_weights([w + 0.01 for w in colour.get_weights()])  # not the initial weights
    gray = models.gray_variant(colour)
    assert gray.image_shape == GRAY
    out = np.asarray(gray.predict_on_batch({"images": gray_images, "mask": mask}))
    three = np.repeat(gray_images, 3, axis=-1)
    ref = np.asarray(colour.predict_on_batch({"images": three, "mask": mask}))
    ref = (ref * np.array(models.RGB_TO_GRAY, np.float32)).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    gray.save(tmp_path / "gray.keras")  # round trip through .keras
    loaded = models.load_predictor(tmp_path / "gray.keras")
    np.testing.assert_allclose(
        np.asarray(loaded.predict_on_batch({"images": gray_images, "mask": mask})), out, atol=1e-6
    )


def test_the_cnn_takes_one_channel_as_it_is(gray_images, mask):
    cnn = models.build_cnn_autoencoder(GRAY, patch_size=4, filters=(8, 16), seed=0)
    out = np.asarray(cnn.predict_on_batch({"images": gray_images, "mask": mask}))
    assert out.shape == gray_images.shape
    with refused("model", "cnn", problem="no gray variant"):
        models.gray_variant(cnn)
    with refused("model", "vit", problem="colour model"):
        models.gray_variant(BUILDERS["vit"](GRAY))


def test_gray_and_colour_images_are_not_mixed_up(gray_images, mask):
    gray_model, colour_model = BUILDERS["vit"](GRAY), BUILDERS["vit"](COLOUR)
    m = mask.astype(bool)
    with refused("images", COLOUR):
        models.reconstruct(gray_model, np.repeat(gray_images, 3, axis=-1), m)
    with refused("images", GRAY):
        models.reconstruct(colour_model, gray_images, m)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vit", "mae"])
def test_a_gray_transformer_trains(kind, tmp_path):
    """One epoch on TensorFlow with XLA: the gradient reaches the adapter (the harmonic fill runs
    before it, so none has to flow through the fill's loop)."""
    images = data.to_gray(np.random.default_rng(2).random((48, 32, 32, 3), dtype=np.float32))
    model = BUILDERS[kind](GRAY)
    before = model.get_layer("gray_to_rgb").get_weights()[0].copy()
    out = training.train(
        model, (images[:32], images[32:]), epochs=1, batch_size=16, ratio=(0.3, 0.7),
        run_dir=tmp_path / kind, verbose=0, lr=1e-2,
    )  # fmt: skip
    assert np.isfinite(out["history"]["loss"]).all()
    assert not np.array_equal(model.get_layer("gray_to_rgb").get_weights()[0], before)


def test_metrics_and_pictures_of_one_channel(gray_images, mask):
    m = mask.astype(bool)
    predicted = np.clip(gray_images + 0.05, 0, 1)
    values = metrics.evaluate(gray_images, predicted, m, 4)
    assert values["ssim"].shape == (4,) and (values["ssim"] < 1).all()
    fig = plots.plot_reconstructions(gray_images, m, predicted, 4, n=2)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert any(im.get_cmap().name == "gray" for im in images)


@pytest.mark.slow
def test_the_command_line_trains_and_evaluates_gray_models(tmp_path, capsys):
    common = ["--dataset", "sample", "--n-train", "64", "--epochs", "1", "--grayscale"]
    assert main(["train", "--model", "cnn", *common, "--output", str(tmp_path), "--quiet"]) == 0
    model = models.load_predictor(next(tmp_path.glob("*/best.keras")))
    assert model.image_shape == GRAY
    args = ["evaluate", "--model", str(next(tmp_path.glob("*/best.keras"))), "--dataset", "sample"]
    args += ["--strategy", "rows", "--ratio", "0.5", "--n-test", "8", "--output", str(tmp_path)]
    assert main([*args, "--grayscale"]) == 0
    assert main(args) == 2  # colour images for a gray model
    assert "(32, 32, 1)" in capsys.readouterr().err
