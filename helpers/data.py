"""Datasets as float32 images in [0, 1] with integer labels (:func:`load_dataset`): CIFAR-10
(python batches from ``data_dir``, the Keras cache or a download) and the offline ``sample``, 32x32
crops of scikit-image's photographs."""

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
    """A dataset is missing, corrupt or not in the expected format; ``param`` and ``value``: the
    argument to blame (``data_dir`` or a batch file's ``path``), or None."""

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
            f"{self.x_test.shape}, {len(self.class_names)} classes, {self.x_train.dtype}, "
            f"range [{self.x_train.min():.2f}, {self.x_train.max():.2f}]"
        )


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


def _bad_file(path: Path, problem: str) -> DatasetError:
    return DatasetError(f"CIFAR-10 file {path.name}{problem}", "path", str(path))


def _unpickle(path: Path):
    errors = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError)
    try:
        return _BatchUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (*errors, IndexError, KeyError) as exc:
        raise _bad_file(path, f" is corrupt or not a python-batch file: {exc}") from exc


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """Read one python-batch file: uint8 images (N, 32, 32, 3) and int64 labels (N,)."""
    path = Path(path)
    d = _unpickle(path)
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise _bad_file(path, f" must hold a dict with b'data' and b'labels', got {keys}")
    data = d[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (3072,):
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise _bad_file(path, f": b'data' must be uint8 of shape (N, 3072), got {shape} {dtype}")
    labels, n = np.asarray(d[b"labels"]), data.shape[0]
    bad = labels.shape != (n,) or labels.dtype.kind not in "iu"
    if bad or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise _bad_file(path, f": b'labels' must be {n} integers in 0..9, got shape {labels.shape}")
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def _cifar_names(folder: Path) -> list[str]:
    meta = folder / "batches.meta"
    if not meta.exists():
        return "airplane automobile bird cat deer dog frog horse ship truck".split()
    d = _unpickle(meta)
    names = d.get(b"label_names") if isinstance(d, dict) else None
    if not isinstance(names, list):
        raise _bad_file(meta, " must hold b'label_names', a list of names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded datasets (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def _with_batches(*folders: Path) -> Path | None:
    """The first of ``folders`` that holds ``test_batch`` and ``data_batch_*`` files."""
    for f in folders:
        if f.is_dir() and (f / "test_batch").exists() and any(f.glob("data_batch_*")):
            return f
    return None


def find_cifar10(data_dir=None, download: bool = True) -> Path:
    """Locate the ``cifar-10-batches-py`` folder: ``data_dir``, the Keras cache, or a download."""
    if data_dir:
        folder = Path(data_dir).expanduser()
        if found := _with_batches(folder, folder / CIFAR_DIRNAME):
            return found
        raise DatasetError(
            f"data_dir={str(data_dir)!r} holds no CIFAR-10 python batches: expected "
            f"data_batch_1..N and test_batch (and batches.meta) in it or in its {CIFAR_DIRNAME}/ "
            "subfolder",
            "data_dir",
            str(data_dir),
        )
    cached = keras_cache_dir() / CIFAR_DIRNAME
    if _with_batches(cached):
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
    if found := _with_batches(Path(path), Path(path) / CIFAR_DIRNAME, cached):
        return found
    raise DatasetError(f"CIFAR-10 download finished but no batches were found near {path}. {hint}")


def load_cifar10(data_dir=None, download: bool = True):
    """Read all training batches and ``test_batch``: ((x_train, y_train), (x_test, y_test), names)
    with uint8 images (N, 32, 32, 3)."""
    folder = find_cifar10(data_dir, download=download)
    batches = sorted(folder.glob("data_batch_*"), key=lambda p: (len(p.name), p.name))
    train = [read_cifar_batch(p) for p in batches]
    x_test, y_test = read_cifar_batch(folder / "test_batch")
    x_train, y_train = (np.concatenate(parts) for parts in zip(*train))
    return (x_train, y_train), (x_test, y_test), _cifar_names(folder)


SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                 "hubble_deep_field")  # fmt: skip
SAMPLE_SCALES = (1.0, 0.5, 1.0 / 3.0)  # crops cover 32, 64 and 96 pixels of the photograph
TEST_STRIP = 0.25  # right-most fraction of every photograph's columns reserved for test crops
GAP = 8  # pixels of the photograph left unused between the training and test regions
MIN_STD = 0.02  # crops flatter than this (saturated sky, black background) are drawn again


def _photo(name: str) -> np.ndarray:
    import skimage.data  # lazy: slow to import

    img = getattr(skimage.data, name)()
    img = np.dstack([img] * 3) if img.ndim == 2 else img[..., :3]
    return (img.astype(np.float32) / 255.0) if img.dtype == np.uint8 else img.astype(np.float32)


def _crops(img: np.ndarray, x_lo: int, x_hi: int, n: int, rng: np.random.Generator):
    """``n`` random 32x32 crops of ``img`` with columns in [x_lo, x_hi), and their first columns;
    crops with a standard deviation below ``MIN_STD`` are drawn again."""
    kept = [np.empty((0, IMAGE_SIZE, IMAGE_SIZE, img.shape[2]), dtype=img.dtype)]
    cols = [np.empty(0, dtype=np.int64)]
    offsets = np.arange(IMAGE_SIZE)
    while sum(len(c) for c in cols) < n:
        ys = rng.integers(0, img.shape[0] - IMAGE_SIZE + 1, size=2 * n + 8)
        xs = rng.integers(x_lo, x_hi - IMAGE_SIZE + 1, size=2 * n + 8)
        crops = img[(ys[:, None] + offsets)[:, :, None], (xs[:, None] + offsets)[:, None, :]]
        ok = crops.std(axis=(1, 2, 3)) >= MIN_STD
        kept.append(crops[ok])
        cols.append(xs[ok])
    return np.concatenate(kept)[:n], np.concatenate(cols)[:n]


def make_sample_dataset(
    n_train: int = 5000, n_test: int = 1000, seed: int = 0, return_meta: bool = False
):
    """Build the embedded dataset: ((x_train, y_train), (x_test, y_test), names), float32 in [0, 1].

    Training crops lie left of ``(1 - TEST_STRIP) * width - GAP`` of every photograph, test crops
    right of ``(1 - TEST_STRIP) * width``, spread evenly over photographs and scales.

    Args:
        return_meta: add a fourth item, (train, test) arrays (N, 4) of each crop's photograph
            index, first column, last column + 1 (in the photograph's pixels) and scale.
    """
    from skimage.transform import rescale  # lazy: slow to import

    sizes = check_positive_int(n_train, "n_train"), check_positive_int(n_test, "n_test")
    rng = np.random.default_rng(seed)
    cells = [(p, s) for p in range(len(SAMPLE_PHOTOS)) for s in SAMPLE_SCALES]
    counts = [
        np.bincount(rng.permutation(np.arange(n) % len(cells)), minlength=len(cells)) for n in sizes
    ]
    parts = ([], [], []), ([], [], [])  # images, labels, meta of train and test
    for photo_id, name in enumerate(SAMPLE_PHOTOS):
        photo = _photo(name)
        split = int(round(photo.shape[1] * (1 - TEST_STRIP)))
        for scale in SAMPLE_SCALES:
            cell = cells.index((photo_id, scale))
            img = rescale(photo, scale, anti_aliasing=True, channel_axis=-1) if scale < 1 else photo
            img = np.clip(img, 0.0, 1.0).astype(np.float32)
            train_hi, test_lo = int(np.floor((split - GAP) * scale)), int(np.ceil(split * scale))
            for (xs, ys, metas), (lo, hi), count in zip(
                parts, ((0, train_hi), (test_lo, img.shape[1])), counts
            ):
                k = count[cell]
                crops, cols = _crops(img, lo, hi, k, rng)
                xs.append(crops)
                ys.append(np.full(k, photo_id, dtype=np.int64))
                ends = cols / scale, (cols + IMAGE_SIZE) / scale
                metas.append(np.stack([np.full(k, photo_id), *ends, np.full(k, scale)], axis=1))
    orders = [rng.permutation(n) for n in sizes]
    (x_tr, y_tr, m_tr), (x_te, y_te, m_te) = (
        [np.concatenate(a)[order] for a in part] for part, order in zip(parts, orders)
    )
    out = ((x_tr, y_tr), (x_te, y_te), list(SAMPLE_PHOTOS))
    return out + ((m_tr, m_te),) if return_meta else out


def _subset(x, y, n, rng, name):
    if n is None or n == 0:
        return x, y
    n = check_positive_int(n, name)
    if n > len(x):
        raise SettingError(name, n, f"is more than the {len(x)} images available")
    idx = np.sort(rng.choice(len(x), size=n, replace=False))
    return x[idx], y[idx]


SPLIT_STREAMS = {"train": 0, "test": 1, "val": 2}  # one random stream per split of a seed


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
    """Load ``name`` (``sample`` or ``cifar10``) as float32 splits in [0, 1].

    Args:
        n_train, n_test: sizes of seeded random subsets (None or 0: all).
        val_fraction: share of the (subset) training images that become the validation set.
        seed: each split draws from its own generator, so the test images depend only on
            (name, n_test, seed).
        grayscale: one channel, :func:`to_gray` of the colour images.
    """
    seed = check_positive_int(seed, "seed", minimum=0)
    check_choice(name, "dataset", DATASETS)
    check_fraction(val_fraction, "val_fraction")
    if name == "sample":
        (x_tr, y_tr), (x_te, y_te), names = make_sample_dataset(seed=seed)
        source = "embedded: crops of scikit-image photographs"
    else:
        (x_tr, y_tr), (x_te, y_te), names = load_cifar10(data_dir, download=download)
        source = "CIFAR-10 python batches"
    rngs = {split: np.random.default_rng([seed, i]) for split, i in SPLIT_STREAMS.items()}
    x_tr, y_tr = _subset(x_tr, y_tr, n_train, rngs["train"], "n_train")
    x_te, y_te = _subset(x_te, y_te, n_test, rngs["test"], "n_test")
    n_val = int(round(len(x_tr) * val_fraction))
    perm = rngs["val"].permutation(len(x_tr))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    def convert(x):
        x = x.astype(np.float32, copy=False) * np.float32(1.0 if name == "sample" else 1.0 / 255.0)
        return to_gray(x) if grayscale else x

    (x_train, y_train), (x_val, y_val) = ((convert(x_tr[i]), y_tr[i]) for i in (train_idx, val_idx))
    source += ", grayscale (skimage.color.rgb2gray)" if grayscale else ""
    return Dataset(name, x_train, y_train, x_val, y_val, convert(x_te), y_te, names, source)


def to_gray(images: np.ndarray) -> np.ndarray:
    """Colour images (N, H, W, 3) in [0, 1] -> float32 (N, H, W, 1), ``skimage.color.rgb2gray``."""
    from skimage.color import rgb2gray  # lazy: slow to import

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise SettingError("images", images.shape, "must be (N, H, W, 3) colour images")
    return rgb2gray(images)[..., None].astype(np.float32)
