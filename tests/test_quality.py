"""helpers.tools.quality: the quality benchmark end to end on a tiny CIFAR-format folder and tiny
models."""

import csv
import json

import pytest
from _refused import refused
from test_evaluation import write_cifar_folder

from helpers.tools import quality

TINY = {
    "vit": {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32},
    "mae": {
        "embed_dim": 16,
        "depth": 1,
        "num_heads": 2,
        "mlp_dim": 32,
        "decoder_dim": 16,
        "decoder_depth": 1,
        "decoder_num_heads": 2,
        "decoder_mlp_dim": 16,
    },
    "cnn": {"filters": (8, 16)},
    "aae": {"filters": (8, 16), "latent_dim": 4},
    "vit_cnn": {
        "embed_dim": 16,
        "depth": 1,
        "num_heads": 2,
        "mlp_dim": 32,
        "latent_dim": 4,
        "decoder_filters": (8, 8),
    },
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "plan, predictors, n_models",
    [("mixed", ("biharmonic", "vit", "cnn"), 2), ("per_strategy", ("vit",), 2)],
)
def test_bench_quality_trains_scores_and_writes_the_table(tmp_path, plan, predictors, n_models):
    data = write_cifar_folder(tmp_path / "cifar", n=20, train_batches=2)
    out = tmp_path / "out"
    rows = quality.bench_quality(
        data,
        minutes_per_model=0.05,
        strategies=("random", "rows"),
        predictors=predictors,
        output=out,
        batch_size=16,
        plan=plan,
        model_kwargs=TINY,
        progress=False,
    )
    # trained on 30-70 % by default, scored at 30, 50 and 70 %
    assert [(r["predictor"], r["strategy"], r["ratio"]) for r in rows] == [
        (p, s, r) for p in predictors for s in ("random", "rows") for r in (0.3, 0.5, 0.7)
    ]
    for r in rows:
        assert r["n_test"] == 20 and r["plan"] == plan and 0 < r["psnr_masked_mean"] < 100
        assert (r["epochs"] == 0) == (r["predictor"] == "biharmonic")
        assert r["train_ratio"] == "0.3-0.7"
        learned = r["predictor"] != "biharmonic"  # its untrained twin scored on the same masks
        assert ("training_added" in r) == learned
        if learned:
            added = r["psnr_masked_mean"] - r["psnr_masked_untrained"]
            assert r["training_added"] == pytest.approx(added, abs=2e-4)
    assert len(list(csv.DictReader(open(out / "quality.csv")))) == 6 * len(predictors)
    assert json.loads((out / "quality.json").read_text()) == rows
    assert len([p for p in (out / "models").iterdir() if (p / "final.keras").exists()]) == n_models
    table = quality.format_quality(rows)
    assert table.count("\n") == 1 + 6 * len(predictors) and "| vit | rows | 70% |" in table


@pytest.mark.slow
def test_recipes_set_the_model_settings_and_model_kwargs_override_them(tmp_path):
    assert quality.recipe_settings("reference", "vit") == (
        {"dropout": 0.1, "pos_init": "random", "fill": "token"},
        1e-3,
    )
    assert quality.recipe_settings("tuned", "mae") == (
        {"dropout": 0.0, "pos_init": "sincos", "fill": "token"},
        2e-3,
    )
    assert quality.recipe_settings("tuned", "vit_biharmonic")[0]["fill"] == "harmonic"
    assert quality.recipe_settings("tuned", "cnn") == ({"dropout": 0.0, "skips": True}, 3e-3)
    assert quality.recipe_settings("reference", "cnn") == ({"dropout": 0.1, "skips": False}, 1e-3)
    assert quality.recipe_settings("tuned", "vit", {"vit": {"dropout": 0.2, "depth": 1}}) == (
        {"dropout": 0.2, "pos_init": "sincos", "fill": "token", "depth": 1},
        2e-3,
    )
    assert quality.recipe_settings("long", "vit")[0]["fill"] == "token"
    assert [quality.recipe_loss("long", p) for p in ("vit", "cnn", "mae")] == [
        "psnr",
        "psnr",
        "mse",
    ]
    assert quality.recipe_loss("tuned", "vit") == "psnr"
    assert quality.recipe_loss("tuned", "cnn") == "mse"
    assert quality.recipe_loss("long", "vit", "mse") == "mse"  # a given loss wins
    data = write_cifar_folder(tmp_path / "cifar", n=12, train_batches=1)
    rows = quality.bench_quality(
        data,
        minutes_per_model=0.02,
        strategies=("columns",),
        predictors=("vit",),
        output=tmp_path / "out",
        batch_size=8,
        model_kwargs=TINY,
        progress=False,
    )
    # the default recipe is long: tuned's start, the mask token alone and the PSNR loss
    assert (
        rows[0]["recipe"] == "long"
        and "pos_init=sincos" in rows[0]["settings"]
        and "lr=0.002" in rows[0]["settings"]
        and "fill=token" in rows[0]["settings"]
        and rows[0]["settings"].endswith(", loss=psnr")
    )
    from helpers.models import load_predictor

    model = load_predictor(tmp_path / "out" / "models" / "vit" / "final.keras")
    assert (
        model.get_layer("pos_embed").init == "sincos" and model.get_layer("block_0").dropout == 0.0
    )
    assert model.get_layer("mask_token").mode == "replace"  # the mask token alone, no fill
    history = (tmp_path / "out" / "models" / "vit" / "history.csv").read_text().splitlines()
    assert float(history[-1].split(",")[history[0].split(",").index("loss")]) < 0  # minus PSNR


