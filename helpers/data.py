"""Datasets: CIFAR-10 (python-batch format) and the embedded offline ``sample`` dataset.

Both give float32 images in [0, 1], channels last, with integer labels, split into training,
validation and test sets by :func:`load_dataset`.

- ``cifar10``: the standard ``cifar-10-batches-py`` folder (``data_batch_1..N``, ``test_batch``,
  ``batches.meta``), read from ``data_dir``, else from the Keras cache, else downloaded through
  Keras. Batch files are unpickled with an allow-list (NumPy arrays and plain containers only).
- ``sample``: 32x32 crops of the photographs that scikit-image ships, at several scales; test
  crops come from a strip of every photograph that no training crop touches. Deterministic for a
  seed, needs no network. Labels name the source photograph.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._checks import SettingError, check_choice, check_fraction, check_positive_int

DATASETS = ("sample", "cifar10")
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_DIRNAME = "cifar-10-batches-py"
IMAGE_SIZE = 32


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt or not in the expected format.

    ``param`` and ``value``: the argument refused (``data_dir``, or the ``path`` of a batch file
    that is corrupt or holds something else), as in :class:`helpers._checks.SettingError`; None
    when no argument is to blame (CIFAR-10 is not cached and cannot be downloaded)."""

    def __init__(self, message: str, param: str | None = None, value=None):
        super().__init__(message)
        self.param, self.value, self.problem = param, value, message


