"""The adversarial autoencoder: its two games, its training, its checks (tiny sizes)."""

import importlib.util
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from _refused import refused
from test_models import run_under_jax
from test_training import Interrupt

from helpers import layers as mim
from helpers import masking, models, training
from helpers._checks import SettingError, SettingTypeError
from helpers._io import read_csv

SHAPE = (16, 16, 3)
TINY = dict(image_shape=SHAPE, patch_size=4, filters=(4, 8), latent_dim=4)


@pytest.fixture(scope="module")
def images():
    """Smooth images with structure (ramps of random direction and colour), so that a few epochs
    can learn something."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    out = []
    for _ in range(96):
        a, b = rng.uniform(-1, 1, 2)
        base, colour = rng.uniform(0.2, 0.5, 3), rng.uniform(0.1, 0.4, 3)
        out.append(np.clip(base + colour * (a * yy + b * xx)[..., None], 0, 1))
    return np.asarray(out, np.float32)


def snapshot(model):
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}


def changed(before, model):
    return {
        name
        for name, weights in before.items()
        if any(
            not np.array_equal(w, v) for w, v in zip(weights, model.get_layer(name).get_weights())
        )
    }


@pytest.mark.slow
def test_one_training_step_moves_both_discriminators_and_the_autoencoder(images, tmp_path):
    model = models.build_aae(**TINY, image_weight=1e-3)
    before = snapshot(model)
    training.train(model, images[:32], epochs=1, batch_size=32, run_dir=tmp_path, verbose=0)
    moved = changed(before, model)
    assert {"latent_adversary", "image_adversary"} <= moved  # the discriminators learned
    assert {"enc_conv_0", "latent", "dec_conv_0", "head"} <= moved  # and the autoencoder


def test_each_player_learns_only_from_its_own_loss():
    """One backward pass: the discriminator's weights get the gradient of its classification
    loss alone, the codes (the encoder) get ``loss_weight`` times the gradient of the
    non-saturating generator loss alone; the added loss is 0 in value."""
    layer = mim.LatentAdversary(0.25, hidden=8, seed=3)
    codes = tf.Variable(np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32))
    layer.build(codes.shape)
    with tf.GradientTape(persistent=True) as tape:
        layer(codes, training=True)
        total = tf.add_n(layer.losses)
    # the same prior sample as the layer drew: replay its seed generator from the start
    replay = mim.LatentAdversary(0.25, hidden=8, seed=3)
    replay.build(codes.shape)
    prior = keras.random.normal(codes.shape, seed=replay.seed_generator)
    with tf.GradientTape(persistent=True) as ref:
        d_loss = mim._bce_with_logits(layer.discriminate(prior, False), 1) + mim._bce_with_logits(
            layer.discriminate(tf.stop_gradient(codes), False), 0
        )
        g_loss = mim._bce_with_logits(layer.discriminate(codes, True), 1)
    assert abs(float(total)) < 1e-6  # the reported loss stays the reconstruction loss
    weights = layer.kernels + layer.biases
    for got, want in zip(tape.gradient(total, weights), ref.gradient(d_loss, weights)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        tape.gradient(total, codes), 0.25 * ref.gradient(g_loss, codes), rtol=1e-5, atol=1e-7
    )


@pytest.mark.slow
def test_the_latent_weight_reaches_the_encoder(images, tmp_path):
    runs = {}
    for weight in (0.0, 0.0, 1.0):
        model = models.build_aae(**TINY, latent_weight=weight)
        training.train(
            model, images[:32], epochs=1, batch_size=32, run_dir=tmp_path / str(len(runs)),
            verbose=0, augment=False,
        )  # fmt: skip
        runs[len(runs)] = model.get_layer("enc_conv_0").get_weights()[0]
    np.testing.assert_array_equal(runs[0], runs[1])  # deterministic
    assert not np.allclose(runs[0], runs[2])  # the adversarial term changed the encoder's step


@pytest.mark.slow
def test_reconstruction_loss_falls_over_a_few_epochs(images, tmp_path):
    model = models.build_aae(**TINY, image_weight=1e-3)
    out = training.train(
        model, (images[:80], images[80:]), epochs=6, batch_size=16, run_dir=tmp_path, verbose=0
    )
    loss, val = out["history"]["loss"], out["history"]["val_loss"]
    assert np.isfinite(loss).all() and loss[-1] < 0.7 * loss[0]
    assert val[-1] < val[0]


class WeightsAtStart(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.first = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first is None:
            self.first = (epoch, snapshot(self.model))


@pytest.mark.slow
def test_interrupted_training_resumes_where_it_stopped(images, tmp_path):
    kwargs = dict(epochs=3, batch_size=32, verbose=0, run_dir=tmp_path / "run")
    data = (images[:64], images[64:])
    interrupted = models.build_aae(**TINY, image_weight=1e-3)
    with pytest.raises(KeyboardInterrupt):
        training.train(interrupted, data, callbacks=[Interrupt(1)], **kwargs)
    assert (tmp_path / "run" / "backup").is_dir()
    assert not (tmp_path / "run" / "final.keras").exists()
    start = WeightsAtStart()
    resumed = models.build_aae(**TINY, image_weight=1e-3)  # a fresh model object, new weights
    out = training.train(resumed, data, callbacks=[start], **kwargs)
    assert [int(r["epoch"]) for r in read_csv(tmp_path / "run" / "history.csv")] == [0, 1, 2]
    assert out["epochs"] == 3 and not (tmp_path / "run" / "backup").exists()
    # epoch 2 started from the weights the interrupted run had reached, discriminators included
    epoch, weights = start.first
    assert epoch == 2
    for layer in ("latent_adversary", "image_adversary", "enc_conv_0", "head"):
        for a, b in zip(weights[layer], interrupted.get_layer(layer).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_saved_model_reconstructs_the_same_and_scores_its_games(images, tmp_path):
    model = models.build_aae(**TINY, image_weight=1e-3)
    mask = masking.make_mask("random", 0.5, images=images[:8], patch_size=4, seed=0)
    path = tmp_path / "aae.keras"
    training.save_atomic(model, path)
    loaded = models.load_predictor(path)
    assert loaded.builder == "aae" and loaded.settings["image_weight"] == 1e-3
    np.testing.assert_array_equal(
        models.reconstruct(loaded, images[:8], mask), models.reconstruct(model, images[:8], mask)
    )
    scores = models.adversary_scores(loaded, images[:8], mask)
    assert set(scores) == {"latent_real", "latent_fake", "image_real", "image_fake"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert set(models.adversary_scores(models.build_aae(**TINY), images[:8], mask)) == {
        "latent_real", "latent_fake"
    }  # fmt: skip
    with refused("model", "cnn"):
        models.adversary_scores(
            models.build_cnn_autoencoder(SHAPE, 4, filters=(4, 8)), images, mask
        )


def test_the_image_discriminator_judges_the_hidden_region_only(images):
    """Its fake images are the output composited with the visible pixels: a model output that
    differs from the image only under visible patches is judged exactly like the real image."""
    layer = mim.ImageAdversary(1.0, patch_size=4, hidden=4)
    mask = np.zeros((4, 16), np.float32)
    mask[:, :8] = 1.0
    pixels = np.asarray(mim.pixel_mask(mask, 4, SHAPE))
    x = images[:4]
    output = np.where(pixels > 0, x, 1.0 - x).astype(np.float32)  # wrong where visible only
    layer(output, x, mask, training=True)
    assert abs(float(layer.losses[0])) < 1e-6
    real = layer.discriminate(x, True)
    with tf.GradientTape() as tape:
        out = tf.Variable(output)
        layer(out, x, mask, training=True)
        total = tf.add_n(layer.losses)
    grad = tape.gradient(total, out).numpy()
    assert np.abs(grad[np.broadcast_to(pixels, grad.shape) == 0]).max() == 0.0  # visible: none
    assert np.abs(grad).max() > 0 and np.isfinite(np.asarray(real)).all()


def test_a_gray_model_takes_gray_images_only(images):
    gray = models.build_aae((16, 16, 1), 4, filters=(4, 8), latent_dim=4, image_weight=1e-3)
    x = images[:4].mean(axis=-1, keepdims=True)
    mask = masking.make_mask("rows", 0.5, images=x, patch_size=4, seed=0)
    out = models.reconstruct(gray, x, mask)
    assert out.shape == x.shape and ((0 <= out) & (out <= 1)).all()
    with refused("images", (16, 16, 3), problem="(16, 16, 1)"):
        models.reconstruct(gray, images[:4], mask)
    with refused("images", (16, 16, 1), problem="(16, 16, 3)"):
        models.reconstruct(models.build_aae(**TINY), x, mask)


@pytest.mark.parametrize(
    "kw, error",
    [
        ({"latent_weight": -0.1}, SettingError),
        ({"image_weight": float("nan")}, SettingError),
        ({"image_weight": "0.001"}, SettingTypeError),
        ({"latent_dim": 0}, SettingError),
        ({"filters": (4, 8, 8, 8, 8)}, SettingError),
        ({"dropout": 1.0}, SettingError),
    ],
)
def test_bad_settings_are_refused_before_anything_is_built(kw, error):
    ((param, value),) = kw.items()
    with refused(param, value, error):
        models.build_aae(**{**TINY, **kw})


JAX_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax"
    from helpers import models, training
    x = np.random.default_rng(0).random((32, 16, 16, 3), dtype=np.float32)
    model = models.build_aae((16, 16, 3), 4, filters=(4, 8), latent_dim=4, image_weight=1e-3)
    before = {l.name: [w.copy() for w in l.get_weights()] for l in model.layers}
    out = training.train(model, x, epochs=2, batch_size=16, run_dir="{run}", verbose=0)
    moved = {n for n, ws in before.items()
             if any(not np.array_equal(a, b) for a, b in zip(ws, model.get_layer(n).get_weights()))}
    assert {"latent_adversary", "image_adversary", "enc_conv_0", "head"} <= moved, moved
    assert np.isfinite(out["history"]["loss"]).all()
    print("jax aae ok")
    """
)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="JAX is not installed (pip install 'jax[cpu]')"
)
def test_adversarial_training_under_jax(tmp_path):
    out = run_under_jax(JAX_SCRIPT.replace("{run}", str(tmp_path / "run")), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "jax aae ok" in out.stdout


@pytest.mark.slow
def test_the_sweep_and_the_gradient_importance_take_it(tmp_path):
    from helpers import importance
    from helpers.data import load_dataset
    from helpers.tools import experiments

    data = load_dataset("sample", n_train=48, n_test=8, val_fraction=0.25, seed=0)
    tiny = {"filters": (4, 8), "latent_dim": 4, "image_weight": 1e-3}
    config = experiments.SweepConfig(
        strategies=("random", "rows"), ratios=(0.5,), predictors=("aae", "biharmonic"), epochs=1,
        batch_size=16, model_kwargs={"aae": tiny}, plan="mixed",
    )  # fmt: skip
    rows = experiments.run_sweep(data, config, experiments.Run(tmp_path / "run"), progress=False)
    assert [(r["strategy"], r["predictor"]) for r in rows] == [
        ("random", "aae"), ("random", "biharmonic"), ("rows", "aae"), ("rows", "biharmonic")
    ]  # fmt: skip
    assert all(0 < r["psnr_masked_mean"] < 100 for r in rows)
    model = models.build_aae((32, 32, 3), 4, **tiny)
    scores = importance.gradient_scores(model, data.x_test, 4)
    assert scores.shape == (8, 64) and np.isfinite(scores).all() and (scores > 0).any()
