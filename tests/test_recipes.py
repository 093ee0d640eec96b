"""helpers.recipes: the tuned and reference settings, and the notebooks' overrides."""

from _refused import refused

from helpers import models, recipes


def test_recipes_differ_where_the_benchmark_says():
    # every recipe enters a hidden patch as the mask token alone: what a model scores is learned
    for recipe in recipes.RECIPES:
        for name in ("vit", "mae", "vit_cnn"):
            assert recipes.model_settings(recipe, name)["fill"] == "token"
    assert recipes.model_settings("tuned", "vit") == {
        "dropout": 0.0,
        "pos_init": "sincos",
        "fill": "token",
    }
    assert recipes.model_settings("reference", "mae") == {
        "dropout": 0.1,
        "pos_init": "random",
        "fill": "token",
    }
    assert recipes.model_settings("tuned", "cnn") == {"dropout": 0.0, "skips": True}
    assert recipes.model_settings("reference", "cnn") == {"dropout": 0.1, "skips": False}
    assert recipes.train_settings("tuned", "vit") == {
        "lr": 2e-3,
        "lr_schedule": "cosine",
        "augment": True,
        "loss_on": "masked",
        "loss": "psnr",
    }
    assert (
        recipes.train_settings("tuned", "mae")["loss_on"] == "all"
    )  # the MAE's decoder learns positions sooner
    assert "loss" not in recipes.train_settings("tuned", "mae")  # the MSE
    assert recipes.train_settings("tuned", "cnn")["lr"] == 3e-3
    assert recipes.train_settings("reference", "vit") == {
        "lr": 1e-3,
        "lr_schedule": "plateau",
        "augment": False,
        "loss_on": "masked",
    }
    with refused("recipe", "fast", problem="'tuned'"):  # the allowed recipes are listed
        recipes.model_settings("fast", "vit")


def test_the_vit_refining_biharmonic_is_its_own_predictor_and_never_a_default():
    for recipe in recipes.RECIPES:
        assert recipes.model_settings(recipe, "vit_biharmonic")["fill"] == "harmonic"
        assert recipes.train_settings(recipe, "vit_biharmonic") == recipes.train_settings(
            recipe, "vit"
        )
    assert recipes.label("vit") == "mask-token ViT"
    assert recipes.label("vit_biharmonic") == "ViT refining biharmonic"
    assert recipes.label("vit", fill="harmonic") == "mask-token ViT refining biharmonic"
    assert recipes.label("mae", fill="harmonic").endswith("refining biharmonic")
    sizes = dict(embed_dim=16, depth=1, num_heads=2, mlp_dim=32)
    plain, refining = (
        models.build_model("vit", **sizes),
        models.build_model("vit_biharmonic", **sizes),
    )
    assert (plain.builder, plain.label) == ("vit", "mask-token ViT")
    assert (refining.builder, refining.label) == ("vit_biharmonic", "ViT refining biharmonic")
    assert "harmonic_fill" in [layer.name for layer in refining.layers]
    assert "harmonic_fill" not in [layer.name for layer in plain.layers]
    # a vit given the fill is called what it is
    assert models.build_model("vit", fill="harmonic", **sizes).builder == "vit_biharmonic"


def test_long_is_tuned_with_the_psnr_loss_for_the_cnn_too():
    for name in recipes.LEARNED:
        assert recipes.model_settings("long", name) == recipes.model_settings("tuned", name)
    assert recipes.train_settings("long", "cnn") == {
        **recipes.train_settings("tuned", "cnn"),
        "loss": "psnr",
    }
    assert "loss" not in recipes.train_settings("tuned", "cnn")  # tuned trains the CNN on the MSE
    for name in ("vit", "mae", "vit_cnn", "aae", "pretrained_vit", "vit_biharmonic"):
        assert recipes.train_settings("long", name) == recipes.train_settings("tuned", name)
    model, train = recipes.resolve("long", "vit", fill="harmonic", lr=1e-3)
    assert model["fill"] == "harmonic" and train["lr"] == 1e-3 and train["loss"] == "psnr"
    vit = models.build_model("vit", recipe="long", embed_dim=16, depth=1, num_heads=2, mlp_dim=32)
    assert "harmonic_fill" not in [layer.name for layer in vit.layers]


