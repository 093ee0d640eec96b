"""The pretrained ViT (keras-hub ViTBackbone): local presets, Hugging Face folders, head-only and
full fine-tuning, the one interface, clear errors. Tiny backbones saved on disk, never the
network."""

import importlib.util
import json

import keras
import numpy as np
import pytest
from _refused import refused
from test_models import run_under_jax

from helpers import masking, models, pretrained, training


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """A tiny ViTBackbone (2 blocks, width 16, 8x8 patches of 4 pixels) as a Keras preset."""
    folder = tmp_path_factory.mktemp("presets") / "tiny"
    return pretrained.save_tiny_backbone(folder, num_layers=2, width=16, mlp_dim=32)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((40, 32, 32, 3), dtype=np.float32)


def save_hf_vit(backbone, folder):
    """``backbone`` as a Hugging Face ViT folder (config.json + model.safetensors): the inverse of
    keras-hub's ``convert_vit`` (names and layouts of transformers' ViTModel)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    emb, enc = backbone.layers[1], backbone.layers[2]
    d = backbone.hidden_dim

    def n(v):
        return np.asarray(keras.ops.convert_to_numpy(v), np.float32)

    t = {
        "vit.embeddings.patch_embeddings.projection.weight": n(
            emb.patch_embedding.kernel
        ).transpose(3, 2, 0, 1),
        "vit.embeddings.patch_embeddings.projection.bias": n(emb.patch_embedding.bias),
        "vit.embeddings.cls_token": n(emb.class_token),
        "vit.embeddings.position_embeddings": n(emb.position_embedding.embeddings)[None],
        "vit.layernorm.weight": n(enc.layer_norm.gamma),
        "vit.layernorm.bias": n(enc.layer_norm.beta),
    }
    for i, block in enumerate(enc.encoder_layers):
        p = f"vit.encoder.layer.{i}"
        for part in ("query", "key", "value"):
            dense = getattr(block.mha, f"{part}_dense")
            t[f"{p}.attention.attention.{part}.weight"] = n(dense.kernel).reshape(d, d).T
            t[f"{p}.attention.attention.{part}.bias"] = n(dense.bias).reshape(d)
        t[f"{p}.attention.output.dense.weight"] = n(block.mha.output_dense.kernel).reshape(d, d).T
        t[f"{p}.attention.output.dense.bias"] = n(block.mha.output_dense.bias)
        for ln, name in ((block.layer_norm_1, "before"), (block.layer_norm_2, "after")):
            t[f"{p}.layernorm_{name}.weight"] = n(ln.gamma)
            t[f"{p}.layernorm_{name}.bias"] = n(ln.beta)
        t[f"{p}.intermediate.dense.weight"] = n(block.mlp.dense_1.kernel).T
        t[f"{p}.intermediate.dense.bias"] = n(block.mlp.dense_1.bias)
        t[f"{p}.output.dense.weight"] = n(block.mlp.dense_2.kernel).T
        t[f"{p}.output.dense.bias"] = n(block.mlp.dense_2.bias)
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, str(folder / "model.safetensors"))
    config = {
        "model_type": "vit",
        "image_size": backbone.image_shape[0],
        "patch_size": backbone.patch_size[0],
        "num_hidden_layers": len(enc.encoder_layers),
        "num_attention_heads": backbone.num_heads,
        "hidden_size": d,
        "intermediate_size": backbone.mlp_dim,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "qkv_bias": True,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def backbone_weights(model):
    return [w.copy() for w in model.get_layer("backbone").get_weights()]


def test_local_preset_round_trip_gives_the_saved_weights(preset, images):
    saved = pretrained.load_backbone(preset)
    again = pretrained.load_backbone(str(preset))
    for a, b in zip(saved.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    model = models.build_model("pretrained_vit", preset=preset, head_dim=8)
    for a, b in zip(saved.get_weights(), backbone_weights(model)):
        np.testing.assert_array_equal(a, b)  # the preset's weights, not a fresh start


@pytest.mark.skipif(importlib.util.find_spec("safetensors") is None, reason="no safetensors")
def test_hugging_face_folder_loads_through_keras_hubs_converter(preset, images, tmp_path):
    keras_backbone = pretrained.load_backbone(preset)
    folder = save_hf_vit(keras_backbone, tmp_path / "hf_vit")
    hf_backbone = pretrained.load_backbone(folder)
    x = images[:2] * 2 - 1
    np.testing.assert_allclose(
        np.asarray(hf_backbone(x)), np.asarray(keras_backbone(x)), rtol=1e-5, atol=1e-5
    )


def test_shapes_and_interface(preset, images):
    model = models.build_model("pretrained_vit", preset=preset, head_dim=8)
    mask = masking.make_mask("rows", 0.5, n_images=4, grid=(8, 8), seed=0)
    stages = ("to_rgb", "patch_tokens", "token_grid", "head")
    shapes = dict(models.stage_shapes(model, images[:4], mask, stages))
    assert shapes == {
        "to_rgb": (4, 32, 32, 3),
        "patch_tokens": (4, 64, 16),  # the class token dropped
        "token_grid": (4, 8, 8, 16),
        "head": (4, 32, 32, 3),
    }
    out = models.reconstruct(model, images[:4], mask)
    assert out.shape == images[:4].shape and 0 <= out.min() and out.max() <= 1
    assert model.features(images[:4]).shape == (4, 16)


def test_adapter_starts_as_a_copy_of_the_colours(preset, images):
    """At the start the backbone sees the masked image itself: the mask channel has weight 0."""
    model = models.build_model("pretrained_vit", preset=preset, head_dim=8, fill="harmonic")
    kernel, bias = model.get_layer("to_rgb").get_weights()
    # the harmonic fill's colours copied; the grey-filled image and the mask channel at 0
    np.testing.assert_array_equal(kernel[0, 0], np.vstack([np.eye(3), np.zeros((4, 3))]))
    assert not bias.any()
    gray = models.build_model(
        "pretrained_vit", preset=preset, head_dim=8, image_shape=(32, 32, 1), fill="harmonic"
    )
    np.testing.assert_array_equal(
        gray.get_layer("to_rgb").get_weights()[0][0, 0], [[1] * 3, [0] * 3, [0] * 3]
    )
    x = images[:2].mean(axis=-1, keepdims=True)
    out = models.reconstruct(
        gray, x, masking.make_mask("random", 0.5, n_images=2, grid=(8, 8), seed=0)
    )
    assert out.shape == x.shape


def test_grey_is_the_default_and_the_harmonic_fill_one_setting_away(preset, images):
    default = models.build_model("pretrained_vit", preset=preset, head_dim=8)
    assert default.settings["fill"] == "grey"
    assert "harmonic_fill" not in [layer.name for layer in default.layers]
    assert default.label == "pretrained ViT"
    model = models.build_model("pretrained_vit", preset=preset, head_dim=8, fill="harmonic")
    assert model.label == "pretrained ViT refining biharmonic"
    mask = masking.make_mask("random", 0.5, n_images=4, grid=(8, 8), seed=0)
    out = models.reconstruct(model, images[:4], mask)
    probe = keras.Model(model.input, model.get_layer("fill_image").output)
    fill = np.asarray(probe({"images": images[:4], "mask": mask.astype(np.float32)}))
    np.testing.assert_allclose(out, fill, atol=1e-6)  # the head's correction starts at 0
    visible = ~np.repeat(np.repeat(mask.reshape(4, 8, 8), 4, 1), 4, 2)
    np.testing.assert_allclose(out[visible], images[:4][visible], atol=1e-6)
    grey = models.build_model("pretrained_vit", preset=preset, head_dim=8, fill="grey")
    assert "harmonic_fill" not in [layer.name for layer in grey.layers]
    assert models.reconstruct(grey, images[:4], mask).shape == images[:4].shape


def test_resize_to_a_larger_backbone(tmp_path, images):
    """A backbone for 64-pixel images (as ViT-B/16 takes 224) gets the 32-pixel images resized."""
    folder = pretrained.save_tiny_backbone(tmp_path / "b64", image_size=64, patch_size=16)
    model = models.build_model("pretrained_vit", preset=folder, head_dim=8)
    mask = masking.make_mask("random", 0.5, n_images=2, grid=(8, 8), seed=0)
    shapes = dict(models.stage_shapes(model, images[:2], mask, ("to_backbone_size", "token_grid")))
    assert shapes == {"to_backbone_size": (2, 64, 64, 3), "token_grid": (2, 4, 4, 32)}
    assert models.reconstruct(model, images[:2], mask).shape == images[:2].shape


@pytest.mark.slow
def test_head_only_training_leaves_the_backbone_and_full_fine_tuning_changes_it(
    preset, images, tmp_path
):
    # fill="grey": the harmonic fill's head starts at 0, so no gradient reaches the backbone in
    # the first steps (the warm-up's first learning rate is 0)
    head = models.build_model(
        "pretrained_vit", preset=preset, head_dim=8, fine_tune="head", fill="grey"
    )
    before, head_before = backbone_weights(head), head.get_layer("head").get_weights()[0].copy()
    training.train(head, images, epochs=1, batch_size=20, run_dir=tmp_path / "h", verbose=0)
    for a, b in zip(before, backbone_weights(head)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(head_before, head.get_layer("head").get_weights()[0])

    full = models.build_model(
        "pretrained_vit", preset=preset, head_dim=8, fine_tune="all", fill="grey"
    )
    training.train(full, images, epochs=1, batch_size=20, run_dir=tmp_path / "f", verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, backbone_weights(full)))


@pytest.mark.slow
def test_backbone_learning_rate_scale(preset, images):
    """One Adam step moves a backbone weight by about lr x scale (Adam's first step is lr per
    weight, whatever the gradient's size), the new layers by lr."""
    moves = {}
    for scale in (1.0, 0.1):
        model = models.build_model(
            "pretrained_vit", preset=preset, head_dim=8, fine_tune="all", backbone_lr_scale=scale,
            fill="grey",
        )  # fmt: skip
        training.compile_model(model, 1e-3, jit_compile=False)
        before, head = backbone_weights(model), model.get_layer("head_proj").get_weights()[0]
        mask = masking.make_mask("random", 0.5, n_images=8, grid=(8, 8), seed=0).astype(np.float32)
        model.train_on_batch({"images": images[:8], "mask": mask}, images[:8])
        moves[scale] = (
            max(np.abs(a - b).max() for a, b in zip(before, backbone_weights(model))),
            np.abs(head - model.get_layer("head_proj").get_weights()[0]).max(),
        )
    assert moves[1.0][0] == pytest.approx(1e-3, rel=0.05)
    assert moves[0.1][0] == pytest.approx(1e-4, rel=0.05)
    assert moves[0.1][1] == pytest.approx(1e-3, rel=0.05)


@pytest.mark.slow
def test_keras_round_trip_and_safe_mode(preset, images, tmp_path):
    model = models.build_model("pretrained_vit", preset=preset, head_dim=8, fine_tune="all")
    training.train(model, images, epochs=1, batch_size=20, run_dir=tmp_path, verbose=0)
    mask = masking.make_mask("columns", 0.5, n_images=4, grid=(8, 8), seed=0)
    loaded = models.load_predictor(tmp_path / "final.keras")
    assert isinstance(loaded, pretrained.PretrainedViT)
    assert loaded.settings["fine_tune"] == "all" and loaded.lr_scales()
    np.testing.assert_allclose(
        models.reconstruct(loaded, images[:4], mask),
        models.reconstruct(model, images[:4], mask),
        atol=1e-5,  # XLA on one side, not on the other
    )
    safe = keras.saving.load_model(tmp_path / "final.keras", compile=False, safe_mode=True)
    assert isinstance(safe, pretrained.PretrainedViT)


def test_bad_presets_and_settings_are_refused_before_building(preset, tmp_path):
    with refused("preset", str(tmp_path / "missing"), problem="no such folder"):
        pretrained.load_backbone(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with refused("preset", str(tmp_path / "empty"), problem="holds [], not"):
        pretrained.load_backbone(tmp_path / "empty")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with refused("preset", str(bert), problem="'bert'"):
        pretrained.load_backbone(bert)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with refused("preset", str(hf), problem="without model.safetensors"):
        pretrained.load_backbone(hf)
    for name, value in (
        ("fine_tune", "some"),
        ("backbone_lr_scale", 0),
        ("head_dim", 0),
        ("fill", "token"),
        ("patch_size", 5),
    ):
        with refused(name, value):
            models.build_model("pretrained_vit", preset=preset, **{name: value})


def test_unreachable_preset_names_every_try(monkeypatch):
    import keras_hub

    def offline(name, **kwargs):
        raise ConnectionError(f"no network for {name}")

    monkeypatch.setattr(keras_hub.models.ViTBackbone, "from_preset", offline)
    with refused("preset", pretrained.DEFAULT_PRESET) as err:
        pretrained.load_backbone(pretrained.DEFAULT_PRESET)
    text = str(err.value)  # the message lists every try and how to work offline
    assert pretrained.DEFAULT_PRESET in text and pretrained.HF_PRESET in text
    assert "ConnectionError" in text and "local folder" in text


@pytest.mark.slow
def test_cli_trains_it_from_a_local_preset(preset, tmp_path):
    from helpers.tools.cli import main

    code = main(
        ["train", "--model", "pretrained_vit", "--preset", str(preset), "--fine-tune", "all",
         "--head-dim", "8", "--epochs", "1", "--n-train", "40", "--output", str(tmp_path),
         "--run-name", "p", "--quiet"]
    )  # fmt: skip
    assert code == 0
    loaded = models.load_predictor(tmp_path / "p" / "best.keras")
    assert loaded.settings["fine_tune"] == "all" and loaded.settings["head_dim"] == 8
    assert (
        main(["train", "--model", "vit", "--preset", str(preset), "--output", str(tmp_path)]) == 2
    )


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_fine_tuning_under_jax(preset, tmp_path):
    script = f"""
import numpy as np
from helpers import masking, models, training
x = np.random.default_rng(0).random((16, 32, 32, 3), dtype=np.float32)
m = models.build_model("pretrained_vit", preset={str(preset)!r}, head_dim=8, fine_tune="all",
                       fill="grey")
before = [w.copy() for w in m.get_layer("backbone").get_weights()]
training.train(m, x, epochs=1, batch_size=8, run_dir={str(tmp_path)!r}, verbose=0)
after = m.get_layer("backbone").get_weights()
assert any(not np.array_equal(a, b) for a, b in zip(before, after))
loaded = models.load_predictor({str(tmp_path / "final.keras")!r})
mask = masking.make_mask("random", 0.5, n_images=2, grid=(8, 8), seed=0)
d = np.abs(models.reconstruct(loaded, x[:2], mask) - models.reconstruct(m, x[:2], mask)).max()
assert d < 1e-6, d
print("jax pretrained ok")
"""
    out = run_under_jax(script)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "jax pretrained ok" in out.stdout
