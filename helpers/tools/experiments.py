"""The strategy x ratio x predictor sweep and cross-strategy matrix, resumed from metrics.csv."""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import importlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .._checks import PRECISIONS, SettingError, check_choice, check_positive_int, check_ratio
from .._io import PROJECT_ROOT, project_folder, read_csv, write_atomic, write_csv
from ..masking import STRATEGIES
from ..recipes import LEARNED, PREDICTORS, RECIPES, learns
from .evaluation import add_training_added, cell_mask, score_predictor
from .probe import labelled_split, pixel_features, probe_source, random_copy

PLANS = ("mixed", "per_strategy", "per_cell")  # one model per predictor, + strategy, + ratio
MIXED_STRATEGIES = ("random", "rows", "columns")  # what a ``mixed`` model is trained on
RESULTS_DIR = project_folder("results")
PROBE_METRICS = ("accuracy", "macro_f1", "kappa")  # the row's columns: probe_accuracy, ...

_SMALL_VIT = {"embed_dim": 64, "depth": 2, "num_heads": 4, "mlp_dim": 128}
_SMALL_DECODER = dict(decoder_dim=32, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=64)
_SMALL_CNN = {"filters": (16, 32, 64)}
_SMALL = {"mae": {**_SMALL_VIT, **_SMALL_DECODER}, "cnn": _SMALL_CNN, "aae": _SMALL_CNN}
#: Builder sizes: ``small`` for CPU runs (the ViT's if not in _SMALL), ``reference`` the defaults.
MODEL_SIZES = {
    "small": {kind: dict(_SMALL.get(kind, _SMALL_VIT)) for kind in LEARNED},
    "reference": {kind: {} for kind in LEARNED},
}


def model_sizes(name: str) -> dict:
    """Builder keyword arguments per model kind for ``small`` or ``reference``."""
    check_choice(name, "model_size", MODEL_SIZES)
    return {kind: dict(kwargs) for kind, kwargs in MODEL_SIZES[name].items()}


def results_dir() -> Path:
    """Where runs are kept: ``results/`` at the top of the project, or ``$HELPERS_RESULTS_DIR``."""
    return Path(os.environ.get("HELPERS_RESULTS_DIR") or RESULTS_DIR)


@dataclass
class SweepConfig:
    """What a sweep runs. Defaults are the quick CPU settings."""

    strategies: tuple = STRATEGIES
    ratios: tuple = (0.3, 0.5, 0.7)
    predictors: tuple = PREDICTORS
    plan: str = "mixed"
    ratio_range: tuple = (0.3, 0.7)
    epochs: int = 5
    batch_size: int = 64
    patch_size: int = 4
    seed: int = 0
    mask_seed: int = 1234
    recipe: str = "tuned"  # helpers.recipes: model settings and the defaults of the three below
    lr: float | None = None
    lr_schedule: str | None = None
    augment: bool | None = None
    model_kwargs: dict = field(default_factory=dict)  # kind -> builder keyword arguments
    precision: str = "float32"  # dtype policy of the models trained (helpers.devices)
    devices: int = 1  # train each model data parallel on this many devices (same results)
    probe_epochs: int = 0  # > 0: the linear probe of each trained encoder, trained this many epochs

    def __post_init__(self):
        self.strategies = tuple(self.strategies)
        self.ratios = tuple(float(r) for r in self.ratios)
        self.predictors = tuple(self.predictors)
        self.ratio_range = tuple(float(r) for r in self.ratio_range)
        if not self.strategies:
            raise SettingError("strategies", (), f"must name at least one of {list(STRATEGIES)}")
        for s in self.strategies:
            check_choice(s, "strategies", STRATEGIES)
        if not self.ratios:
            need = "must hold at least one ratio strictly between 0 and 1"
            raise SettingError("ratios", (), need)
        for r in self.ratios:
            check_ratio(r, "ratios")
        if not self.predictors:
            raise SettingError("predictors", (), f"must name at least one of {list(PREDICTORS)}")
        for p in self.predictors:
            check_choice(p, "predictors", PREDICTORS)
        check_choice(self.plan, "plan", PLANS)
        check_choice(self.recipe, "recipe", RECIPES)
        if len(self.ratio_range) != 2 or not self.ratio_range[0] < self.ratio_range[1]:
            need = "must be (low, high) with low < high"
            raise SettingError("ratio_range", self.ratio_range, need)
        for r in self.ratio_range:
            check_ratio(r, "ratio_range")
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("seed", 0), ("mask_seed", 0)):
            check_positive_int(getattr(self, name), name, minimum=minimum)
        check_choice(self.precision, "precision", PRECISIONS)
        check_positive_int(self.devices, "devices")
        check_positive_int(self.probe_epochs, "probe_epochs", minimum=0)

    def training_strategy(self, strategy: str):
        """The strategy (or list of them) a model evaluated on ``strategy`` masks is trained on."""
        return list(MIXED_STRATEGIES) if self.plan == "mixed" else strategy

    def training_ratio(self, ratio: float):
        """The ratio (or range) a model evaluated at ``ratio`` is trained on."""
        return float(ratio) if self.plan == "per_cell" else self.ratio_range

    def cells(self) -> list[tuple[str, float, str]]:
        """(strategy, ratio, predictor) in run order."""
        return [(s, r, p) for s in self.strategies for r in self.ratios for p in self.predictors]


