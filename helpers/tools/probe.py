"""``python -m helpers probe``: a linear probe of an encoder's frozen features and baselines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .._checks import SettingError, SettingTypeError, check_positive_int, check_positive_number
from .._io import write_atomic, write_csv
from ..data import DatasetError, load_dataset
from ..recipes import learns
from .evaluation import load_model

PROBE_CSV = "probe.csv"
PROBE_JSON = "probe.json"
CONFUSION_FIGURE = "confusion.png"
FEATURES = ("encoder", "random_encoder", "pixels")  # the probe's inputs, in table order


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): row = true class, column = predicted class."""
    y_true, y_pred = _labels(y_true, n_classes, "y_true"), _labels(y_pred, n_classes, "y_pred")
    if y_true.shape != y_pred.shape:
        raise SettingError("y_pred", y_pred.shape, f"must have the shape of y_true {y_true.shape}")
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def _labels(y, n_classes, name) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise SettingError(name, y.shape, "must be a 1-D array of integer class labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise SettingTypeError(name, str(y.dtype), "must be a 1-D array of integer class labels")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        span = (int(y.min()), int(y.max()))
        raise SettingError(name, span, f"labels (min, max) must lie in [0, {n_classes})")
    return y.astype(np.int64)


def probe_metrics(matrix: np.ndarray) -> dict:
    """``accuracy``, ``macro_f1`` (classes that occur) and Cohen's ``kappa`` (0 if p_e = 1)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.sum()
    if n == 0:
        raise SettingError("matrix", matrix.shape, "the confusion matrix is empty: no test image")
    tp = np.diag(matrix)
    true_n, pred_n = matrix.sum(axis=1), matrix.sum(axis=0)
    seen = (true_n + pred_n) > 0
    f1 = 2 * tp[seen] / (true_n[seen] + pred_n[seen])
    p_o = tp.sum() / n
    p_e = float((true_n * pred_n).sum() / n**2)
    kappa = 0.0 if p_e >= 1 else (p_o - p_e) / (1 - p_e)
    return {"accuracy": float(p_o), "macro_f1": float(f1.mean()), "kappa": float(kappa)}


def train_probe(x_train, y_train, n_classes: int, *, epochs=100, batch_size=128, lr=1e-2, seed=0):
    """A linear probe (BatchNorm -> Dense) trained with Adam on features ``x_train`` (N, D)."""
    import keras  # lazy: Keras is heavy

    check_positive_int(epochs, "epochs")
    check_positive_number(lr, "lr")
    keras.utils.set_random_seed(check_positive_int(seed, "seed", minimum=0))
    inputs = keras.Input((x_train.shape[1],), name="features")
    x = keras.layers.BatchNormalization(center=False, scale=False, name="probe_bn")(inputs)
    logits = keras.layers.Dense(n_classes, name="probe_dense")(x)
    probe = keras.Model(inputs, logits, name="linear_probe")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    probe.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    probe.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    return probe


def score_features(
    x_train, y_train, x_test, y_test, n_classes: int, **kwargs
) -> tuple[dict, np.ndarray]:
    """Train the probe on ``x_train`` and score it on ``x_test``: (metrics, confusion matrix)."""
    probe = train_probe(x_train, y_train, n_classes, **kwargs)
    predicted = np.argmax(probe.predict(x_test, batch_size=1024, verbose=0), axis=1)
    matrix = confusion_matrix(y_test, predicted, n_classes)
    return probe_metrics(matrix), matrix


def encoder_of(model):
    """``model`` (a predictor or a path) if it learns, an encoder to probe; else a SettingError."""
    if not learns(model):
        allowed = "allowed: a .keras model saved by train (vit, mae, cnn, vit_cnn, aae)"
        name = getattr(model, "name", model)
        raise SettingError("model", name, f"has no encoder to probe; {allowed}")
    return model


def random_copy(model, seed: int = 0):
    """The same architecture with fresh random weights (the probe's second baseline)."""
    import keras  # lazy: Keras is heavy

    keras.utils.set_random_seed(seed)
    return type(model).from_config(model.get_config())


def labelled_split(ds, image_shape=None, dataset: str | None = None) -> dict:
    """The probe's data from a :class:`helpers.data.Dataset`: training and validation images train
    it, the test images score it; SettingError for one class or images not of ``image_shape``."""
    name = dataset or ds.name
    x_train = np.concatenate([ds.x_train, ds.x_val])
    y_train = np.concatenate([ds.y_train, ds.y_val]).astype(np.int64)
    n_classes = len(ds.class_names)
    if n_classes < 2 or len(np.unique(y_train)) < 2:
        problem = "needs labels of at least two classes in its training images"
        raise SettingError("dataset", name, problem)
    if image_shape is not None and tuple(x_train.shape[1:]) != tuple(image_shape):
        problem = f"has images of shape {x_train.shape[1:]}; this model takes {tuple(image_shape)}"
        raise SettingError("dataset", name, problem)
    y_test = np.asarray(ds.y_test).astype(np.int64)
    chance = round(float(np.bincount(y_test).max() / len(y_test)), 4)
    split = {"x_train": x_train, "y_train": y_train, "x_test": ds.x_test, "y_test": y_test}
    return split | {"n_classes": n_classes, "chance_accuracy": chance}


def pixel_features(images: np.ndarray) -> np.ndarray:
    """The raw pixels of each image as one vector (the probe's first baseline)."""
    return images.reshape(len(images), -1)


def probe_source(
    name: str, features_of, split: dict, *, epochs=100, batch_size=128, lr=1e-2, seed=0
) -> tuple[dict, np.ndarray]:
    """Probe ``features_of`` on ``split``: (row: features, dim, metrics, seconds; confusion)."""
    start = time.perf_counter()
    n = len(split["x_train"])
    features = features_of(np.concatenate([split["x_train"], split["x_test"]]))
    kwargs = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    train, test = (features[:n], split["y_train"]), (features[n:], split["y_test"])
    metrics, matrix = score_features(*train, *test, split["n_classes"], **kwargs)
    row = {"features": name, "dim": int(features.shape[1])}
    row |= {k: round(v, 4) for k, v in metrics.items()}
    return row | {"seconds": round(time.perf_counter() - start, 2)}, matrix


def run_probe(
    model_path,
    *,
    dataset: str = "cifar10",
    data_dir=None,
    n_train: int | None = None,
    n_test: int | None = None,
    epochs: int = 100,
    batch_size: int = 128,
    lr: float = 1e-2,
    seed: int = 0,
    progress: bool = True,
    grayscale: bool = False,
) -> dict:
    """Probe the encoder and both baselines: ``{"settings", "rows", "confusion", "class_names"}``"""
    encoder_of(model_path)  # a classical fill's name: refused before the data is read
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    check_positive_number(lr, "lr")
    model = encoder_of(load_model(model_path))
    data = None if data_dir is None else str(data_dir)
    sizes = dict(n_train=n_train, n_test=n_test, seed=seed, grayscale=grayscale)
    try:
        ds = load_dataset(dataset, data_dir=data_dir, **sizes)
    except DatasetError as exc:  # missing, corrupt, or without labels
        raise SettingError("data_dir", data, str(exc)) from None
    split = labelled_split(ds, model.image_shape, dataset)
    sources = {"encoder": model.features, "random_encoder": random_copy(model, seed).features}
    sources["pixels"] = pixel_features
    kwargs = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    bar = tqdm(FEATURES, desc="probe", disable=not progress)
    probed = {name: probe_source(name, sources[name], split, **kwargs) for name in bar}
    rows = [row for row, _ in probed.values()]
    confusion = {name: matrix.tolist() for name, (_, matrix) in probed.items()}
    settings = {"model": str(model_path), "model_name": model.name, "dataset": dataset}
    settings |= {"data_dir": data, "grayscale": bool(grayscale), "n_train": len(split["x_train"])}
    settings |= {"n_test": len(split["x_test"]), "n_classes": split["n_classes"], **kwargs}
    settings["chance_accuracy"] = split["chance_accuracy"]
    return dict(settings=settings, rows=rows, confusion=confusion, class_names=ds.class_names)


def write_probe(output, result: dict) -> list[Path]:
    """Write ``probe.csv``, ``probe.json`` and ``confusion.png`` (the encoder's) atomically."""
    from ..plots import plot_confusion, save_fig  # lazy: pulls in matplotlib

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = [output / PROBE_CSV, output / PROBE_JSON, output / CONFUSION_FIGURE]
    write_csv(paths[0], result["rows"])
    write_atomic(paths[1], json.dumps(result, indent=2) + "\n")
    title = f"linear probe on {result['settings']['model_name']}'s encoder"
    matrix = np.asarray(result["confusion"]["encoder"])
    fig = plot_confusion(matrix, result["class_names"], title=title)
    save_fig(fig, CONFUSION_FIGURE, folder=output)
    return paths


def format_probe(result: dict) -> str:
    """The rows as a table, with the chance level."""
    s = result["settings"]
    lines = [
        f"linear probe: {s['model_name']} ({s['model']}), {s['dataset']}: {s['n_train']} "
        f"training / {s['n_test']} test images, {s['n_classes']} classes, chance "
        f"{s['chance_accuracy']:.3f}",
        f"{'features':<16}{'dim':>6}{'accuracy':>10}{'macro-F1':>10}{'kappa':>8}{'s':>7}",
    ]
    for r in result["rows"]:
        scores = f"{r['accuracy']:>10.3f}{r['macro_f1']:>10.3f}{r['kappa']:>8.3f}"
        lines.append(f"{r['features']:<16}{r['dim']:>6}{scores}{r['seconds']:>7.1f}")
    return "\n".join(lines)
