import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from _refused import refused

from helpers import data
from helpers._checks import SettingError, SettingTypeError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-batches-py"


def _write_batch(path, n, seed, protocol=2):
    rng = np.random.default_rng(seed)
    d = {
        b"batch_label": b"test",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=protocol)
    return d


@pytest.fixture
def cifar_dir(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i, n in enumerate([7, 5, 9], start=1):  # any number of batches and images per batch
        _write_batch(folder / f"data_batch_{i}", n, seed=i, protocol=2 if i < 3 else 4)
    _write_batch(folder / "test_batch", 6, seed=99)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)]}, f, protocol=2)
    return folder


def test_reads_any_number_of_batches(cifar_dir):
    (x, y), (xt, yt), names = data.load_cifar10(cifar_dir, download=False)
    assert x.shape == (21, 32, 32, 3) and x.dtype == np.uint8
    assert xt.shape == (6, 32, 32, 3) and yt.shape == (6,)
    assert names[3] == "class3"


def test_pixel_layout_is_rgb_planes(cifar_dir):
    raw = pickle.load(open(cifar_dir / "data_batch_1", "rb"), encoding="bytes")
    (x, y), _, _ = data.load_cifar10(cifar_dir, download=False)
    row = raw[b"data"][0]
    assert x[0, 0, 0, 0] == row[0] and x[0, 0, 0, 1] == row[1024] and x[0, 0, 0, 2] == row[2048]
    assert x[0, 1, 2, 0] == row[32 + 2]
    assert y[0] == raw[b"labels"][0]


def test_load_dataset_splits_and_scales(cifar_dir):
    ds = data.load_dataset("cifar10", data_dir=cifar_dir, val_fraction=0.2, seed=0)
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() <= 1.0 and ds.x_train.min() >= 0.0
    assert len(ds.x_train) + len(ds.x_val) == 21 and len(ds.x_val) == 4
    assert ds.x_test.shape == (6, 32, 32, 3)
    # validation images are training images, never test images
    (x, _), _, _ = data.load_cifar10(cifar_dir, download=False)
    flat = {bytes((v * 255).round().astype(np.uint8)) for v in ds.x_val}
    assert flat <= {bytes(v) for v in x}


def test_data_dir_may_be_the_parent_folder(cifar_dir):
    assert data.find_cifar10(cifar_dir.parent, download=False) == cifar_dir


def test_keras_cache_is_used(cifar_dir, monkeypatch, tmp_path):
    home = tmp_path / "keras_home"
    (home / "datasets").mkdir(parents=True)
    os.symlink(cifar_dir, home / "datasets" / "cifar-10-batches-py")
    monkeypatch.setenv("KERAS_HOME", str(home))
    assert data.find_cifar10(None, download=False) == home / "datasets" / "cifar-10-batches-py"


def test_missing_dataset_offline_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    with pytest.raises(data.DatasetError, match=r"data_dir=.*dataset='sample'"):
        data.load_dataset("cifar10", download=False)

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    import keras

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with pytest.raises(
        data.DatasetError,
        match=r"could not be downloaded \(OSError: network unreachable\).*dataset='sample'",
    ):
        data.load_dataset("cifar10")


def test_wrong_data_dir_is_named(tmp_path):
    with refused("data_dir", str(tmp_path), data.DatasetError):
        data.load_dataset("cifar10", data_dir=tmp_path)


def test_truncated_batch_is_rejected(cifar_dir):
    raw = (cifar_dir / "data_batch_2").read_bytes()
    (cifar_dir / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with refused("path", str(cifar_dir / "data_batch_2"), data.DatasetError, "is corrupt"):
        data.load_cifar10(cifar_dir, download=False)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_tampered_batch_with_foreign_objects_is_rejected(cifar_dir):
    with open(cifar_dir / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f, protocol=2)
    with refused("path", str(cifar_dir / "data_batch_1"), data.DatasetError, "is corrupt") as info:
        data.load_cifar10(cifar_dir, download=False)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)  # refused, never called
    assert "system is not allowed" in str(info.value.__cause__)