def cell_id(strategy: str, ratio: float, predictor: str) -> str:
    return f"{predictor}/{strategy}/{ratio:.2f}"


def model_id(predictor: str, strategy: str, train_ratio) -> str:
    """Folder name of a trained model: ``vit-random-0.50`` or ``vit-random-0.30to0.70``."""
    ratios = train_ratio if isinstance(train_ratio, tuple) else (train_ratio,)
    return f"{predictor}-{strategy}-" + "to".join(f"{r:.2f}" for r in ratios)


def append_row(path, row: dict) -> None:
    """Append ``row`` to the CSV at ``path`` by rewriting it atomically (new columns allowed)."""
    write_csv(path, read_csv(path) + [row])


def environment() -> dict:
    """Backend, versions and device of this process."""
    import keras  # lazy: Keras is heavy
    import skimage  # lazy: slow to import

    backend = keras.backend.backend()
    info = dict(python=platform.python_version(), platform=platform.platform())
    info |= dict(keras=keras.__version__, backend=backend, numpy=np.__version__)
    info["scikit-image"] = skimage.__version__
    try:
        if backend in ("tensorflow", "jax", "torch"):
            lib = importlib.import_module(backend)  # that backend only
            info[backend] = lib.__version__
        if backend == "tensorflow":
            gpus = lib.config.list_physical_devices("GPU")
            info["device"] = f"GPU x{len(gpus)}" if gpus else "CPU"
        elif backend == "jax":
            info["device"] = ", ".join(sorted({d.platform for d in lib.devices()}))
        elif backend == "torch":
            info["device"] = "cuda" if lib.cuda.is_available() else "cpu"
    except Exception as exc:  # a broken backend install should not stop the record
        info["device"] = f"unknown ({type(exc).__name__})"
    info["cpu_count"] = os.cpu_count()
    return info


class Run:
    """A results folder; a plain name is a folder of :func:`results_dir`."""

    def __init__(self, name_or_path):
        path = Path(name_or_path)
        self.path = path if (path.is_absolute() or len(path.parts) > 1) else results_dir() / path
        self.models = self.path / "models"
        self.metrics_path = self.path / "metrics.csv"
        self.matrix_path = self.path / "matrix.csv"
        self.probe_path = self.path / "probe.csv"
        self.loaded: dict = {}  # models loaded or trained in this process, and the scorer

    def rows(self) -> list[dict]:
        return read_csv(self.metrics_path)

    def matrix_rows(self) -> list[dict]:
        return read_csv(self.matrix_path)

    def probe_rows(self) -> list[dict]:
        """Rows of ``probe.csv``: ``model``, ``predictor``, ``features`` and the probe's metrics."""
        return read_csv(self.probe_path)

    def provenance(self) -> dict:
        p = self.path / "provenance.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def update_provenance(self, **items) -> dict:
        """Merge ``items`` into ``provenance.json`` (dicts are updated, other values replaced)."""
        prov = self.provenance()
        for key, value in items.items():
            merge = isinstance(value, dict) and isinstance(prov.get(key), dict)
            prov[key] = {**prov[key], **value} if merge else value
        text = json.dumps(prov, indent=2, sort_keys=True, default=str) + "\n"
        write_atomic(self.path / "provenance.json", text)
        return prov