@pytest.mark.slow
def test_bench_quality_in_gray_with_the_autoencoders_and_an_image_discriminator(tmp_path):
    data = write_cifar_folder(tmp_path / "cifar", n=12, train_batches=1)
    kwargs = {**TINY, "aae": {**TINY["aae"], "image_weight": 0.001}}
    rows = quality.bench_quality(
        data,
        minutes_per_model=0.02,
        strategies=("random",),
        predictors=("biharmonic", "aae", "vit_cnn"),
        output=tmp_path / "out",
        batch_size=8,
        grayscale=True,
        ratio=0.5,
        model_kwargs=kwargs,
        loss="psnr",
        progress=False,
    )
    assert [r["channels"] for r in rows] == [1, 1, 1]
    assert rows[0]["settings"] == "-" and rows[1]["settings"].endswith(", loss=psnr")
    assert rows[0]["matmul_gflops"] > 0 and len({r["matmul_gflops"] for r in rows}) == 1
    assert "image_weight=0.001" in rows[1]["settings"] and rows[1]["epochs"] >= 1
    from helpers.models import load_predictor

    for name in ("aae", "vit_cnn"):
        model = load_predictor(tmp_path / "out" / "models" / name / "final.keras")
        assert model.input["images"].shape[-1] == 1
    assert (
        load_predictor(tmp_path / "out" / "models" / "aae" / "final.keras").settings["image_weight"]
        == 0.001
    )


def _tiny_bench(tmp_path, **kwargs):
    """bench_quality with tiny models and a short budget on 12 fake CIFAR images."""
    data = write_cifar_folder(tmp_path / "cifar", n=12, train_batches=1)
    settings = dict(minutes_per_model=0.02, output=tmp_path / "out", batch_size=8)
    return quality.bench_quality(data, model_kwargs=TINY, progress=False, **settings, **kwargs)


@pytest.mark.slow
def test_bench_quality_scores_each_model_at_every_eval_ratio(tmp_path):
    rows = _tiny_bench(
        tmp_path,
        ratio=0.5,
        eval_ratios=(0.3, 0.7),
        strategies=("random", "rows"),
        predictors=("vit", "mean_colour"),
    )
    assert [(r["predictor"], r["strategy"], r["ratio"]) for r in rows] == [
        (p, s, r) for p in ("vit", "mean_colour") for s in ("random", "rows") for r in (0.3, 0.7)
    ]
    assert {r["train_ratio"] for r in rows} == {0.5}
    # one model per predictor: the ViT's rows share its training
    assert len({(r["epochs"], r["train_minutes"]) for r in rows[:4]}) == 1
    # the masks differ by ratio: more hidden pixels give a different score
    assert rows[4]["mse_masked_mean"] != rows[5]["mse_masked_mean"]
    table = quality.format_quality(rows)
    assert "| ratio |" in table and "| vit | rows | 70% |" in table
    assert "| ratio |" not in quality.format_quality(rows[:1])


@pytest.mark.slow
def test_bench_quality_trains_on_a_ratio_range_and_scores_its_ends_and_middle(tmp_path):
    rows = _tiny_bench(
        tmp_path, ratio=(0.3, 0.7), strategies=("columns",), predictors=("mae", "biharmonic")
    )
    assert [(r["predictor"], r["ratio"]) for r in rows] == [
        (p, r) for p in ("mae", "biharmonic") for r in (0.3, 0.5, 0.7)
    ]
    assert {r["train_ratio"] for r in rows} == {"0.3-0.7"}
    from helpers.models import load_predictor

    # built for the range's low end, so the MAE takes 30 % masks
    assert load_predictor(tmp_path / "out" / "models" / "mae" / "final.keras").min_masked == 19


def test_bench_quality_bad_settings(tmp_path):
    data = write_cifar_folder(tmp_path / "cifar", n=8, train_batches=1)
    with refused("plan", "sometimes"):
        quality.bench_quality(data, plan="sometimes", output=tmp_path / "o")
    with refused("minutes_per_model", 0):
        quality.bench_quality(data, minutes_per_model=0, output=tmp_path / "o")
    with refused("ratio", 1.0):
        quality.bench_quality(data, ratio=1.0, output=tmp_path / "o")
    with refused("eval_ratios", 0.0):
        quality.bench_quality(data, eval_ratios=(0.5, 0.0), output=tmp_path / "o")
    with refused("ratio", (0.7, 0.3), problem="low <= high"):
        quality.bench_quality(data, ratio=(0.7, 0.3), output=tmp_path / "o")
    with refused("ratio", (0.3, 0.5, 0.7), problem="(low, high) pair"):
        quality.bench_quality(data, ratio=(0.3, 0.5, 0.7), output=tmp_path / "o")
    with refused("ratio", 1.2):
        quality.bench_quality(data, ratio=(0.3, 1.2), output=tmp_path / "o")
    with refused("recipe", "best"):
        quality.bench_quality(data, recipe="best", output=tmp_path / "o")
    with refused("loss", "l1"):
        quality.bench_quality(data, loss="l1", output=tmp_path / "o")
    with refused("predictor", "knn"):
        quality.bench_quality(data, predictors=("vit", "knn"), output=tmp_path / "o")
    with refused("patch_size", 5):
        quality.bench_quality(data, patch_size=5, predictors=("biharmonic",), output=tmp_path / "o")