@pytest.mark.parametrize(
    "payload, part",
    [
        ([1, 2, 3], "must hold a dict"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "b'data'"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "b'data'"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "b'labels'"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, "b'labels'"),
    ],
)
def test_batches_with_wrong_content_are_rejected(cifar_dir, payload, part):
    with open(cifar_dir / "test_batch", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    with refused("path", str(cifar_dir / "test_batch"), data.DatasetError, part):
        data.load_cifar10(cifar_dir, download=False)


@pytest.mark.skipif(
    not SHARED.exists(), reason="the shared CIFAR-10 subset is not beside the project"
)
def test_shared_subset():
    ds = data.load_dataset("cifar10", data_dir=SHARED, val_fraction=0.0)
    assert ds.x_train.shape == (3044, 32, 32, 3) and ds.x_test.shape == (761, 32, 32, 3)
    assert len(ds.class_names) == 10 and set(np.unique(ds.y_train)) <= set(range(10))


def test_sample_dataset_sizes_and_range():
    (x, y), (xt, yt), names = data.make_sample_dataset()
    assert x.shape == (5000, 32, 32, 3) and xt.shape == (1000, 32, 32, 3)
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(y)) == set(range(len(names))) == set(np.unique(yt))
    assert x.std() > 0.1  # real picture content
    assert x.std(axis=(1, 2, 3)).min() >= data.MIN_STD  # no flat crops


def test_sample_dataset_is_deterministic_for_a_seed():
    a = data.make_sample_dataset(n_train=50, n_test=20, seed=3)
    b = data.make_sample_dataset(n_train=50, n_test=20, seed=3)
    c = data.make_sample_dataset(n_train=50, n_test=20, seed=4)
    assert np.array_equal(a[0][0], b[0][0]) and np.array_equal(a[1][0], b[1][0])
    assert not np.array_equal(a[0][0], c[0][0])


def test_sample_test_crops_never_overlap_training_crops():
    _, _, names, (meta_train, meta_test) = data.make_sample_dataset(return_meta=True)
    for photo in range(len(names)):
        train = meta_train[meta_train[:, 0] == photo]
        test = meta_test[meta_test[:, 0] == photo]
        assert len(train) and len(test)
        # columns in the photograph's own pixels: every training crop ends before any test crop
        # starts
        assert train[:, 2].max() + 4 <= test[:, 1].min()
        # same domain: every scale appears on both sides
        assert set(train[:, 3]) == set(test[:, 3]) == set(data.SAMPLE_SCALES)


def test_sample_test_images_are_not_training_images():
    (x, _), (xt, _), _ = data.make_sample_dataset(n_train=5000, n_test=1000)
    train = {bytes(v) for v in (x * 255).round().astype(np.uint8)}
    assert not any(bytes(v) in train for v in (xt * 255).round().astype(np.uint8))


def test_load_dataset_sample_subsets():
    ds = data.load_dataset("sample", n_train=200, n_test=50, val_fraction=0.1, seed=1)
    assert (
        ds.x_train.shape == (180, 32, 32, 3)
        and ds.x_val.shape == (20, 32, 32, 3)
        and ds.x_test.shape == (50, 32, 32, 3)
    )
    assert ds.image_shape == (32, 32, 3)
    assert "sample" in ds.summary()


@pytest.mark.parametrize(
    "kwargs, param, value, exc",
    [
        ({"name": "mnist"}, "dataset", "mnist", SettingError),
        ({"val_fraction": 1.0}, "val_fraction", 1.0, SettingError),
        ({"n_train": -3}, "n_train", -3, SettingError),
        ({"n_train": 10**6}, "n_train", 10**6, SettingError),
        ({"n_test": 2.5}, "n_test", 2.5, SettingTypeError),
        ({"seed": -1}, "seed", -1, SettingError),
    ],
)
def test_bad_arguments_are_named(kwargs, param, value, exc):
    with refused(param, value, exc):
        data.load_dataset(**kwargs)


def test_test_images_do_not_depend_on_n_train():
    small = data.load_dataset("sample", n_train=200, n_test=50, seed=0)
    large = data.load_dataset("sample", n_train=400, n_test=50, seed=0)
    np.testing.assert_array_equal(small.x_test, large.x_test)
    np.testing.assert_array_equal(small.y_test, large.y_test)
    assert len(small.x_train) != len(large.x_train)


def test_training_and_validation_images_do_not_depend_on_n_test():
    a = data.load_dataset("sample", n_train=200, n_test=50, seed=0)
    b = data.load_dataset("sample", n_train=200, n_test=80, seed=0)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert len(a.x_test) != len(b.x_test)


def test_the_seed_changes_the_test_subset():
    a = data.load_dataset("sample", n_train=100, n_test=50, seed=0)
    b = data.load_dataset("sample", n_train=100, n_test=50, seed=1)
    assert not np.array_equal(a.x_test, b.x_test)