class CachedScores:
    """A score function that remembers the scores of every image it has seen."""

    def __init__(self, score_fn):
        self.score_fn = score_fn
        self.cache: dict[bytes, np.ndarray] = {}

    def __call__(self, images, patch_size):
        keys = [hashlib.blake2b(im.tobytes(), digest_size=16).digest() for im in images]
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        if missing:
            fresh = np.asarray(self.score_fn(images[missing], patch_size))
            self.cache.update(zip([keys[i] for i in missing], fresh))
        return np.stack([self.cache[k] for k in keys])


def shown_path(path) -> str:
    """``path`` relative to the project's root when it lies inside (no machine's folders)."""
    try:
        return Path(path).resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def pretrained_training(path, predictor: str | None = None) -> dict:
    """What is known of the training of the saved model ``path`` (history, checkpoint card)."""
    from ..training import HISTORY, read_history  # lazy: pulls in Keras

    path = Path(path)
    record = {"predictor": predictor, "pretrained": shown_path(path)}
    card = path.with_suffix(".json")  # a course checkpoint's provenance (helpers.checkpoints)
    if card.exists():
        card = json.loads(card.read_text())
        record["checkpoint"] = card.get("name")
        return record | {k: card.get(k) for k in ("minutes", "epochs", "images_seen")}
    history = path.parent / HISTORY
    rows = read_history(history) if history.exists() else []
    seen = rows[-1].get("images_seen") if rows else None
    record["epochs"] = len(rows) if rows else None
    record["images_seen"] = int(float(seen)) if seen not in (None, "") else None
    return record


def check_pretrained(config: SweepConfig, pretrained: dict | None) -> dict[str, Path]:
    """``pretrained`` as paths, refused unless the plan is ``mixed`` and the files exist."""
    pretrained = {p: Path(path) for p, path in (pretrained or {}).items()}
    if pretrained and config.plan != "mixed":
        need = "pretrained models need plan 'mixed' (one model per predictor)"
        raise SettingError("plan", config.plan, need)
    for p, path in pretrained.items():
        check_choice(p, "pretrained predictor", [k for k in config.predictors if learns(k)])
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, f"pretrained[{p!r}]: no saved model", str(path))
    return pretrained


def _dataset_record(dataset) -> dict:
    record = {"name": dataset.name, "source": dataset.source}
    record |= {part: len(getattr(dataset, f"x_{part}")) for part in ("train", "val", "test")}
    return record | {"image_shape": list(dataset.image_shape)}  # colour or grayscale


def check_same_settings(dataset, config: SweepConfig, run: Run) -> None:
    """A run folder holds one experiment: refuse to mix results of other settings into it."""
    before = run.provenance()
    if not before.get("config"):  # nothing recorded yet (or only a model trained before)
        return
    names = ("name", "train", "test", "image_shape")
    sizes = {k: v for k, v in _dataset_record(dataset).items() if k in names}
    now = json.loads(json.dumps({"config": asdict(config), "dataset": sizes}, default=str))
    defaults = json.loads(json.dumps(asdict(SweepConfig()), default=str))  # of older settings
    old = {
        "config": {**defaults, **before["config"]},
        "dataset": {k: before.get("dataset", {}).get(k) for k in names},
    }
    for settings in (now["config"], old["config"]):  # the sizes of the predictors it runs only
        kwargs = settings.get("model_kwargs") or {}
        settings["model_kwargs"] = {p: kwargs.get(p) for p in config.predictors if p in kwargs}
    now["config"].pop("devices"), old["config"].pop("devices")  # the same results on N devices
    diff = sorted(
        f"{part}.{k}" for part in now for k in now[part] if old[part].get(k) != now[part][k]
    )
    if diff:
        problem = f"this run folder holds results of other settings (differs in {', '.join(diff)})"
        fix = "use another run name, or delete the folder to start again"
        raise SettingError("run", str(run.path), f"{problem}; {fix}")


