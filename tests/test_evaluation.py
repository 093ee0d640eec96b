"""helpers.tools.evaluation: test images from a CIFAR-format folder, fixed-seed evaluation, result
files."""

import csv
import json
import pickle

import numpy as np
import pytest
from _refused import refused

from helpers.tools import evaluation
from helpers.tools.evaluation import SettingError

TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32}
TINY_MAE = {
    **TINY,
    "decoder_dim": 16,
    "decoder_depth": 1,
    "decoder_num_heads": 2,
    "decoder_mlp_dim": 32,
}


def write_cifar_folder(folder, n=24, seed=0, train_batches=0):
    """A CIFAR-10 python-batch folder with ``test_batch`` (and ``train_batches`` data batches)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = ["test_batch"] + [f"data_batch_{i}" for i in range(1, train_batches + 1)]
    for name in names:
        d = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
    return folder


def expected_images(folder, n=None):
    from helpers.data import read_cifar_batch

    raw, _ = read_cifar_batch(folder / "test_batch")
    images = raw.astype(np.float32) / np.float32(255.0)
    return images if n is None else images[:n]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return write_cifar_folder(tmp_path_factory.mktemp("cifar") / "only-test")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Untrained tiny ViT and MAE (min_mask_ratio 0.5) saved as .keras files."""
    from helpers.models import build_model

    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for kind, kwargs in (("vit", TINY), ("mae", {**TINY_MAE, "min_mask_ratio": 0.5})):
        paths[kind] = folder / f"{kind}.keras"
        build_model(kind, seed=0, **kwargs).save(paths[kind])
    return paths


