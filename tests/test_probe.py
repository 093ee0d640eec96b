"""The linear probe: metrics equal their definitions, the probe learns what can be learned and stays
at chance on random labels, every encoder gives one vector per image, bad inputs are refused
before any training."""

import json
import pickle

import numpy as np
import pytest
from _refused import refused
from test_evaluation import write_cifar_folder

from helpers._checks import SettingTypeError
from helpers.models import build_aae, build_cnn_autoencoder, build_mae, build_vit, build_vit_cnn
from helpers.tools import probe
from helpers.tools.cli import main

TINY = dict(image_shape=(32, 32, 3), patch_size=4, seed=0)
TINY_VIT = dict(depth=1, num_heads=2, embed_dim=16, mlp_dim=16)


def metrics(y_true, y_pred, n):
    return probe.probe_metrics(probe.confusion_matrix(np.array(y_true), np.array(y_pred), n))


def test_perfect_predictions():
    assert metrics([0, 1, 2, 2], [0, 1, 2, 2], 3) == {
        "accuracy": 1.0,
        "macro_f1": 1.0,
        "kappa": 1.0,
    }


def test_chance_predictions():
    m = metrics([0, 0, 1, 1], [0, 1, 0, 1], 2)
    assert m == {"accuracy": 0.5, "macro_f1": 0.5, "kappa": 0.0}


def test_one_class_always_wrong():
    # class 2 always predicted as 0: accuracy 4/6; F1 = (4/6, 1, 0) / 3;
    # p_e = (2*4 + 2*2 + 2*0) / 36 = 1/3, kappa = (2/3 - 1/3) / (2/3) = 1/2
    m = metrics([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 0, 0], 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx((4 / 6 + 1 + 0) / 3)
    assert m["kappa"] == pytest.approx(0.5)


def test_a_class_absent_from_truth_and_predictions_does_not_count():
    assert metrics([0, 1], [0, 1], 5)["macro_f1"] == 1.0


def test_bad_labels():
    with refused("y_true", (0, 3)):
        probe.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with refused("y_true", "float64", SettingTypeError):
        probe.confusion_matrix(np.array([0.5]), np.array([0]), 3)


@pytest.mark.slow
def test_the_probe_learns_a_linear_rule_and_not_random_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 16)).astype(np.float32)
    w = rng.normal(size=(16, 4))
    y = np.argmax(x @ w, axis=1)
    learned, _ = probe.score_features(x[:800], y[:800], x[800:], y[800:], 4, epochs=60, seed=0)
    assert learned["accuracy"] > 0.85 and learned["kappa"] > 0.8
    noise = rng.integers(0, 4, 1200)
    chance, _ = probe.score_features(x[:800], noise[:800], x[800:], noise[800:], 4, epochs=60)
    assert chance["accuracy"] < 0.35 and abs(chance["kappa"]) < 0.1


@pytest.mark.parametrize(
    "build, dim",
    [
        (lambda: build_vit(**TINY, **TINY_VIT), 16),
        (lambda: build_mae(**TINY, **TINY_VIT, decoder_depth=1, decoder_dim=16,
                           decoder_num_heads=2, decoder_mlp_dim=16), 16),
        (lambda: build_vit_cnn(**TINY, **TINY_VIT), 16),
        (lambda: build_cnn_autoencoder((32, 32, 3), patch_size=4, filters=(8, 12), seed=0), 12),
        (lambda: build_aae((32, 32, 3), patch_size=4, filters=(8, 12), latent_dim=6), 6),
    ],
    ids=["vit", "mae", "vit_cnn", "cnn", "aae"],
)  # fmt: skip
def test_every_encoder_gives_one_vector_per_image_from_every_patch(build, dim):
    model = build()
    images = np.random.default_rng(0).random((5, 32, 32, 3), dtype=np.float32)
    features = model.features(images)
    assert features.shape == (5, dim) and features.dtype == np.float32
    np.testing.assert_allclose(model.features(images, batch_size=2), features, atol=1e-5)
    changed = images.copy()
    changed[:, -4:, -4:] = 1 - changed[:, -4:, -4:]  # the last patch only: every encoder reads it
    assert np.abs(model.features(changed) - features).max() > 1e-4


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    base = tmp_path_factory.mktemp("probe")
    path = base / "vit.keras"
    build_vit(**TINY, **TINY_VIT).save(path)
    data = write_cifar_folder(base / "cifar", n=40, train_batches=2)
    return path, data


def test_run_probe_end_to_end(saved, tmp_path, capsys):
    path, data = saved
    args = ["probe", "--model", str(path), "--dataset", "cifar10", "--data-dir", str(data)]
    assert main([*args, "--output", str(tmp_path / "out"), "--epochs", "3"]) == 0
    result = json.loads((tmp_path / "out" / probe.PROBE_JSON).read_text())
    assert [r["features"] for r in result["rows"]] == list(probe.FEATURES)
    assert [r["dim"] for r in result["rows"]] == [16, 16, 3072]
    assert result["settings"]["n_train"] == 80 and result["settings"]["n_test"] == 40
    for name, matrix in result["confusion"].items():
        assert np.asarray(matrix).sum() == 40, name
    assert (tmp_path / "out" / probe.CONFUSION_FIGURE).stat().st_size > 1000
    assert "random_encoder" in capsys.readouterr().out


def test_a_model_without_an_encoder(saved, tmp_path, capsys):
    _, data = saved
    args = ["probe", "--model", "biharmonic", "--data-dir", str(data), "--output", str(tmp_path)]
    assert main(args) == 2
    assert "has no encoder" in capsys.readouterr().err


def test_labels_missing_from_the_dataset(saved, tmp_path):
    path, _ = saved
    folder = tmp_path / "nolabels"
    write_cifar_folder(folder, n=8, train_batches=1)
    for name in ("test_batch", "data_batch_1"):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": np.zeros((8, 3072), np.uint8)}, f, protocol=2)
    with refused("data_dir", str(folder), problem="labels"):
        probe.run_probe(path, dataset="cifar10", data_dir=folder, epochs=1, progress=False)


def test_a_model_for_other_images(tmp_path):
    path = tmp_path / "small.keras"
    build_vit(image_shape=(16, 16, 3), patch_size=4, seed=0, **TINY_VIT).save(path)
    data = write_cifar_folder(tmp_path / "cifar", n=8, train_batches=1)
    with refused("dataset", "cifar10", problem="takes (16, 16, 3)"):
        probe.run_probe(path, dataset="cifar10", data_dir=data, epochs=1, progress=False)