def record_start(dataset, config: SweepConfig, run: Run, *, pretrained=None, **extra) -> None:
    """Check the settings of ``run``, then record them (and ``extra``) in its provenance."""
    check_same_settings(dataset, config, run)
    shown = {p: shown_path(path) for p, path in check_pretrained(config, pretrained).items()}
    record = dict(dataset=_dataset_record(dataset), config=asdict(config))
    run.update_provenance(**record, environment=environment(), pretrained=shown, **extra)


def predictor_for(
    dataset, config: SweepConfig, run: Run, predictor: str, strategy: str, ratio: float,
    *, pretrained=None, verbose: int = 0,
):  # fmt: skip
    """The predictor of a cell (non-learned, ``pretrained``, saved or trained now), once per run."""
    from ..models import load_predictor  # lazy: pulls in Keras

    if not learns(predictor):
        return load_predictor(predictor)
    pretrained = check_pretrained(config, pretrained)
    key = cell_model(config, predictor, strategy, ratio)
    if key in run.loaded:
        return run.loaded[key]
    final = run.models / key / "final.keras"
    if predictor in pretrained:
        model = load_predictor(pretrained[predictor])
        run.update_provenance(training={key: pretrained_training(pretrained[predictor], predictor)})
    elif final.exists():
        model = load_predictor(final)
    else:
        train_ratio = config.training_ratio(ratio)
        model = train_for_cell(dataset, config, run, key, predictor, strategy, train_ratio, verbose)
    run.loaded[key] = model
    return model


def cell_model(config: SweepConfig, predictor: str, strategy: str, ratio: float) -> str:
    """The name of the model (folder) that answers a cell of a learned predictor."""
    strategy = "mixed" if config.plan == "mixed" else strategy
    return model_id(predictor, strategy, config.training_ratio(ratio))


def train_for_cell(dataset, config, run, key, predictor, strategy, train_ratio, verbose=0):
    """Build and train the model ``key`` into ``run.models / key`` and record its training."""
    from ..models import build_model  # lazy: pulls in Keras
    from ..training import train  # lazy: pulls in Keras

    low = train_ratio[0] if isinstance(train_ratio, tuple) else train_ratio
    kwargs = dict(image_shape=dataset.image_shape, patch_size=config.patch_size, seed=config.seed)
    kwargs |= dict(lowest_ratio=min(low, *config.ratios), mixed_precision=config.precision)
    kwargs |= config.model_kwargs.get(predictor, {})
    model = build_model(predictor, recipe=config.recipe, **kwargs)
    per_cell_importance = strategy == "importance" and config.plan != "mixed"
    names = ("epochs", "batch_size", "seed", "recipe", "lr", "lr_schedule", "augment", "devices")
    result = train(
        model,
        dataset,
        strategy=config.training_strategy(strategy),
        ratio=train_ratio,
        run_dir=run.models / key,
        warmup_epochs=config.epochs // 10,  # 5 epochs: none; 50: 5 of warm-up
        score_fn=importance_scores(dataset, config, run) if per_cell_importance else "variance",
        verbose=verbose,
        **{name: getattr(config, name) for name in names},  # the settings of the same name
    )
    keep = ("seconds", "epochs", "images_seen")
    record = {k: round(v, 2) if k == "seconds" else v for k, v in result.items() if k in keep}
    run.update_provenance(training={key: {**record, **result["settings"]}})
    return model