# --------------------------------------------------------------------------------------------
# test images
# --------------------------------------------------------------------------------------------
def test_a_folder_with_only_test_batch_is_enough(cifar):
    images = evaluation.load_test_images("cifar10", cifar)
    assert not any(cifar.glob("data_batch_*"))
    assert images.shape == (24, 32, 32, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(images, expected_images(cifar))


def test_n_test_takes_the_first_images_and_the_subfolder_is_found(tmp_path):
    write_cifar_folder(tmp_path / "cifar-10-batches-py", train_batches=1)
    images = evaluation.load_test_images("cifar10", tmp_path, n_test=5)
    np.testing.assert_array_equal(images, expected_images(tmp_path / "cifar-10-batches-py", 5))


def test_too_many_test_images_names_n_test(cifar):
    with refused("n_test", 25, problem="24 test images") as info:
        evaluation.load_test_images("cifar10", cifar, n_test=25)
    assert info.value.cli_message().startswith("--n-test 25:")


def test_a_folder_without_test_batch(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"x")
    with refused("data_dir", str(tmp_path), problem="no test_batch"):
        evaluation.load_test_images("cifar10", tmp_path)
    with refused("data_dir", str(tmp_path / "missing"), problem="does not exist"):
        evaluation.load_test_images("cifar10", tmp_path / "missing")


def test_without_data_dir_the_keras_cache_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(SettingError) as info:
        evaluation.load_test_images("cifar10")
    assert (
        info.value.param == "data_dir"
        and "not given" in str(info.value)
        and str(tmp_path) in str(info.value)
    )
    write_cifar_folder(tmp_path / "datasets" / "cifar-10-batches-py", n=3)
    assert evaluation.load_test_images("cifar10").shape == (3, 32, 32, 3)


def test_a_corrupt_test_batch_names_data_dir(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with refused("data_dir", str(tmp_path), problem="corrupt"):
        evaluation.load_test_images("cifar10", tmp_path)


def test_sample_test_split():
    from helpers.data import load_dataset

    images = evaluation.load_test_images("sample", n_test=6)
    np.testing.assert_array_equal(images, load_dataset("sample", seed=0).x_test[:6])


# --------------------------------------------------------------------------------------------
# evaluate_predictor
# --------------------------------------------------------------------------------------------
def _direct(predictor, images, strategy, ratio, seed, score_fn="variance"):
    from helpers.masking import cell_seed, make_mask
    from helpers.metrics import evaluate, summarize
    from helpers.models import reconstruct

    seed = cell_seed(seed, strategy, ratio)  # the cell's masks, as in the sweep
    mask = make_mask(strategy, ratio, images=images, patch_size=4, score_fn=score_fn, seed=seed)
    return summarize(evaluate(images, reconstruct(predictor, images, mask), mask, 4))


@pytest.mark.parametrize("strategy", ["random", "importance"])
def test_same_numbers_as_the_metrics_module(cifar, saved, strategy):
    from helpers.models import load_predictor

    images = expected_images(cifar)
    model = load_predictor(saved["vit"])
    got = evaluation.evaluate_predictor(
        model, images, strategy=strategy, ratio=0.5, patch_size=4, mask_seed=3, score_fn=None
    )
    want = _direct(model, images, strategy, 0.5, 3)
    for key in ("mse_masked", "psnr_masked", "psnr", "ssim", "mse"):
        assert got[f"{key}_mean"] == pytest.approx(want[f"{key}_mean"], rel=1e-9)
        assert got[f"{key}_std"] == pytest.approx(want[f"{key}_std"], rel=1e-9)
    assert got["n_test"] == 24 and got["n_masked"] == 32 and got["mask_seed"] == 3
    assert got["score"] == ("variance" if strategy == "importance" else None)


def test_the_mask_seed_matters(cifar):
    from helpers.models import BiharmonicInpainter

    images = expected_images(cifar, 8)
    kw = dict(strategy="random", ratio=0.5, patch_size=4, score_fn=None)
    a = evaluation.evaluate_predictor(BiharmonicInpainter(), images, mask_seed=0, **kw)
    b = evaluation.evaluate_predictor(BiharmonicInpainter(), images, mask_seed=0, **kw)
    c = evaluation.evaluate_predictor(BiharmonicInpainter(), images, mask_seed=1, **kw)
    assert a["psnr_masked_mean"] == b["psnr_masked_mean"] and a["ssim_mean"] == b["ssim_mean"]
    assert a["psnr_masked_mean"] != c["psnr_masked_mean"]


def test_gradient_scores_use_the_model(cifar, saved):
    from helpers.importance import gradient_score_fn
    from helpers.models import load_predictor

    images = expected_images(cifar, 8)
    model = load_predictor(saved["vit"])
    got = evaluation.evaluate_predictor(
        model, images, strategy="importance", ratio=0.5, mask_seed=0, score_fn="gradient"
    )
    want = _direct(model, images, "importance", 0.5, 0, score_fn=gradient_score_fn(model))
    assert got["psnr_masked_mean"] == pytest.approx(want["psnr_masked_mean"], rel=1e-9)
    assert got["score"] == "gradient"


@pytest.mark.parametrize("name", ["biharmonic", "mean_colour"])
def test_gradient_scores_need_a_model(cifar, name):
    from helpers.models import load_predictor

    with pytest.raises(SettingError) as info:
        evaluation.evaluate_predictor(
            load_predictor(name),
            expected_images(cifar, 4),
            strategy="importance",
            ratio=0.5,
            mask_seed=0,
            score_fn="gradient",
        )
    assert info.value.param == "score" and name in str(info.value) and "variance" in str(info.value)


def test_the_mean_colour_guess_is_evaluated_like_any_predictor(cifar):
    results = evaluation.run_evaluation(
        "mean_colour",
        dataset="cifar10",
        data_dir=str(cifar),
        strategy="columns",
        ratio=0.5,
        n_test=6,
        mask_seed=2,
    )
    assert results["model_name"] == "mean_colour" and results["n_test"] == 6
    biharmonic = evaluation.run_evaluation(
        "biharmonic",
        dataset="cifar10",
        data_dir=str(cifar),
        strategy="columns",
        ratio=0.5,
        n_test=6,
        mask_seed=2,
    )
    assert results["n_masked"] == biharmonic["n_masked"]
    assert results["psnr_masked_mean"] != biharmonic["psnr_masked_mean"]


def test_an_mae_refuses_a_ratio_below_its_minimum(cifar, saved):
    from helpers.models import load_predictor

    mae = load_predictor(saved["mae"])
    with pytest.raises(SettingError) as info:
        evaluation.evaluate_predictor(
            mae, expected_images(cifar, 4), strategy="random", ratio=0.3, mask_seed=0
        )
    assert (
        info.value.param == "ratio"
        and "at least 32" in str(info.value)
        and ">= 0.50" in str(info.value)
    )
    ok = evaluation.evaluate_predictor(
        mae, expected_images(cifar, 4), strategy="random", ratio=0.7, mask_seed=0
    )
    assert ok["n_masked"] == 45


def test_a_patch_size_the_model_was_not_built_for(cifar, saved):
    from helpers.models import load_predictor

    with pytest.raises(SettingError) as info:
        evaluation.evaluate_predictor(
            load_predictor(saved["vit"]),
            expected_images(cifar, 4),
            strategy="random",
            ratio=0.5,
            patch_size=8,
            mask_seed=0,
        )
    assert info.value.param == "patch_size" and "allowed: 4" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"strategy": "diagonal"}, "strategy"),
        ({"ratio": 0.0}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"score": "entropy", "strategy": "importance"}, "score"),
        ({"n_test": -1}, "n_test"),
        ({"mask_seed": -2}, "mask_seed"),
        ({"dataset": "mnist"}, "dataset"),
        ({"patch_size": 5}, "patch_size"),
    ],
)
def test_bad_settings_name_the_parameter(cifar, kwargs, param):
    settings = {
        "dataset": "cifar10",
        "data_dir": cifar,
        "strategy": "random",
        "ratio": 0.5,
        **kwargs,
    }
    with refused(param, kwargs[param]):
        evaluation.run_evaluation("biharmonic", **settings)


def test_a_missing_model_file_is_reported_before_anything_loads(tmp_path):
    with refused("model", str(tmp_path / "nope.keras"), problem="no such file"):
        evaluation.run_evaluation(tmp_path / "nope.keras", data_dir=tmp_path / "no-data")
    with refused("model", str(tmp_path / "model.h5"), problem="must be a .keras file"):
        evaluation.run_evaluation(tmp_path / "model.h5")


