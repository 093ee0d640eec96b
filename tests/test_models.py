"""Models: shapes, no leak of masked content, save/load, configs, reconstruct, bad inputs, JAX."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from _refused import refused

from helpers import layers as mim
from helpers import masking, metrics, models
from helpers._checks import SettingTypeError
from helpers.patches import patch_mask_to_pixels, patchify
from helpers.recipes import LEARNED, PREDICTORS, learns

SHAPE = (16, 16, 3)
P = 4
L, D = 16, 48
TINY = dict(
    image_shape=SHAPE, patch_size=P, embed_dim=16, depth=1, num_heads=2, mlp_dim=16, dropout=0.1
)
TINY_MAE = dict(TINY, decoder_dim=8, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=8)
TINY_CNN = dict(image_shape=SHAPE, patch_size=P, filters=(4, 8), dropout=0.1)
TINY_VIT_CNN = dict(TINY, latent_dim=4, decoder_filters=(8, 4))
TINY_AAE = dict(TINY_CNN, latent_dim=4, image_weight=1e-3)


def build(kind, **kw):
    return {
        "vit": lambda: models.build_vit(**{**TINY, **kw}),
        "vit_biharmonic": lambda: models.build_model("vit_biharmonic", **{**TINY, **kw}),
        "mae": lambda: models.build_mae(**{**TINY_MAE, **kw}),
        "cnn": lambda: models.build_cnn_autoencoder(**{**TINY_CNN, **kw}),
        "vit_cnn": lambda: models.build_vit_cnn(**{**TINY_VIT_CNN, **kw}),
        "aae": lambda: models.build_aae(**{**TINY_AAE, **kw}),
    }[kind]()


@pytest.fixture(scope="module")
def tiny_models():
    return {kind: build(kind) for kind in LEARNED}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, *SHAPE), dtype=np.float32)


def inputs_of(images, mask):
    """The one input of every predictor."""
    return {"images": images, "mask": mask.astype(np.float32)}


def mask_for(images, ratio=0.5, seed=0, strategy="random"):
    return masking.make_mask(strategy, ratio, images=images, patch_size=P, seed=seed)


@pytest.mark.parametrize("kind", LEARNED)
def test_images_and_mask_in_images_out(tiny_models, images, kind):
    model = tiny_models[kind]
    assert isinstance(model, models.MaskedImageModel) and model.builder == kind
    assert (model.image_shape, model.patch_size) == (SHAPE, P)
    assert [t.name for t in model.inputs] == ["images", "mask"]
    out = keras.ops.convert_to_numpy(model(inputs_of(images, mask_for(images)), training=False))
    assert out.shape == (5, *SHAPE)
    assert out.dtype == np.float32
    assert np.all((out >= 0) & (out <= 1))


@pytest.mark.parametrize("kind", LEARNED)
@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_masked_content_cannot_influence_output(tiny_models, images, kind, ratio):
    """Changing (even to NaN) the pixels of masked patches leaves the prediction unchanged."""
    model = tiny_models[kind]
    mask = mask_for(images, ratio, seed=3)
    pixels = patch_mask_to_pixels(mask, P, SHAPE)
    other = np.where(
        pixels, np.random.default_rng(9).random(images.shape, dtype=np.float32), images
    )
    a = models.reconstruct(model, images, mask)
    b = models.reconstruct(model, other, mask)
    np.testing.assert_array_equal(a, b)
    # straight into the model: NaN content of masked patches does not leak either
    nan = np.where(pixels, np.nan, images).astype(np.float32)
    out = keras.ops.convert_to_numpy(model(inputs_of(nan, mask), training=False))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, a, atol=1e-6)


@pytest.mark.parametrize("kind", ["vit", "mae"])
def test_token_transformers_ignore_masked_content_too(images, kind):
    model = build(kind, fill="token")
    token = model.get_layer("mask_token" if kind == "vit" else "decoder_mask_token")
    assert token.mode == "replace"
    mask = mask_for(images, 0.5, seed=3)
    nan = np.where(patch_mask_to_pixels(mask, P, SHAPE), np.nan, images).astype(np.float32)
    a = keras.ops.convert_to_numpy(model(inputs_of(images, mask), training=False))
    b = keras.ops.convert_to_numpy(model(inputs_of(nan, mask), training=False))
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("kind", ["vit", "mae"])
def test_untrained_harmonic_transformers_return_the_fill(images, kind):
    """The correction head starts at zero: the output is the harmonic fill, which keeps the visible
    patches, reproduces a flat image, stays within the visible values and continues a ramp."""
    model = build(kind, fill="harmonic", fill_iterations=200)
    mask = mask_for(images, 0.5, seed=1)
    out = patchify(keras.ops.convert_to_numpy(model(inputs_of(images, mask), training=False)), P)
    patches = patchify(images, P)
    np.testing.assert_allclose(out[~mask], patches[~mask], atol=1e-6)
    for i in range(len(images)):
        visible = patches[i][~mask[i]].reshape(-1, P * P, 3)
        low, high = visible.min(axis=(0, 1)), visible.max(axis=(0, 1))
        hidden = out[i][mask[i]].reshape(-1, P * P, 3)
        assert np.all(hidden >= low - 1e-5) and np.all(hidden <= high + 1e-5)
    flat = np.full((2, *SHAPE), 0.3, dtype=np.float32)
    out = keras.ops.convert_to_numpy(model(inputs_of(flat, mask[:2]), training=False))
    np.testing.assert_allclose(out, 0.3, atol=1e-6)
    ramp = np.broadcast_to(
        np.linspace(0.1, 0.9, SHAPE[1], dtype=np.float32)[None, None, :, None], (1, *SHAPE)
    ).copy()
    columns = np.zeros((1, L), dtype=bool)
    columns[0, [1, 2, 5, 6, 9, 10, 13, 14]] = True  # the two inner columns of patches
    out = keras.ops.convert_to_numpy(model(inputs_of(ramp, columns), training=False))
    np.testing.assert_allclose(out, ramp, atol=2e-3)


def test_visible_content_does_influence_output(tiny_models, images):
    mask = mask_for(images)
    pixels = patch_mask_to_pixels(mask, P, SHAPE)
    other = np.where(pixels, images, 1.0 - images).astype(np.float32)
    for kind in LEARNED:
        a = models.reconstruct(tiny_models[kind], images, mask)
        b = models.reconstruct(tiny_models[kind], other, mask)
        assert not np.allclose(a, b), kind


def test_mae_encoder_keeps_fixed_token_count(tiny_models):
    sel = tiny_models["mae"].get_layer("select_tokens")
    assert sel.n_keep == L - masking.n_masked(0.5, L)
    assert tiny_models["mae"].min_masked == masking.n_masked(0.5, L)
    assert tiny_models["vit"].min_masked == tiny_models["cnn"].min_masked == 0
    mask = np.zeros((2, L), dtype="float32")
    mask[0, [1, 3, 5, 7, 9, 11, 13, 15]] = 1  # 8 visible of 16
    mask[1, :12] = 1  # 4 visible: 4 masked fillers among the 8 kept
    ids, visible = (keras.ops.convert_to_numpy(t) for t in sel(mask))
    np.testing.assert_array_equal(ids[0], [0, 2, 4, 6, 8, 10, 12, 14])
    np.testing.assert_array_equal(ids[1], [12, 13, 14, 15, 0, 1, 2, 3])
    np.testing.assert_array_equal(visible[1], [1, 1, 1, 1, 0, 0, 0, 0])


def test_gather_scatter_tokens_roundtrip():
    rng = np.random.default_rng(0)
    tokens = rng.random((2, 6, 3)).astype("float32")
    ids = np.array([[4, 0, 2], [1, 5, 3]], dtype="int32")
    kept = keras.ops.convert_to_numpy(mim.GatherTokens()(tokens, ids))
    np.testing.assert_allclose(kept, np.take_along_axis(tokens, ids[..., None], axis=1))
    back = keras.ops.convert_to_numpy(mim.ScatterTokens(6)(kept, ids))
    expect = np.zeros_like(tokens)
    np.put_along_axis(expect, ids[..., None], kept, axis=1)
    np.testing.assert_allclose(back, expect)


@pytest.mark.parametrize("kind", LEARNED)
def test_save_load_roundtrip(tiny_models, images, kind, tmp_path):
    model = tiny_models[kind]
    mask = mask_for(images, 0.6, seed=1)
    before = models.reconstruct(model, images, mask)
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    loaded = models.load_predictor(path)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    assert (loaded.image_shape, loaded.patch_size, loaded.min_masked) == (
        model.image_shape,
        P,
        model.min_masked,
    )
    np.testing.assert_array_equal(models.reconstruct(loaded, images, mask), before)


def test_a_model_of_the_old_interface_is_refused_clearly(tmp_path):
    """Before the one interface, the Transformers took patches: such a file must not be misread."""
    patches, mask = keras.Input((L, D), name="patches"), keras.Input((L,), name="mask")
    out = keras.layers.Dense(D)(mim.PatchEmbedding(8)(patches, mask))
    keras.Model({"patches": patches, "mask": mask}, out, name="vit").save(tmp_path / "old.keras")
    with refused("path_or_name", str(tmp_path / "old.keras"), problem="older version"):
        models.load_predictor(tmp_path / "old.keras")


@pytest.mark.parametrize(
    "layer",
    [
        mim.Patchify(4),
        mim.Unpatchify(4, (16, 16, 3)),
        mim.MaskedImage(4, 0.5),
        mim.PatchEmbedding(8),
        mim.MaskToken(),
        mim.MaskToken("add"),
        mim.HarmonicFill((16, 16, 3), 4, 8),
        mim.PositionEmbedding(),
        mim.PositionEmbedding("sincos", (4, 4)),
        mim.TransformerBlock(2, 16, 0.2),
        mim.TokenSelector(5),
        mim.GatherTokens(),
        mim.ScatterTokens(16),
    ],
    ids=lambda layer: f"{type(layer).__name__}-{getattr(layer, 'mode', '')}",
)
def test_layer_config_roundtrip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def test_sincos_position_embedding_is_local_and_starts_the_layer():
    table = mim.sincos_position_embedding((4, 6), 16)
    assert table.shape == (24, 16) and table.dtype == np.float32
    assert np.abs(table).max() <= 1.0
    # rows and columns are encoded separately: same row -> same first half, same column -> same
    # second half
    np.testing.assert_allclose(table[0, :8], table[5, :8])
    np.testing.assert_allclose(table[0, 8:], table[6, 8:])
    # nearer patches are more alike (dot product) than farther ones along a row and down a column
    sim = table @ table.T
    assert sim[0, 0] > sim[0, 1] > sim[0, 3] and sim[0, 6] > sim[0, 18]
    layer = mim.PositionEmbedding("sincos", (4, 6))
    out = keras.ops.convert_to_numpy(layer(np.zeros((2, 24, 16), "float32")))
    np.testing.assert_allclose(out[1], table, atol=1e-6)
    assert layer.trainable_weights, "the sine-cosine start stays learnable"
    with refused("grid", (4, 6), problem="the tokens 20"):
        mim.PositionEmbedding("sincos", (4, 6))(np.zeros((1, 20, 16), "float32"))


@pytest.mark.parametrize("kind", ["vit", "mae"])
def test_sincos_models_save_and_load(images, kind, tmp_path):
    model = build(kind, pos_init="sincos")
    mask = mask_for(images, 0.6, seed=2)
    before = models.reconstruct(model, images, mask)
    model.save(tmp_path / "m.keras")
    np.testing.assert_array_equal(
        models.reconstruct(models.load_predictor(tmp_path / "m.keras"), images, mask), before
    )


def test_model_config_roundtrip(tiny_models):
    for kind, model in tiny_models.items():
        clone = type(model).from_config(model.get_config())
        assert clone.name == kind and clone.count_params() == model.count_params()


@pytest.mark.parametrize("name", PREDICTORS)
def test_reconstruct_gives_full_images(tiny_models, images, name):
    predictor = models.load_predictor(name) if not learns(name) else tiny_models[name]
    mask = mask_for(images, 0.5, strategy="rows")
    out = models.reconstruct(predictor, images, mask, batch_size=2)
    assert out.shape == images.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    scores = metrics.evaluate(images, out, mask, P)
    assert scores["psnr_masked"].shape == (5,)


def test_biharmonic_reproduces_smooth_images():
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    smooth = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 + 0.3 * np.sin(2 * xx + yy)], axis=-1)
    images = np.stack([smooth, smooth[::-1]]).astype(np.float32)
    mask = masking.make_mask("random", 0.5, images=images, patch_size=4, seed=0)
    out = models.reconstruct(models.load_predictor("biharmonic"), images, mask)
    assert metrics.evaluate(images, out, mask, 4)["psnr_masked"].min() > 40
    np.testing.assert_array_equal(
        out[~patch_mask_to_pixels(mask, 4, (32, 32))[..., 0]],
        images[~patch_mask_to_pixels(mask, 4, (32, 32))[..., 0]],
    )


def test_mean_colour_fills_hidden_pixels_with_the_visible_mean(images):
    mask = masking.make_mask("random", 0.5, images=images, patch_size=P, seed=3)
    predictor = models.load_predictor("mean_colour")
    assert predictor.name == "mean_colour"
    out = metrics.composite(images, models.reconstruct(predictor, images, mask), mask, P)
    hidden = patch_mask_to_pixels(mask, P, SHAPE[:2])[..., 0]
    for img, got, h in zip(images, out, hidden):
        np.testing.assert_allclose(
            got[h], np.broadcast_to(img[~h].mean(axis=0), got[h].shape), rtol=1e-6
        )
        np.testing.assert_array_equal(got[~h], img[~h])


def test_mean_colour_is_a_flat_colour_per_image_and_channel():
    images = np.zeros((2, *SHAPE), np.float32)
    images[0, ..., 0], images[1, ..., 2] = 0.25, 0.75
    images[0, :4, :4] = (
        1.0  # the top-left patch, hidden below: its colour must not leak into the guess
    )
    mask = np.zeros((2, L), bool)
    mask[:, 0] = True
    out = models.MeanColourInpainter().fill(images, mask, P)
    np.testing.assert_allclose(out[0, :4, :4], np.broadcast_to([0.25, 0, 0], (4, 4, 3)))
    np.testing.assert_allclose(out[1, :4, :4], np.broadcast_to([0, 0, 0.75], (4, 4, 3)))
    everything = models.MeanColourInpainter().fill(
        images, np.ones((2, L), bool), P
    )  # nothing visible
    np.testing.assert_allclose(
        everything[0], np.broadcast_to(images[0].mean(axis=(0, 1)), SHAPE), rtol=1e-6
    )


def test_mae_rejects_masks_hiding_too_few(tiny_models, images):
    with refused("mask", "4 hidden", problem="at least 8"):
        models.reconstruct(tiny_models["mae"], images, mask_for(images, 0.25))
    models.reconstruct(build("mae", min_mask_ratio=0.25), images, mask_for(images, 0.25))


@pytest.mark.parametrize("kind", ["vit", "mae", "cnn", "vit_cnn", "aae"])
def test_mixed_precision_keeps_float32_output(images, kind):
    before = keras.mixed_precision.global_policy().name
    model = build(kind, mixed_precision="mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == before
    assert {layer.dtype_policy.name for layer in model.layers} >= {"mixed_bfloat16", "float32"}
    out = model(inputs_of(images, mask_for(images)), training=False)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert np.isfinite(keras.ops.convert_to_numpy(out)).all()


def test_float16_is_refused_on_a_cpu():
    with refused("precision", "mixed_float16", problem="needs a GPU"):
        models.build_vit(**TINY, mixed_precision="mixed_float16")
    with refused("precision", "half"):
        models.build_vit(**TINY, mixed_precision="half")


@pytest.mark.parametrize(
    "call, param, value",
    [
        (lambda: models.build_vit(**{**TINY, "embed_dim": 30, "num_heads": 4}), "num_heads", 4),
        (
            lambda: models.build_mae(**{**TINY_MAE, "decoder_dim": 10, "decoder_num_heads": 4}),
            "decoder_num_heads",
            4,
        ),
        (lambda: models.build_vit(**{**TINY, "pos_init": "sine"}), "pos_init", "sine"),
        (
            lambda: models.build_vit(**{**TINY, "pos_init": "sincos", "embed_dim": 18}),
            "embed_dim",
            18,
        ),
        (
            lambda: models.build_mae(**{**TINY_MAE, "pos_init": "sincos", "decoder_dim": 6}),
            "decoder_dim",
            6,
        ),
        (lambda: models.build_vit(**{**TINY, "patch_size": 5}), "patch_size", 5),
        (lambda: models.build_vit(**{**TINY, "fill": "zeros"}), "fill", "zeros"),
        (lambda: models.build_mae(**{**TINY_MAE, "fill": "zeros"}), "fill", "zeros"),
        (lambda: models.build_vit(**{**TINY, "fill_iterations": -1}), "fill_iterations", -1),
        (lambda: models.build_vit(**{**TINY, "dropout": 1.5}), "dropout", 1.5),
        (lambda: models.build_vit(**{**TINY, "depth": 0}), "depth", 0),
        (lambda: models.build_vit(**{**TINY, "image_shape": (16, 16)}), "image_shape", (16, 16)),
        (lambda: models.build_mae(**{**TINY_MAE, "min_mask_ratio": 1.0}), "min_mask_ratio", 1.0),
        (
            lambda: models.build_cnn_autoencoder(image_shape=SHAPE, filters=(4, 4, 4, 4, 4)),
            "filters",
            [4, 4, 4, 4, 4],
        ),
        (lambda: models.build_model("resnet"), "model name", "resnet"),
        (lambda: models.load_predictor("nearest"), "path_or_name", "nearest"),
    ],
)
def test_bad_inputs_raise(call, param, value):
    with refused(param, value):
        call()


def test_a_missing_model_file_is_not_found():
    with pytest.raises(FileNotFoundError) as info:
        models.load_predictor("/nonexistent/model.keras")
    assert "/nonexistent/model.keras" in str(info.value)


def test_reconstruct_checks_inputs(tiny_models, images):
    mask = mask_for(images)
    with refused("patch_size", 2):
        models.reconstruct(
            tiny_models["vit"],
            images,
            masking.make_mask("random", 0.5, images=images, patch_size=2),
        )
    with refused("mask", "7 patches per image"):
        models.reconstruct(models.load_predictor("biharmonic"), images, np.zeros((5, 7), bool))
    with refused("images", (8, 8, 3)):
        models.reconstruct(tiny_models["cnn"], images[:, :8, :8], np.zeros((5, 4), bool))
    with refused("mask", str(mask.astype(int).dtype), SettingTypeError):
        models.reconstruct(tiny_models["vit"], images, mask.astype(int))
    with refused("images", (float((images * 2).min()), float((images * 2).max()))):
        models.reconstruct(tiny_models["vit"], images * 2, mask)
    with refused("predictor", "object", SettingTypeError):
        models.reconstruct(object(), images, mask)


def test_build_model_dispatch():
    assert models.build_model("cnn", **TINY_CNN).name == "cnn"
    assert models.build_model("vit", **TINY).name == "vit"
    assert models.build_model("vit_cnn", **TINY_VIT_CNN).name == "vit_cnn"


JAX_SCRIPT = textwrap.dedent(
    """
    import numpy as np, keras
    assert keras.backend.backend() == "jax"
    from helpers import importance, masking, models
    from helpers.patches import patch_mask_to_pixels
    tiny = dict(image_shape=(16, 16, 3), patch_size=4, embed_dim=16, depth=1, num_heads=2,
                mlp_dim=16)
    x = np.random.default_rng(0).random((3, 16, 16, 3), dtype=np.float32)
    m = masking.make_mask("random", 0.75, images=x, patch_size=4, seed=0)
    other = np.where(patch_mask_to_pixels(m, 4, (16, 16)), 0.0, x).astype(np.float32)
    mae = models.build_mae(decoder_dim=8, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=8,
                           **tiny)
    cnn = models.build_cnn_autoencoder((16, 16, 3), 4, filters=(4, 8))
    vit_cnn = models.build_vit_cnn(latent_dim=4, decoder_filters=(8, 4), **tiny)
    aae = models.build_aae((16, 16, 3), 4, filters=(4, 8), latent_dim=4, image_weight=1e-3)
    learned = (models.build_vit(**tiny), mae, cnn, vit_cnn, aae)
    for model in (*learned, models.load_predictor("biharmonic")):
        out = models.reconstruct(model, x, m)
        assert out.shape == x.shape and np.isfinite(out).all()
        assert np.array_equal(out, models.reconstruct(model, other, m)), model.name
        if hasattr(model, "save"):  # a learned one loads back under JAX and reconstructs the same
            path = f"{TMP}/{model.name}.keras"
            model.save(path)
            assert np.array_equal(models.reconstruct(models.load_predictor(path), x, m), out)
    s = importance.gradient_scores(mae, x, 4, mask=m)  # jax.grad through the MAE
    assert s.shape == (3, 16) and (s[~m] > 0).all() and (s[m] == 0).all()
    print("jax models ok")
    """
)


def run_under_jax(script: str, timeout: int = 300):
    """Run ``script`` in a fresh interpreter on the JAX backend (CPU); cheap XLA compiles: most of
    the time goes into compiling tiny graphs, not running them."""
    fast_compile = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", XLA_FLAGS=fast_compile)
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="JAX is not installed (pip install 'jax[cpu]')"
)
def test_every_predictor_under_jax(tmp_path):
    out = run_under_jax(f"TMP = {str(tmp_path)!r}\n" + JAX_SCRIPT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "jax models ok" in out.stdout


def test_cnn_skip_connections_carry_the_visible_pixels_past_the_bottleneck():
    import numpy as np

    # one skip per stage, the decoder output of each size joined by that stage's input
    model = models.build_cnn_autoencoder(image_shape=SHAPE, filters=(4, 8), skips=True, seed=0)
    assert [layer.name for layer in model.layers if layer.name.startswith("skip_")] == [
        "skip_0",
        "skip_1",
    ]
    # the last skip joins the full-resolution input (image + mask channel) to the decoder output
    assert model.get_layer("skip_1").output.shape[-1] == 4 + SHAPE[-1] + 1
    plain = models.build_cnn_autoencoder(image_shape=SHAPE, filters=(4, 8), skips=False, seed=0)
    assert plain.count_params() < model.count_params()
    x = np.random.default_rng(0).random((2, *SHAPE)).astype("float32")
    assert model.predict_on_batch(inputs_of(x, np.zeros((2, L), bool))).shape == (2, *SHAPE)


def test_stage_shapes_follow_the_model_from_patches_to_pixels(tiny_models, images):
    mask = mask_for(images)
    stages = ["patchify", "patch_embed", "block_0", "head", "unpatchify"]
    assert models.stage_shapes(tiny_models["vit"], images, mask, stages) == [
        ("patchify", (5, L, D)),
        ("patch_embed", (5, L, 16)),
        ("block_0", (5, L, 16)),
        ("head", (5, L, D)),
        ("unpatchify", (5, *SHAPE)),
    ]
    cnn = models.stage_shapes(tiny_models["cnn"], images, mask, ["masked_image", "head"])
    assert cnn == [("masked_image", (5, 16, 16, 4)), ("head", (5, *SHAPE))]


def test_vit_cnn_decodes_the_latent_grid_with_transposed_convolutions(tiny_models, images):
    model = tiny_models["vit_cnn"]
    shapes = dict(
        models.stage_shapes(
            model, images, mask_for(images), ["norm", "latent_grid", "up_0", "up_1", "to_unit"]
        )
    )
    assert shapes["norm"] == (5, L, 16)  # the encoder's tokens
    assert shapes["latent_grid"] == (5, 4, 4, 4)  # latent_dim 4 on the 4x4 patch grid
    assert shapes["up_0"] == (5, 8, 8, 8) and shapes["up_1"] == (5, 16, 16, 4)
    assert shapes["to_unit"] == (5, *SHAPE)
    # default decoder widths: one per doubling from the patch grid to the image
    assert models.build_vit_cnn(**{**TINY_VIT_CNN, "decoder_filters": None}).settings[
        "decoder_filters"
    ] == (64, 32)
    big = models.build_vit_cnn(**{**TINY_VIT_CNN, "patch_size": 8, "decoder_filters": None})
    assert big.settings["decoder_filters"] == (64, 32, 16) and big.output_shape[1:] == SHAPE


@pytest.mark.parametrize(
    "kw, param, value",
    [
        (
            {"patch_size": 1, "image_shape": (12, 12, 3), "decoder_filters": (4,)},
            "decoder_filters",
            (4,),
        ),
        ({"image_shape": (12, 12, 3), "patch_size": 3}, "patch_size", 3),
        ({"decoder_filters": (8,)}, "decoder_filters", (8,)),
        ({"decoder_filters": (8, 0)}, "decoder_filters entries", 0),
        ({"latent_dim": 0}, "latent_dim", 0),
        ({"embed_dim": 15}, "num_heads", 2),
    ],
)
def test_vit_cnn_bad_settings(kw, param, value):
    with refused(param, value):
        models.build_vit_cnn(**{**TINY_VIT_CNN, **kw})


@pytest.mark.parametrize("kind", ["vit", "mae", "cnn", "vit_biharmonic"])
def test_the_untrained_twin_has_the_initial_weights_and_the_class(kind):
    sizes = {"cnn": dict(filters=(4, 8))}.get(
        kind, dict(embed_dim=16, depth=1, num_heads=2, mlp_dim=32)
    )
    if kind == "mae":
        sizes.update(decoder_dim=16, decoder_num_heads=2, decoder_mlp_dim=16)
    model = models.build_model(kind, seed=4, **sizes)
    start = [w.copy() for w in model.get_weights()]
    for w in model.trainable_variables:
        w.assign(w + 1.0)
    twin = models.untrained_twin(model, seed=4)
    assert type(twin) is type(model) and twin.get_config() == model.get_config()
    assert all(np.array_equal(a, b) for a, b in zip(start, twin.get_weights(), strict=True))
    other = models.untrained_twin(model, seed=5)
    assert not all(np.array_equal(a, b) for a, b in zip(start, other.get_weights(), strict=True))


@pytest.mark.parametrize(
    "name, cls",
    [
        ("vit", models.MaskTokenViT),
        ("mae", models.MaeViT),
        ("cnn", models.CnnAutoencoder),
        ("vit_cnn", models.VitCnnAutoencoder),
        ("aae", models.AdversarialAutoencoder),
    ],
)
def test_a_model_class_defaults_to_the_tuned_recipe(name, cls):
    import inspect

    from helpers.recipes import model_settings

    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    assert {k: defaults[k] for k in model_settings("tuned", name)} == model_settings("tuned", name)