def importance_scores(dataset, config: SweepConfig, run: Run, *, pretrained=None) -> CachedScores:
    """Gradient scores of the plan's mask-token ViT trained on random masks, cached on the run."""
    from ..importance import gradient_score_fn  # lazy: pulls in Keras

    if "scorer" not in run.loaded:
        ratios = sorted(config.ratios)
        mid = 0.5 if 0.5 in ratios else ratios[len(ratios) // 2]
        scorer = predictor_for(dataset, config, run, "vit", "random", mid, pretrained=pretrained)
        run.loaded["scorer"] = CachedScores(gradient_score_fn(scorer))
    return run.loaded["scorer"]


def eval_masks(
    dataset, config: SweepConfig, run: Run, strategy: str, ratio: float, *, pretrained=None
) -> np.ndarray:
    """Masks of the test images for (strategy, ratio), the same for every predictor and run."""
    score_fn = "variance"
    if strategy == "importance":
        score_fn = importance_scores(dataset, config, run, pretrained=pretrained)
    return cell_mask(dataset.x_test, strategy, ratio, config.patch_size, config.mask_seed, score_fn)


def evaluate_cell(
    dataset, config: SweepConfig, run: Run, strategy: str, ratio: float, predictor: str,
    *, eval_strategy: str | None = None, pretrained=None, verbose: int = 0,
) -> dict:  # fmt: skip
    """One row of results: the predictor of a cell scored on its masks (or ``eval_strategy``'s)."""
    from ..models import untrained_twin  # lazy: pulls in Keras

    t0 = time.perf_counter()
    model = predictor_for(
        dataset, config, run, predictor, strategy, ratio, pretrained=pretrained, verbose=verbose
    )
    t1 = time.perf_counter()
    mask = eval_masks(dataset, config, run, eval_strategy or strategy, ratio, pretrained=pretrained)
    summary, _ = score_predictor(model, dataset.x_test, mask)
    if model.learned:  # against its untrained twin, built once per model of the run
        key = ("untrained", id(model))
        if key not in run.loaded:
            run.loaded[key] = untrained_twin(model, seed=config.seed)
        add_training_added(summary, run.loaded[key], dataset.x_test, mask)
    t2 = time.perf_counter()
    row = {"predictor": predictor, "strategy": strategy}
    if eval_strategy:
        row = {"predictor": predictor, "train_strategy": strategy, "eval_strategy": eval_strategy}
    row.update({"ratio": ratio, "plan": config.plan, "n_test": len(dataset.x_test)})
    row.update({k: round(v, 6) for k, v in summary.items()})
    row.update({"train_seconds": round(t1 - t0, 2), "eval_seconds": round(t2 - t1, 2)})
    if config.probe_epochs and learns(predictor) and not eval_strategy:
        key = cell_model(config, predictor, strategy, ratio)
        probed = probe_model(dataset, config, run, predictor, model, key)
        row.update({f"probe_{k}": probed[k] for k in PROBE_METRICS})
    return row


def probe_model(dataset, config: SweepConfig, run: Run, predictor: str, model, key: str) -> dict:
    """The probe's row of model ``key``'s encoder, kept in ``probe.csv`` with its baselines."""
    done = {r["model"]: r for r in run.probe_rows()}
    wanted = [("pixels", "", "pixels"), (f"{predictor}-random", predictor, "random_encoder")]
    missing = [w for w in [*wanted, (key, predictor, "encoder")] if w[0] not in done]
    split = run.loaded.get("probe_split")
    if missing and split is None:
        split = run.loaded["probe_split"] = labelled_split(dataset, model.image_shape)
        info = {k: split[k] for k in ("n_classes", "chance_accuracy")}
        info |= {f"n_{part}": len(split[f"x_{part}"]) for part in ("train", "test")}
        info |= {"epochs": config.probe_epochs, "class_names": list(dataset.class_names)}
        run.update_provenance(probe=info)
    for name, owner, features in missing:
        features_of = model.features if features == "encoder" else pixel_features
        if features == "random_encoder":  # built only when missing: a model build
            features_of = random_copy(model, config.seed).features
        row, _ = probe_source(
            features, features_of, split, epochs=config.probe_epochs, seed=config.seed
        )
        done[name] = {"model": name, "predictor": owner, **row}
        append_row(run.probe_path, done[name])
    return {k: float(v) if k in PROBE_METRICS else v for k, v in done[key].items()}


def record_cell(run: Run, row: dict, seconds: float) -> None:
    """Append a sweep row to ``metrics.csv`` and its wall time to the provenance."""
    append_row(run.metrics_path, row)
    cid = cell_id(row["strategy"], row["ratio"], row["predictor"])
    stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    run.update_provenance(cells={cid: {"seconds": round(seconds, 2), "finished": stamp}})


def _progress(todo: list, total: int, desc: str, progress: bool):
    """A bar over ``todo`` that counts the ``total - len(todo)`` cells done before."""
    initial = total - len(todo)
    return tqdm(todo, total=total, initial=initial, desc=desc, unit="cell", disable=not progress)


def run_sweep(
    dataset, config: SweepConfig, run, *, pretrained=None, extra_provenance: dict | None = None,
    progress: bool = True, verbose: int = 0,
) -> list[dict]:  # fmt: skip
    """Score every cell of ``config`` not yet in ``metrics.csv``, writing each row at once; returns
    all rows. ``pretrained``: predictor -> saved ``.keras`` model used instead of training one."""
    run = run if isinstance(run, Run) else Run(run)
    if config.probe_epochs:  # labels the probe can learn, before anything is trained
        labelled_split(dataset)
    record_start(dataset, config, run, pretrained=pretrained, **(extra_provenance or {}))
    done = {cell_id(r["strategy"], float(r["ratio"]), r["predictor"]) for r in run.rows()}
    todo = [c for c in config.cells() if cell_id(*c) not in done]
    bar = _progress(todo, len(config.cells()), "sweep", progress)
    for strategy, ratio, predictor in bar:
        bar.set_postfix_str(cell_id(strategy, ratio, predictor))
        start = time.perf_counter()
        row = evaluate_cell(
            dataset, config, run, strategy, ratio, predictor, pretrained=pretrained, verbose=verbose
        )
        record_cell(run, row, time.perf_counter() - start)
    return run.rows()


def run_matrix(
    dataset, config: SweepConfig, run, ratio: float = 0.5, predictor: str = "vit",
    *, progress: bool = True, verbose: int = 0,
) -> np.ndarray:  # fmt: skip
    """The cross-strategy matrix: masked-region PSNR of models trained on A, evaluated on B."""
    check_ratio(ratio)
    if config.plan == "mixed":
        need = "one model per training strategy: plan 'per_strategy' or 'per_cell'"
        raise SettingError("plan", config.plan, f"the cross-strategy matrix needs {need}")
    run = run if isinstance(run, Run) else Run(run)
    record_start(dataset, config, run)
    strategies = config.strategies
    done = {
        (r["train_strategy"], r["eval_strategy"])
        for r in run.matrix_rows()
        if float(r["ratio"]) == ratio and r["predictor"] == predictor
    }
    todo = [(a, b) for a in strategies for b in strategies if (a, b) not in done]
    bar = _progress(todo, len(strategies) ** 2, "matrix", progress)
    for a, b in bar:
        bar.set_postfix_str(f"train {a} -> eval {b}")
        row = evaluate_cell(
            dataset, config, run, a, ratio, predictor, eval_strategy=b, verbose=verbose
        )
        append_row(run.matrix_path, row)
    return matrix_table(run.matrix_rows(), strategies, ratio=ratio, predictor=predictor)


def matrix_table(
    rows, strategies, *, ratio: float = 0.5, predictor: str = "vit", key: str = "psnr_masked_mean"
) -> np.ndarray:
    """(train strategy, eval strategy) array of ``key`` from matrix rows (NaN where missing)."""
    table = np.full((len(strategies), len(strategies)), np.nan)
    for r in rows:
        a, b = r["train_strategy"], r["eval_strategy"]
        if r["predictor"] == predictor and float(r["ratio"]) == ratio and {a, b} <= set(strategies):
            table[strategies.index(a), strategies.index(b)] = float(r[key])
    return table