def test_a_file_that_is_not_a_model(tmp_path, cifar):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip")
    with refused("model", str(bad), problem="could not be loaded"):
        evaluation.run_evaluation(bad, data_dir=cifar)


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------
def test_results_files_and_table(tmp_path, cifar):
    results = evaluation.run_evaluation(
        "biharmonic",
        dataset="cifar10",
        data_dir=str(cifar),
        strategy="rows",
        ratio=0.25,
        n_test=6,
        mask_seed=2,
    )
    assert (
        results["model_name"] == "biharmonic"
        and results["data_dir"] == str(cifar)
        and results["n_test"] == 6
    )
    assert results["keras_backend"] in ("tensorflow", "jax", "torch")
    out = tmp_path / "out"
    json_path, csv_path = evaluation.write_results(out, results)
    assert json.loads(json_path.read_text()) == results
    with open(csv_path, newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert list(row) == list(results)
    assert float(row["psnr_masked_mean"]) == results["psnr_masked_mean"]
    assert row["score"] == ""  # None
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.csv",
        "metrics.json",
    ]  # no temporary files left
    table = evaluation.format_table(results)
    assert "PSNR masked region (dB)" in table and "SSIM whole image" in table
    assert f"{results['ssim_mean']:.5f}" in table and "rows 0.25" in table


def test_write_results_replaces_the_old_files(tmp_path):
    first = {"strategy": "random", "psnr_mean": 1.0}
    evaluation.write_results(tmp_path, first)
    evaluation.write_results(tmp_path, {**first, "psnr_mean": 2.0})
    assert json.loads((tmp_path / "metrics.json").read_text())["psnr_mean"] == 2.0
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1] == "random,2.0"


def test_compare_predictors_uses_one_mask_for_all(tmp_path):
    from helpers import models
    from helpers.tools import evaluation

    rng = np.random.default_rng(0)
    images = rng.random((6, 16, 16, 3)).astype(np.float32)

    zero = models.BiharmonicInpainter()
    zero.fill = lambda imgs, mask, p: np.zeros_like(imgs)
    rows, recon, mask = evaluation.compare_predictors(
        {"biharmonic": models.BiharmonicInpainter(), "zeros": zero},
        images,
        strategy="rows",
        ratio=0.5,
        mask_seed=3,
    )
    assert mask.shape == (6, 16) and np.all(mask.sum(axis=1) == 8)
    assert [r["predictor"] for r in rows] == ["biharmonic", "zeros"] and set(recon) == {
        "biharmonic",
        "zeros",
    }
    hidden = np.repeat(np.repeat(mask.reshape(6, 4, 4), 4, axis=1), 4, axis=2)
    expected = np.mean([np.mean(images[i][hidden[i]] ** 2) for i in range(6)])
    assert rows[1]["mse_masked_mean"] == pytest.approx(expected, rel=1e-5)
    assert rows[0]["psnr_masked_mean"] > rows[1]["psnr_masked_mean"]
    table = evaluation.format_comparison(rows)
    assert "PSNR masked region (dB)" in table and table.splitlines()[2].startswith("zeros")
    with refused("strategy", "spiral"):
        evaluation.compare_predictors({"z": zero}, images, strategy="spiral", ratio=0.5)
    with refused("predictors", {}):
        evaluation.compare_predictors({}, images, strategy="rows", ratio=0.5)


def test_compare_predictors_says_what_training_added():
    from helpers import models
    from helpers.tools import evaluation

    rng = np.random.default_rng(1)
    images = rng.random((6, 32, 32, 3)).astype(np.float32)
    model = models.build_model("vit", seed=2, **TINY)
    twin = models.untrained_twin(model, seed=2)
    for w in model.trainable_variables:  # "training": the model moves away from its start
        w.assign(w * 0.5)
    kw = dict(strategy="random", ratio=0.5, mask_seed=0)
    alone, _, _ = evaluation.compare_predictors({"vit": twin}, images, **kw)
    rows, _, _ = evaluation.compare_predictors(
        {"vit": model, "biharmonic": models.BiharmonicInpainter()},
        images,
        untrained={"vit": twin},
        **kw,
    )
    assert rows[0]["psnr_masked_untrained"] == pytest.approx(alone[0]["psnr_masked_mean"])
    assert rows[0]["training_added"] == pytest.approx(
        rows[0]["psnr_masked_mean"] - alone[0]["psnr_masked_mean"]
    )
    assert "training_added" not in rows[1]
    table = evaluation.format_comparison(rows).splitlines()
    assert table[0].endswith("training added (dB)")
    assert table[1].endswith(f"{rows[0]['training_added']:+.2f}") and table[2].endswith("-")
    with pytest.raises(evaluation.SettingError) as info:
        evaluation.compare_predictors({"vit": model}, images, untrained={"cnn": twin}, **kw)
    assert info.value.param == "untrained" and info.value.value == ["cnn"]
