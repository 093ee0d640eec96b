"""python -m helpers train / evaluate / bench: files written, resume, fixed masks, errors (exit
2)."""

import csv
import json

import numpy as np
import pytest
from test_evaluation import expected_images, write_cifar_folder

from helpers.tools import cli

TINY = ["--embed-dim", "16", "--depth", "1", "--num-heads", "2", "--mlp-dim", "32"]
TINY_MAE = TINY + [
    "--decoder-dim",
    "16",
    "--decoder-depth",
    "1",
    "--decoder-num-heads",
    "2",
    "--decoder-mlp-dim",
    "32",
]
FAST = ["--dataset", "sample", "--n-train", "48", "--batch-size", "16", "--quiet"]


def _main(capsys, *argv):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors (a bad value of an option's type)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _history(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return write_cifar_folder(tmp_path_factory.mktemp("cifar") / "only-test", n=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny ViT (reference recipe) and a tiny MAE (tuned recipe, min_mask_ratio 0.5) trained for
    one epoch through the CLI."""
    root = tmp_path_factory.mktemp("runs")
    paths = {}
    for kind, size in (("vit", TINY + ["--recipe", "reference"]), ("mae", TINY_MAE)):
        code = cli.main(
            [
                "train",
                "--model",
                kind,
                "--ratio",
                "0.5",
                "--epochs",
                "1",
                "--output",
                str(root),
                *FAST,
                *size,
            ]
        )
        assert code == 0
        paths[kind] = root / f"{kind}-random-0.50-seed0"
    return paths


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_writes_the_model_files_and_the_history(trained, capsys):
    folder = trained["vit"]
    for name in ("best.keras", "final.keras", "history.csv"):
        assert (folder / name).is_file(), name
    assert not (folder / "backup").exists()  # a completed run leaves no backup
    rows = _history(folder / "history.csv")
    assert (
        [r["epoch"] for r in rows] == ["0"] and float(rows[0]["loss"]) > 0 and "val_loss" in rows[0]
    )


@pytest.mark.slow
def test_train_size_options_reach_the_saved_model(trained):
    from helpers.models import load_predictor

    vit, mae = (load_predictor(trained[k] / "final.keras") for k in ("vit", "mae"))
    assert (
        vit.get_layer("pos_embed").init == "random" and vit.get_layer("block_0").dropout == 0.1
    )  # reference
    assert (
        mae.get_layer("pos_embed").init == mae.get_layer("decoder_pos_embed").init == "sincos"
    )  # tuned
    assert mae.get_layer("block_0").dropout == 0.0
    assert (
        vit.get_layer("patch_embed").embed_dim == 16
        and len([layer for layer in vit.layers if layer.name.startswith("block_")]) == 1
    )


@pytest.mark.slow
def test_train_prints_where_the_files_went(tmp_path, capsys):
    code, out, err = _main(
        capsys,
        "train",
        "--model",
        "cnn",
        "--filters",
        "4",
        "8",
        "--strategy",
        "rows",
        "--ratio-range",
        "0.3",
        "0.6",
        "--epochs",
        "1",
        "--output",
        tmp_path,
        *FAST,
    )
    assert code == 0, err
    folder = tmp_path / "cnn-rows-0.30to0.60-seed0"
    assert (
        f"best model:  {folder / 'best.keras'}" in out
        and f"history:     {folder / 'history.csv'}" in out
    )
    assert "val_loss" in out and (folder / "final.keras").is_file()


@pytest.mark.slow
def test_train_vit_cnn_takes_its_decoder_options(tmp_path, capsys):
    from helpers.models import load_predictor

    code, out, err = _main(
        capsys,
        "train",
        "--model",
        "vit_cnn",
        *TINY,
        "--latent-dim",
        "4",
        "--decoder-filters",
        "8",
        "4",
        "--fill",
        "token",
        "--epochs",
        "1",
        "--output",
        tmp_path,
        *FAST,
    )
    assert code == 0, err
    model = load_predictor(tmp_path / "vit_cnn-random-0.50-seed0" / "final.keras")
    assert model.builder == "vit_cnn" and model.settings["decoder_filters"] == (8, 4)
    assert model.settings["latent_dim"] == 4 and model.settings["fill"] == "token"
    code, out, err = _main(
        capsys, "train", "--model", "vit_cnn", "--filters", "8", "--output", tmp_path / "x"
    )
    assert code == 2 and "--filters is an option of --model cnn/aae, not of --model vit_cnn" in err
    code, out, err = _main(
        capsys, "train", "--model", "vit", "--latent-dim", "4", "--output", tmp_path / "x"
    )
    assert code == 2 and "--latent-dim is an option of --model vit_cnn" in err


@pytest.mark.slow
def test_train_aae_takes_its_adversarial_options(tmp_path, capsys):
    from helpers.models import load_predictor

    code, out, err = _main(
        capsys, "train", "--model", "aae", "--filters", "8", "16", "--latent-dim", "4",
        "--latent-weight", "0.01", "--image-weight", "0.001", "--epochs", "1", "--output",
        tmp_path, *FAST,
    )  # fmt: skip
    assert code == 0, err
    model = load_predictor(tmp_path / "aae-random-0.50-seed0" / "final.keras")
    assert model.builder == "aae" and model.settings["filters"] == (8, 16)
    assert model.settings["latent_weight"] == 0.01 and model.settings["image_weight"] == 0.001
    code, out, err = _main(capsys, "train", "--model", "aae", "--latent-weight", "-1")
    assert code == 2 and "argument --latent-weight: -1: must be a number >= 0" in err
    code, out, err = _main(
        capsys, "train", "--model", "cnn", "--image-weight", "0.1", "--output", tmp_path / "x"
    )
    assert code == 2 and "--image-weight is an option of --model aae, not of --model cnn" in err


@pytest.mark.slow
def test_train_with_the_psnr_loss(tmp_path, capsys):
    import csv

    code, out, err = _main(
        capsys, "train", "--model", "vit", "--embed-dim", "16", "--depth", "1", "--num-heads", "2",
        "--mlp-dim", "32", "--loss", "psnr", "--epochs", "1", "--output", tmp_path, *FAST,
    )  # fmt: skip
    assert code == 0, err
    with open(tmp_path / "vit-random-0.50-seed0" / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["val_loss"]) < -5  # minus a mean PSNR in dB, not an MSE
    # the long recipe trains the ViT on the PSNR loss without --loss
    code, out, err = _main(
        capsys, "train", "--model", "vit", "--embed-dim", "16", "--depth", "1", "--num-heads", "2",
        "--mlp-dim", "32", "--recipe", "long", "--epochs", "1", "--output", tmp_path / "long",
        *FAST,
    )  # fmt: skip
    assert code == 0, err
    with open(tmp_path / "long" / "vit-random-0.50-seed0" / "history.csv", newline="") as f:
        assert float(next(csv.DictReader(f))["val_loss"]) < -5
    code, out, err = _main(capsys, "train", "--model", "vit", "--loss", "l1")
    assert code == 2 and "--loss" in err and "'l1'" in err


class _InterruptAfter:
    """A callback that presses Ctrl-C at the end of epoch ``epoch``."""

    def __new__(cls, epoch):
        import keras

        class Interrupt(keras.callbacks.Callback):
            def on_epoch_end(self, e, logs=None):
                if e == epoch:
                    raise KeyboardInterrupt

        return Interrupt()


@pytest.mark.slow
def test_running_the_same_command_again_resumes(tmp_path, capsys, monkeypatch):
    import helpers.training as training

    argv = [
        "train",
        "--model",
        "vit",
        "--epochs",
        "3",
        "--output",
        tmp_path,
        "--run-name",
        "r",
        *FAST,
        *TINY,
    ]
    real_train = training.train

    def interrupted_train(*args, callbacks=(), **kwargs):
        return real_train(*args, callbacks=(*callbacks, _InterruptAfter(1)), **kwargs)

    monkeypatch.setattr(training, "train", interrupted_train)
    code, _, err = _main(capsys, *argv)
    assert code == 130 and "interrupted" in err
    folder = tmp_path / "r"
    before = _history(folder / "history.csv")
    assert [r["epoch"] for r in before] == ["0", "1"]
    assert (folder / "backup").exists() and not (folder / "final.keras").exists()

    monkeypatch.setattr(training, "train", real_train)
    code, out, err = _main(capsys, *argv)
    assert code == 0, err
    assert "resuming the interrupted run" in out and "2 of 3 epochs" in out
    after = _history(folder / "history.csv")
    assert [r["epoch"] for r in after] == ["0", "1", "2"]
    assert after[:2] == before  # epochs 0 and 1 were not run again (their timings are the old ones)
    assert (folder / "final.keras").is_file() and not (folder / "backup").exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--ratio", "1.5"], ["argument --ratio", "1.5", "strictly between 0 and 1"]),
        (["--ratio-range", "0.7", "0.3"], ["--ratio-range", "LOW must be <= HIGH"]),
        (["--filters", "8", "16"], ["--filters", "--model cnn", "not of --model vit"]),
        (["--epochs", "0"], ["argument --epochs", "0", ">= 1"]),
        (["--patch-size", "5"], ["argument --patch-size", "5", "allowed"]),
        (["--embed-dim", "15"], ["embed_dim=15", "num_heads"]),
        (
            ["--pos-init", "sincos", "--embed-dim", "18"],
            ["--embed-dim 18", "divisible by 4", "sincos"],
        ),
        (
            ["--dataset", "cifar10", "--data-dir", "/no/such/folder"],
            ["--data-dir", "/no/such/folder"],
        ),
        (["--precision", "mixed_float16"], ["--precision 'mixed_float16'", "needs a GPU"]),
        (["--precision", "half"], ["argument --precision", "half", "mixed_bfloat16"]),
        (["--devices", "2"], ["--devices 2", "this machine has 1 device"]),
        (["--devices", "0"], ["argument --devices", ">= 1"]),
    ],
)
def test_train_bad_values_exit_2(tmp_path, capsys, argv, words):
    base = ["train", "--model", "vit", "--epochs", "1", "--output", tmp_path, *FAST, *TINY]
    code, out, err = _main(capsys, *base, *argv)
    assert code == 2 and out == ""
    for w in words:
        assert w in err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_train_fill_is_an_option_of_the_transformers_only(tmp_path, capsys):
    code, out, err = _main(
        capsys,
        "train",
        "--model",
        "cnn",
        "--fill",
        "token",
        "--epochs",
        "1",
        "--output",
        tmp_path,
        *FAST,
    )
    assert code == 2 and "--fill is an option of --model vit/mae/vit_cnn, not of --model cnn" in err
    assert not any(tmp_path.iterdir())


def test_train_mae_minimum_above_the_training_ratio(tmp_path, capsys):
    code, _, err = _main(
        capsys,
        "train",
        "--model",
        "mae",
        "--ratio",
        "0.3",
        "--min-mask-ratio",
        "0.5",
        "--epochs",
        "1",
        "--output",
        tmp_path,
        *FAST,
    )
    assert code == 2 and "--min-mask-ratio 0.5" in err and "<= 0.3" in err


def test_train_ratio_and_ratio_range_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(
            [
                "train",
                "--model",
                "vit",
                "--ratio",
                "0.5",
                "--ratio-range",
                "0.3",
                "0.7",
                "--output",
                str(tmp_path),
            ]
        )
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------
def _evaluate(capsys, model, out, *extra, data_dir=None, strategy="random", ratio="0.5"):
    data = ["--dataset", "cifar10", "--data-dir", data_dir] if data_dir is not None else []
    return _main(
        capsys,
        "evaluate",
        "--model",
        model,
        *data,
        "--strategy",
        strategy,
        "--ratio",
        ratio,
        "--output",
        out,
        *extra,
    )


@pytest.mark.slow
def test_evaluate_writes_the_metrics_of_the_metrics_module(trained, cifar, tmp_path, capsys):
    from helpers.masking import cell_seed, make_mask
    from helpers.metrics import evaluate, summarize
    from helpers.models import load_predictor, reconstruct, untrained_twin

    model_path = trained["vit"] / "best.keras"
    code, out, err = _evaluate(
        capsys, model_path, tmp_path / "e", "--mask-seed", "7", data_dir=cifar, strategy="columns"
    )
    assert code == 0, err
    got = json.loads((tmp_path / "e" / "metrics.json").read_text())
    for key in (
        "model",
        "model_name",
        "dataset",
        "data_dir",
        "n_test",
        "strategy",
        "ratio",
        "mask_seed",
        "keras_backend",
    ):
        assert key in got
    assert got["model"] == str(model_path) and got["data_dir"] == str(cifar) and got["n_test"] == 16
    assert (got["model_name"], got["strategy"], got["ratio"], got["mask_seed"]) == (
        "vit",
        "columns",
        0.5,
        7,
    )

    images = expected_images(cifar)
    model = load_predictor(model_path)
    mask = make_mask("columns", 0.5, images=images, patch_size=4, seed=cell_seed(7, "columns", 0.5))
    want = summarize(evaluate(images, reconstruct(model, images, mask), mask, 4))
    twin = untrained_twin(model, seed=0)  # what training added: the twin on the same masks
    start = summarize(evaluate(images, reconstruct(twin, images, mask), mask, 4))
    assert got["psnr_masked_untrained"] == pytest.approx(start["psnr_masked_mean"], rel=1e-9)
    assert got["training_added"] == pytest.approx(
        want["psnr_masked_mean"] - start["psnr_masked_mean"], rel=1e-9
    )
    assert f"training added {got['training_added']:+.2f} dB" in out
    for key in ("mse_masked", "psnr_masked", "psnr", "ssim"):
        for stat in ("mean", "std"):
            assert got[f"{key}_{stat}"] == pytest.approx(want[f"{key}_{stat}"], rel=1e-9), (
                key,
                stat,
            )
    with open(tmp_path / "e" / "metrics.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["ssim_mean"]) == got["ssim_mean"]
    assert "PSNR masked region (dB)" in out and f"{got['psnr_masked_mean']:.5f}" in out


@pytest.mark.slow
def test_evaluate_twice_gives_the_same_numbers(trained, cifar, tmp_path, capsys):
    results = []
    for name in ("a", "b"):
        code, _, err = _evaluate(
            capsys,
            trained["mae"] / "final.keras",
            tmp_path / name,
            "--n-test",
            "10",
            data_dir=cifar,
            strategy="importance",
            ratio="0.6",
        )
        assert code == 0, err
        data = json.loads((tmp_path / name / "metrics.json").read_text())
        data.pop("seconds")
        results.append(data)
    assert (
        results[0] == results[1]
        and results[0]["n_test"] == 10
        and results[0]["score"] == "variance"
    )


@pytest.mark.slow
def test_evaluate_with_gradient_scores(trained, cifar, tmp_path, capsys):
    code, out, err = _evaluate(
        capsys,
        trained["vit"] / "best.keras",
        tmp_path,
        "--score",
        "gradient",
        "--n-test",
        "4",
        data_dir=cifar,
        strategy="importance",
    )
    assert code == 0, err
    assert (
        json.loads((tmp_path / "metrics.json").read_text())["score"] == "gradient"
        and "score gradient" in out
    )


def test_evaluate_biharmonic(cifar, tmp_path, capsys):
    code, out, err = _evaluate(
        capsys,
        "biharmonic",
        tmp_path,
        "--n-test",
        "5",
        data_dir=cifar,
        strategy="rows",
        ratio="0.25",
    )
    assert code == 0, err
    got = json.loads((tmp_path / "metrics.json").read_text())
    assert (
        got["model_name"] == "biharmonic"
        and got["n_test"] == 5
        and np.isfinite(got["psnr_masked_mean"])
    )
    assert "training_added" not in got and "training added" not in out  # it does not learn


def test_evaluate_mean_colour(cifar, tmp_path, capsys):
    code, out, err = _evaluate(
        capsys,
        "mean_colour",
        tmp_path,
        "--n-test",
        "5",
        data_dir=cifar,
        strategy="rows",
        ratio="0.25",
    )
    assert code == 0, err
    got = json.loads((tmp_path / "metrics.json").read_text())
    assert (
        got["model_name"] == "mean_colour"
        and got["n_test"] == 5
        and np.isfinite(got["psnr_masked_mean"])
    )


def test_evaluate_on_the_sample_test_split(tmp_path, capsys):
    code, out, err = _main(
        capsys,
        "evaluate",
        "--model",
        "biharmonic",
        "--dataset",
        "sample",
        "--strategy",
        "random",
        "--ratio",
        "0.5",
        "--n-test",
        "4",
        "--output",
        tmp_path,
    )
    assert code == 0, err
    got = json.loads((tmp_path / "metrics.json").read_text())
    assert got["dataset"] == "sample" and got["data_dir"] is None and got["n_test"] == 4


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, words",
    [
        ("missing model", ["--model", "nope.keras", "no such file"]),
        ("ratio 0", ["argument --ratio", "0", "strictly between 0 and 1"]),
        ("ratio 1.5", ["argument --ratio", "1.5", "strictly between 0 and 1"]),
        ("no test_batch", ["--data-dir", "no test_batch"]),
        ("mae ratio", ["--ratio 0.3", "at least 32", ">= 0.50"]),
        ("gradient biharmonic", ["--score 'gradient'", "biharmonic", "variance"]),
        ("n-test", ["--n-test 17", "16 test images"]),
    ],
)
def test_evaluate_bad_values_exit_2(trained, cifar, tmp_path, capsys, case, words):
    model, data_dir, strategy, ratio, extra = "biharmonic", cifar, "random", "0.5", []
    if case == "missing model":
        model = tmp_path / "nope.keras"
    elif case == "ratio 0":
        ratio = "0"
    elif case == "ratio 1.5":
        ratio = "1.5"
    elif case == "no test_batch":
        data_dir = tmp_path
    elif case == "mae ratio":
        model, ratio = trained["mae"] / "best.keras", "0.3"
    elif case == "gradient biharmonic":
        strategy, extra = "importance", ["--score", "gradient"]
    elif case == "n-test":
        extra = ["--n-test", "17"]
    code, out, err = _evaluate(
        capsys, model, tmp_path / "out", *extra, data_dir=data_dir, strategy=strategy, ratio=ratio
    )
    assert code == 2 and out == ""
    for w in words:
        assert w in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(
    tmp_path, capsys, command
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    argv = {
        "evaluate": [
            "evaluate",
            "--model",
            "biharmonic",
            "--dataset",
            "sample",
            "--strategy",
            "random",
            "--ratio",
            "0.5",
        ],
        "train": ["train", "--model", "vit", "--epochs", "1", *FAST, *TINY],
    }[command]
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, "--output", str(blocker / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert (
        "argument --output" in err
        and str(blocker / "out") in err
        and "cannot" not in err.split("--output")[0]
    )
    assert blocker.read_text() == "not a folder"
    missing = tmp_path / "new" / "deeper"
    assert (
        cli._output_dir(str(missing)) == missing and not (tmp_path / "new").exists()
    )  # checked, nothing left


def test_evaluate_unknown_strategy_is_a_usage_error(cifar, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(
            [
                "evaluate",
                "--model",
                "biharmonic",
                "--data-dir",
                str(cifar),
                "--strategy",
                "diagonal",
                "--ratio",
                "0.5",
                "--output",
                str(tmp_path),
            ]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --strategy" in err and "'diagonal'" in err and "'random'" in err


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_speed_quick_prints_every_part_and_the_ratios(capsys):
    code, out, err = _main(capsys, "bench", "speed", "--quick")
    assert code == 0, err
    for words in (
        "random masks, 5000 images",
        "ratio: skimage loop / batched SSIM",
        "plain-Keras ViT (reference), 50% masked",
        "mask-token ViT, 75% masked",
        "MAE-style ViT (decoder 16 wide, 1 block), 75% masked",
        "MAE-style ViT + harmonic fill, 75% masked",
        "mask-token ViT + masks drawn per batch, 50% masked",
        "ratio: MAE / mask-token ViT, 50% masked",
        "ratio: MAE / mask-token ViT, 75% masked",
        "ratio: MAE / mask-token ViT, both with the harmonic fill, 75% masked",
        "ratio: with / without harmonic fill (MAE), 50% masked",
        "ratio: mask-token ViT / plain-Keras ViT, 75% masked",
        "ratio: with / without mask drawing, 50% masked",
        "mask-token ViT + harmonic fill, 50% masked",
        "ratio: with / without harmonic fill (mask-token ViT), 75% masked",
        "input pipeline, mixed random/rows/columns, 30-70 %, flips, batch 256",
        "input pipeline, importance (variance), 50 %, batch 256",
        "ratio: adversarial autoencoder (latent + image discriminators) / mask-token ViT",
        "ratio: ViT + CNN decoder / mask-token ViT",
        "pretrained ViT (1 blocks, width 16, input 32, batch 8), fine-tuned",
        "ratio: pretrained ViT, head only / fine-tuned",
    ):
        assert words in out, words
    ratio_lines = [ln for ln in out.splitlines() if ln.startswith("ratio: ") and "masked" in ln]
    xla = "ratio: XLA on / off (TensorFlow, mask-token ViT), 50% masked" in out
    assert xla == (keras_backend() == "tensorflow")
    assert len(ratio_lines) == 12 + xla
    assert all(float(ln.rsplit("x", 1)[1]) > 0 for ln in ratio_lines)
    ips = [float(ln.split()[-2]) for ln in out.splitlines() if ln.endswith("images/s")]
    assert len(ips) == 14 + 4 + 2 + xla and all(v > 0 for v in ips)  # + autoencoders, pretrained
    batches = [float(ln.split()[-2]) for ln in out.splitlines() if ln.endswith("batches/s")]
    assert len(batches) == 4 and all(v > 0 for v in batches)
    pipeline = [ln for ln in out.splitlines() if ln.startswith("ratio: slowest input pipeline")]
    assert len(pipeline) == 1 and float(pipeline[0].rsplit("x", 1)[1]) > 0


def keras_backend():
    import keras

    return keras.backend.backend()


def test_bench_quality_rejects_bad_options(tmp_path, capsys):
    code, _, err = _main(capsys, "bench", "quality", "--data-dir", tmp_path / "nope")
    assert code == 2 and "--data-dir" in err and "no such folder" in err
    code, _, err = _main(
        capsys, "bench", "quality", "--data-dir", tmp_path, "--minutes-per-model", "0"
    )
    assert code == 2 and "--minutes-per-model" in err
    code, _, err = _main(
        capsys, "bench", "quality", "--data-dir", tmp_path, "--predictors", "vit", "resnet"
    )
    assert code == 2 and "'resnet'" in err and "biharmonic" in err


def test_bench_quality_calls_bench_quality_and_prints_the_table(monkeypatch, tmp_path, capsys):
    from helpers.tools import quality

    calls = []
    row = {
        "predictor": "vit",
        "strategy": "rows",
        "psnr_masked_mean": 20.5,
        "psnr_masked_std": 1.25,
        "training_added": 6.5,
        "psnr_mean": 23.0,
        "ssim_mean": 0.8,
        "sharpness": 0.93,
        "epochs": 7,
        "train_minutes": 9.5,
        "matmul_gflops": 250.0,
    }

    def fake(**kwargs):
        calls.append(kwargs)
        return [row]

    monkeypatch.setattr(quality, "bench_quality", fake)
    code, out, _ = _main(
        capsys,
        "bench",
        "quality",
        "--data-dir",
        tmp_path,
        "--minutes-per-model",
        "0.5",
        "--output",
        tmp_path / "q",
        "--predictors",
        "vit",
        "biharmonic",
    )
    assert code == 0
    assert "| vit | rows | 20.50 ± 1.25 | +6.50 | 23.00 | 0.800 | 0.93 | 7 | 9.5 |" in out
    assert "250 GFLOP/s" in out
    assert calls == [
        {
            "data_dir": str(tmp_path),
            "plan": "mixed",
            "recipe": "long",
            "grayscale": False,
            "loss": None,
            "minutes_per_model": 0.5,
            "output": tmp_path / "q",
            "predictors": ("vit", "biharmonic"),
        }
    ]
    code, _, _ = _main(capsys, "bench", "quality", "--data-dir", tmp_path, "--recipe", "reference")
    assert code == 0 and calls[-1] == {
        "data_dir": str(tmp_path),
        "plan": "mixed",
        "recipe": "reference",
        "grayscale": False,
        "loss": None,
    }
    code, _, _ = _main(capsys, "bench", "quality", "--data-dir", tmp_path, "--loss", "psnr")
    assert code == 0 and calls[-1]["loss"] == "psnr"
    code, _, err = _main(capsys, "bench", "quality", "--data-dir", tmp_path, "--loss", "l1")
    assert code == 2 and "--loss" in err and "'l1'" in err
    code, _, _ = _main(
        capsys, "bench", "quality", "--data-dir", tmp_path, "--eval-ratios", "0.3", "0.7"
    )
    assert code == 0 and calls[-1]["eval_ratios"] == (0.3, 0.7)
    code, _, _ = _main(
        capsys, "bench", "quality", "--data-dir", tmp_path, "--ratio-range", "0.3", "0.7"
    )
    assert code == 0 and calls[-1]["ratio"] == (0.3, 0.7)
    code, _, err = _main(capsys, "bench", "quality", "--data-dir", tmp_path, "--ratio-range", "0.3")
    assert code == 2 and "--ratio-range" in err
    code, _, _ = _main(capsys, "bench", "quality", "--data-dir", tmp_path, "--ratio", "0.5")
    assert code == 0 and calls[-1]["ratio"] == 0.5
    code, _, _ = _main(capsys, "bench", "quality", "--data-dir", tmp_path, "--seed", "1")
    assert code == 0 and calls[-1]["seed"] == 1
    code, _, err = _main(capsys, "bench", "quality", "--data-dir", tmp_path, "--seed", "-1")
    assert code == 2 and "--seed" in err
    code, _, err = _main(
        capsys, "bench", "quality", "--data-dir", tmp_path, "--ratio", "0.5", "--ratio-range",
        "0.3", "0.7",
    )  # fmt: skip
    assert code == 2 and "not allowed with" in err
    code, _, err = _main(capsys, "bench", "quality", "--data-dir", tmp_path, "--eval-ratios", "x")
    assert code == 2 and "--eval-ratios" in err and "'x'" in err
    code, _, _ = _main(
        capsys, "bench", "quality", "--data-dir", tmp_path, "--grayscale", "--image-weight", "0.001"
    )
    assert code == 0 and calls[-1]["grayscale"] is True
    assert calls[-1]["model_kwargs"] == {"aae": {"image_weight": 0.001}}
    n_calls = len(calls)
    code, _, err = _main(
        capsys, "bench", "quality", "--data-dir", tmp_path, "--predictors", "vit",
        "--latent-weight", "0",
    )  # fmt: skip
    assert code == 2 and "--latent-weight" in err and "aae" in err and len(calls) == n_calls
    code, _, err = _main(capsys, "bench", "quality", "--data-dir", tmp_path, "--image-weight", "-1")
    assert code == 2 and "--image-weight" in err and "-1" in err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "train", "evaluate", "bench"):
        assert command in out


SWEEP = ["sweep", "--n-train", "48", "--n-test", "8", "--epochs", "1", "--batch-size", "16"]


@pytest.mark.slow
def test_sweep_command_records_the_probe_and_resumes(capsys, tmp_path, monkeypatch):
    from helpers import training
    from helpers.tools import experiments

    run = tmp_path / "run"
    args = SWEEP + ["--run", run, "--predictors", "mae", "biharmonic", "--strategies", "random"]
    args += ["--ratios", "0.3", "0.7", "--plan", "per_cell", "--probe-epochs", "1"]
    code, out, err = _main(capsys, *args)
    assert code == 0, err
    assert "| random | 30% |" in out and "linear probe of the MAE-style ViT encoders" in out
    assert "| trained on | 30% | 70% |" in out and f"written: {run}" in out
    rows = experiments.Run(run).rows()
    assert [(r["predictor"], r["ratio"]) for r in rows] == [
        ("mae", 0.3),
        ("biharmonic", 0.3),
        ("mae", 0.7),
        ("biharmonic", 0.7),
    ]
    assert all(0 <= float(r["probe_accuracy"]) <= 1 for r in rows if r["predictor"] == "mae")
    models = [r["model"] for r in experiments.Run(run).probe_rows()]
    assert models == ["pixels", "mae-random", "mae-random-0.30", "mae-random-0.70"]
    assert experiments.Run(run).provenance()["profile"] == "python -m helpers sweep"

    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained again"))
    code, again, _ = _main(capsys, *args)  # every cell is done: nothing is trained or probed
    assert code == 0 and experiments.Run(run).rows() == rows
    table = [line for line in out.splitlines() if line.startswith("| random")]
    assert table and table == [line for line in again.splitlines() if line.startswith("| random")]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ratios", "1.5"], "argument --ratios: 1.5: must be strictly between 0 and 1"),
        (["--strategies", "diagonal"], "argument --strategies: invalid choice: 'diagonal'"),
        (["--probe-epochs", "-1"], "argument --probe-epochs"),
    ],
)
def test_sweep_command_usage_errors(capsys, tmp_path, extra, message):
    code, _, err = _main(capsys, *SWEEP, "--run", tmp_path / "run", *extra)
    assert code == 2 and message in err
    assert not (tmp_path / "run").exists()


def test_sweep_command_refuses_a_run_folder_it_cannot_write(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = _main(capsys, *SWEEP, "--run", blocker / "run", "--predictors", "biharmonic")
    assert code == 2 and f"error: --run {str(blocker / 'run')!r}" in err