@dataclass
class Dataset:
    """Images (N, H, W, C) float32 in [0, 1] and integer labels for each split."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> str:
        return (
            f"{self.name}: train {self.x_train.shape}, val {self.x_val.shape}, test "
            f"{self.x_test.shape}, "
            f"{len(self.class_names)} classes, {self.x_train.dtype}, "
            f"range [{self.x_train.min():.2f}, {self.x_train.max():.2f}]"
        )


# --------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),  # bytes in files written by Python 3 with pickle protocol 2
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only builds NumPy arrays and plain containers."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed in a CIFAR-10 batch file "
                f"(allowed: NumPy arrays, dicts, lists, bytes, ints)"
            )
        if module == "numpy.core.multiarray":  # files written with NumPy 1
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _unpickle(path: Path):
    try:
        raw = path.read_bytes()
        return _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as exc:
        raise DatasetError(
            f"CIFAR-10 file {path.name} is corrupt or not a python-batch file: {exc}",
            "path",
            str(path),
        ) from exc


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """Read one python-batch file: uint8 images (N, 32, 32, 3) and int64 labels (N,)."""
    path = Path(path)
    d = _unpickle(path)
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise DatasetError(
            f"CIFAR-10 file {path.name} must hold a dict with b'data' and b'labels', got {keys}",
            "path",
            str(path),
        )
    data, labels = d[b"data"], d[b"labels"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
    ):
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DatasetError(
            f"CIFAR-10 file {path.name}: b'data' must be uint8 of shape (N, 3072), got {shape} "
            f"{dtype}",
            "path",
            str(path),
        )
    labels = np.asarray(labels)
    if (
        labels.shape != (data.shape[0],)
        or labels.dtype.kind not in "iu"
        or (labels.size and (labels.min() < 0 or labels.max() > 9))
    ):
        raise DatasetError(
            f"CIFAR-10 file {path.name}: b'labels' must be {data.shape[0]} integers in 0..9, got "
            f"shape {labels.shape}",
            "path",
            str(path),
        )
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def _cifar_names(folder: Path) -> list[str]:
    meta = folder / "batches.meta"
    if not meta.exists():
        return [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ]
    d = _unpickle(meta)
    names = d.get(b"label_names") if isinstance(d, dict) else None
    if not isinstance(names, list):
        raise DatasetError(
            f"CIFAR-10 file {meta.name} must hold b'label_names', a list of names",
            "path",
            str(meta),
        )
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded datasets (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _has_batches(folder: Path) -> bool:
    return folder.is_dir() and (folder / "test_batch").exists() and any(folder.glob("data_batch_*"))


def find_cifar10(data_dir=None, download: bool = True) -> Path:
    """Locate the ``cifar-10-batches-py`` folder: ``data_dir``, the Keras cache, or a download."""
    if data_dir:
        folder = Path(data_dir).expanduser()
        for candidate in (folder, folder / CIFAR_DIRNAME):
            if _has_batches(candidate):
                return candidate
        raise DatasetError(
            f"data_dir={str(data_dir)!r} holds no CIFAR-10 python batches: expected "
            "data_batch_1..N and "
            f"test_batch (and batches.meta) in it or in its {CIFAR_DIRNAME}/ subfolder",
            "data_dir",
            str(data_dir),
        )
    cached = keras_cache_dir() / CIFAR_DIRNAME
    if _has_batches(cached):
        return cached
    hint = (
        f"Put the python-batch files (data_batch_1..5, test_batch, batches.meta) into {cached} "
        "or a folder of your choice and pass data_dir=..., or use dataset='sample' (embedded, "
        "offline)."
    )
    if not download:
        raise DatasetError(
            f"CIFAR-10 is not in the Keras cache ({cached}) and download=False. {hint}"
        )
    try:
        import keras  # lazy: Keras is heavy

        path = keras.utils.get_file(fname="cifar-10-python.tar.gz", origin=CIFAR_URL, extract=True)
    except Exception as exc:  # no network, refused, interrupted
        raise DatasetError(
            f"CIFAR-10 could not be downloaded ({type(exc).__name__}: {exc}). {hint}"
        ) from exc
    for candidate in (Path(path), Path(path) / CIFAR_DIRNAME, cached):
        if _has_batches(candidate):
            return candidate
    raise DatasetError(f"CIFAR-10 download finished but no batches were found near {path}. {hint}")


def load_cifar10(data_dir=None, download: bool = True):
    """Read all training batches and ``test_batch``: ((x_train, y_train), (x_test, y_test), names).

    Images are uint8 (N, 32, 32, 3); use :func:`load_dataset` for float32 splits.
    """
    folder = find_cifar10(data_dir, download=download)
    batches = sorted(folder.glob("data_batch_*"), key=lambda p: (len(p.name), p.name))
    train = [read_cifar_batch(p) for p in batches]
    x_test, y_test = read_cifar_batch(folder / "test_batch")
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), (x_test, y_test), _cifar_names(folder)


# --------------------------------------------------------------------------------------------
# Embedded sample dataset
# --------------------------------------------------------------------------------------------
SAMPLE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
)
SAMPLE_SCALES = (1.0, 0.5, 1.0 / 3.0)  # crops cover 32, 64 and 96 pixels of the photograph
TEST_STRIP = 0.25  # right-most fraction of every photograph's columns reserved for test crops
GAP = 8  # pixels of the photograph left unused between the training and test regions


def _photo(name: str) -> np.ndarray:
    import skimage.data  # lazy: slow to import

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    return (img.astype(np.float32) / 255.0) if img.dtype == np.uint8 else img.astype(np.float32)


MIN_STD = 0.02  # crops flatter than this (saturated sky, black background) are drawn again


def _crops(img: np.ndarray, x_lo: int, x_hi: int, n: int, rng: np.random.Generator):
    """``n`` random 32x32 crops with columns in [x_lo, x_hi) of ``img`` and their first columns.

    Flat crops (pixel standard deviation below ``MIN_STD``) are rejected and drawn again.
    """
    h = img.shape[0]
    kept = [np.empty((0, IMAGE_SIZE, IMAGE_SIZE, img.shape[2]), dtype=img.dtype)]
    cols = [np.empty(0, dtype=np.int64)]
    while sum(len(c) for c in cols) < n:
        m = 2 * n + 8
        ys = rng.integers(0, h - IMAGE_SIZE + 1, size=m)
        xs = rng.integers(x_lo, x_hi - IMAGE_SIZE + 1, size=m)
        idx_y = ys[:, None] + np.arange(IMAGE_SIZE)[None, :]
        idx_x = xs[:, None] + np.arange(IMAGE_SIZE)[None, :]
        crops = img[idx_y[:, :, None], idx_x[:, None, :]]
        ok = crops.std(axis=(1, 2, 3)) >= MIN_STD
        kept.append(crops[ok])
        cols.append(xs[ok])
    return np.concatenate(kept)[:n], np.concatenate(cols)[:n]


def make_sample_dataset(
    n_train: int = 5000, n_test: int = 1000, seed: int = 0, return_meta: bool = False
):
    """Build the embedded dataset: ((x_train, y_train), (x_test, y_test), names), float32 in [0, 1].

    With ``return_meta`` a fourth item gives, for the train and test crops, their place in the
    photograph's own pixels: arrays (N, 4) of photo index, first column, last column + 1, scale.

    Each photograph is split at ``x_split = (1 - TEST_STRIP) * width``: training crops lie left of
    ``x_split - GAP``, test crops right of ``x_split``, at every scale (the anti-aliasing blur of a
    downscale reaches a few pixels, well inside the gap). Crops are spread evenly over
    photographs and scales.
    """
    from skimage.transform import rescale  # lazy: slow to import

    n_train = check_positive_int(n_train, "n_train")
    n_test = check_positive_int(n_test, "n_test")
    rng = np.random.default_rng(seed)
    cells = [(p, s) for p in range(len(SAMPLE_PHOTOS)) for s in SAMPLE_SCALES]
    train_counts = np.bincount(
        rng.permutation(np.arange(n_train) % len(cells)), minlength=len(cells)
    )
    test_counts = np.bincount(rng.permutation(np.arange(n_test) % len(cells)), minlength=len(cells))
    xs_train, ys_train, xs_test, ys_test, meta_train, meta_test = [], [], [], [], [], []
    for photo_id, name in enumerate(SAMPLE_PHOTOS):
        photo = _photo(name)
        split = int(round(photo.shape[1] * (1 - TEST_STRIP)))
        for scale in SAMPLE_SCALES:
            cell = cells.index((photo_id, scale))
            img = (
                photo
                if scale == 1.0
                else rescale(photo, scale, anti_aliasing=True, channel_axis=-1)
            )
            img = np.clip(img, 0.0, 1.0).astype(np.float32)
            train_hi = int(np.floor((split - GAP) * scale))
            test_lo = int(np.ceil(split * scale))
            for xs, metas, lo, hi, count in (
                (xs_train, meta_train, 0, train_hi, train_counts[cell]),
                (xs_test, meta_test, test_lo, img.shape[1], test_counts[cell]),
            ):
                crops, cols = _crops(img, lo, hi, count, rng)
                xs.append(crops)
                metas.append(
                    np.stack(
                        [
                            np.full(count, photo_id),
                            cols / scale,
                            (cols + IMAGE_SIZE) / scale,
                            np.full(count, scale),
                        ],
                        axis=1,
                    )
                )
            ys_train.append(np.full(train_counts[cell], photo_id, dtype=np.int64))
            ys_test.append(np.full(test_counts[cell], photo_id, dtype=np.int64))
    order_train = rng.permutation(n_train)
    order_test = rng.permutation(n_test)
    x_train = np.concatenate(xs_train)[order_train]
    y_train = np.concatenate(ys_train)[order_train]
    x_test = np.concatenate(xs_test)[order_test]
    y_test = np.concatenate(ys_test)[order_test]
    out = ((x_train, y_train), (x_test, y_test), list(SAMPLE_PHOTOS))
    if return_meta:
        return out + (
            (np.concatenate(meta_train)[order_train], np.concatenate(meta_test)[order_test]),
        )
    return out


# --------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------
def _subset(x, y, n, rng, name):
    if n is None or n == 0:
        return x, y
    n = check_positive_int(n, name)
    if n > len(x):
        raise SettingError(name, n, f"is more than the {len(x)} images available")
    idx = np.sort(rng.choice(len(x), size=n, replace=False))
    return x[idx], y[idx]


SPLIT_STREAMS = {
    "train": 0,
    "test": 1,
    "val": 2,
}  # one random stream per split, derived from the seed


def _split_rng(seed: int, split: str) -> np.random.Generator:
    """The generator for one split: subsets and the validation draw never shift one another."""
    return np.random.default_rng([seed, SPLIT_STREAMS[split]])


def load_dataset(
    name: str = "sample",
    *,
    data_dir=None,
    n_train: int | None = None,
    n_test: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = True,
    grayscale: bool = False,
) -> Dataset:
    """Load ``name`` (``sample`` or ``cifar10``) as float32 splits in [0, 1]; ``grayscale``: one
    channel, ``skimage.color.rgb2gray`` of the colour images (:func:`to_gray`).

    ``n_train``/``n_test`` take seeded random subsets (None or 0: all); ``val_fraction`` of the
    training images (after subsetting) become the validation set. Each split draws from its own
    generator, so the test images depend only on (name, n_test, seed) and the training and
    validation images only on (name, n_train, val_fraction, seed).
    """
    seed = check_positive_int(seed, "seed", minimum=0)
    check_choice(name, "dataset", DATASETS)
    check_fraction(val_fraction, "val_fraction")
    if name == "sample":
        (x_tr, y_tr), (x_te, y_te), names = make_sample_dataset(seed=seed)
        source = "embedded: crops of scikit-image photographs"
        scale = 1.0
    else:
        (x_tr, y_tr), (x_te, y_te), names = load_cifar10(data_dir, download=download)
        source = "CIFAR-10 python batches"
        scale = 1.0 / 255.0
    x_tr, y_tr = _subset(x_tr, y_tr, n_train, _split_rng(seed, "train"), "n_train")
    x_te, y_te = _subset(x_te, y_te, n_test, _split_rng(seed, "test"), "n_test")
    n_val = int(round(len(x_tr) * val_fraction))
    perm = _split_rng(seed, "val").permutation(len(x_tr))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    def as_float(x):
        return (
            (x.astype(np.float32) * np.float32(scale))
            if scale != 1.0
            else x.astype(np.float32, copy=False)
        )

    def convert(x):
        return to_gray(as_float(x)) if grayscale else as_float(x)

    return Dataset(
        name=name,
        x_train=convert(x_tr[train_idx]),
        y_train=y_tr[train_idx],
        x_val=convert(x_tr[val_idx]),
        y_val=y_tr[val_idx],
        x_test=convert(x_te),
        y_test=y_te,
        class_names=names,
        source=source + (", grayscale (skimage.color.rgb2gray)" if grayscale else ""),
    )


def to_gray(images: np.ndarray) -> np.ndarray:
    """Colour images (N, H, W, 3) in [0, 1] -> one channel (N, H, W, 1) float32,
    ``skimage.color.rgb2gray`` (0.2125 R + 0.7154 G + 0.0721 B)."""
    from skimage.color import rgb2gray  # lazy: slow to import

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise SettingError("images", images.shape, "must be (N, H, W, 3) colour images")
    return rgb2gray(images)[..., None].astype(np.float32)