def test_builders_default_to_tuned_and_build_model_takes_a_recipe():
    sizes = dict(embed_dim=16, depth=1, num_heads=2, mlp_dim=32)
    tuned = models.build_vit(**sizes)
    assert (
        tuned.get_layer("pos_embed").init == "sincos" and tuned.get_layer("block_0").dropout == 0.0
    )
    ref = models.build_model("vit", recipe="reference", **sizes)
    assert ref.get_layer("pos_embed").init == "random" and ref.get_layer("block_0").dropout == 0.1
    cnn = models.build_cnn_autoencoder(filters=(4, 8))
    assert (
        "skip_0" in [layer.name for layer in cnn.layers] and cnn.get_layer("enc_drop_0").rate == 0.0
    )
    plain = models.build_model("cnn", recipe="reference", filters=(4, 8))
    assert (
        not any(layer.name.startswith("skip_") for layer in plain.layers)
        and plain.get_layer("enc_drop_0").rate == 0.1
    )
    for model in (tuned, ref):  # a hidden patch is the mask token alone in both
        assert model.get_layer("mask_token").mode == "replace"
        assert "harmonic_fill" not in [layer.name for layer in model.layers]
    mae_sizes = dict(sizes, decoder_dim=8, decoder_num_heads=2, decoder_mlp_dim=16)
    for mae in (models.build_mae(**mae_sizes), models.build_model("mae", "reference", **mae_sizes)):
        assert "harmonic_fill" not in [layer.name for layer in mae.layers]
    assert "harmonic_fill" in [
        layer.name for layer in models.build_mae(**mae_sizes, fill="harmonic").layers
    ]
    mixed = models.build_model(
        "vit", recipe="reference", pos_init="sincos", **sizes
    )  # an argument wins
    assert (
        mixed.get_layer("pos_embed").init == "sincos" and mixed.get_layer("block_0").dropout == 0.1
    )


def test_resolve_keeps_the_recipe_where_an_override_is_unset():
    assert recipes.resolve("tuned", "vit") == (
        recipes.model_settings("tuned", "vit"),
        recipes.train_settings("tuned", "vit"),
    )
    model, train = recipes.resolve(
        "reference",
        "vit",
        pos_init="sincos",
        dropout=0.0,
        lr=3e-3,
        lr_schedule="cosine",
        augment=True,
        loss_on="all",
    )
    assert model == {"dropout": 0.0, "pos_init": "sincos", "fill": "token"}
    assert train == {"lr": 3e-3, "lr_schedule": "cosine", "augment": True, "loss_on": "all"}
    assert recipes.resolve("tuned", "mae")[1]["loss_on"] == "all"
    assert recipes.resolve("tuned", "mae", loss_on="masked")[1]["loss_on"] == "masked"
    model, train = recipes.resolve("tuned", "cnn", pos_init="random", augment=False)
    assert (
        model == {"dropout": 0.0, "skips": True} and train["augment"] is False
    )  # no position embeddings in a CNN
    with refused("augment", "maybe"):
        recipes.resolve("tuned", "vit", augment="maybe")
    with refused("lr_schedule", "step"):
        recipes.resolve("tuned", "vit", lr_schedule="step")
    with refused("loss_on", "hidden"):
        recipes.resolve("tuned", "vit", loss_on="hidden")
    # None is "not given": the old stand-ins "", -1 and 0 are refused, not read as unset
    with refused("pos_init", ""):
        recipes.resolve("tuned", "vit", pos_init="")
    with refused("dropout", -1.0):
        recipes.resolve("tuned", "vit", dropout=-1.0)
    with refused("lr", 0.0):
        recipes.resolve("tuned", "vit", lr=0.0)


def test_resolve_takes_a_fill_for_the_transformers_only():
    assert recipes.resolve("reference", "vit", fill="harmonic")[0]["fill"] == "harmonic"
    assert recipes.resolve("tuned", "vit", fill="token")[0]["fill"] == "token"
    assert recipes.resolve("tuned", "mae", fill="token")[0]["fill"] == "token"
    assert recipes.resolve("reference", "mae", fill="harmonic")[0]["fill"] == "harmonic"
    assert "fill" not in recipes.resolve("tuned", "cnn", fill="token")[0]
    with refused("fill", "zeros"):
        recipes.resolve("tuned", "cnn", fill="zeros")
