"""The experiments: a strategy x ratio x predictor sweep and a cross-strategy matrix.

Every cell of the sweep trains (or reuses) a model, reconstructs the same test images with the
same masks as every other predictor of that (strategy, ratio), and appends one row of summary
metrics to ``results/<run name>/metrics.csv``. A sidecar ``provenance.json`` records the dataset,
sizes, settings, seeds, backend, versions, device and the wall time of every cell. Both files are
rewritten atomically (temporary file + rename), so a crash never leaves a broken file, and a sweep
started again skips the cells already in ``metrics.csv``: trained models are kept in
``models/<predictor>-<strategy>-<ratio>/`` and reused.

Training plans:
- ``mixed`` (default): one model per predictor, trained on masks of every strategy of
  :data:`MIXED_STRATEGIES` (one drawn per batch) at ratios drawn in ``ratio_range``, and
  evaluated on every cell; ``pretrained`` models (e.g. those of notebooks 03 and 04) are used
  instead of training when given;
- ``per_cell``: one model per (predictor, strategy, ratio);
- ``per_strategy``: one model per (predictor, strategy), trained on ratios drawn uniformly in
  ``ratio_range`` for every batch and evaluated at each ratio.

The ``importance`` strategy ranks patches by the gradients of a trained scorer: the mask-token ViT
trained on ``random`` masks of the same plan (trained first, whatever the cell order).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._checks import SettingError, check_choice, check_positive_int, check_ratio
from ._io import read_csv, write_atomic, write_csv
from .masking import STRATEGIES, make_mask
from .recipes import NON_LEARNED, PREDICTORS, RECIPES

PLANS = ("mixed", "per_strategy", "per_cell")
MIXED_STRATEGIES = ("random", "rows", "columns")  # what a ``mixed`` model is trained on
RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
METRICS_FILE = "metrics.csv"
MATRIX_FILE = "matrix.csv"
PROVENANCE_FILE = "provenance.json"
SUMMARY_KEYS = ("psnr_masked", "psnr", "ssim", "mse_masked")


#: Builder sizes of the sweep's models: ``small`` for CPU runs, ``reference`` = the builders'
# defaults
#: (the reference design of notebook 03: tokens of 128, 4 blocks of 4 heads, MLP 256).
MODEL_SIZES = {
    "small": {
        "vit": {"embed_dim": 64, "depth": 2, "num_heads": 4, "mlp_dim": 128},
        "mae": {
            "embed_dim": 64,
            "depth": 2,
            "num_heads": 4,
            "mlp_dim": 128,
            "decoder_dim": 32,
            "decoder_depth": 1,
            "decoder_num_heads": 2,
            "decoder_mlp_dim": 64,
        },
        "cnn": {"filters": (16, 32, 64)},
    },
    "reference": {"vit": {}, "mae": {}, "cnn": {}},
}


def model_sizes(name: str) -> dict:
    """Builder keyword arguments per model kind for ``small`` or ``reference`` (see
    :data:`MODEL_SIZES`)."""
    check_choice(name, "model_size", MODEL_SIZES)
    return {kind: dict(kwargs) for kind, kwargs in MODEL_SIZES[name].items()}


def results_dir() -> Path:
    """Where runs are kept: ``results/`` at the top of the project, or ``$HELPERS_RESULTS_DIR``."""
    return Path(os.environ.get("HELPERS_RESULTS_DIR") or RESULTS_DIR)


@dataclass
class SweepConfig:
    """What a sweep runs. Defaults are the quick CPU settings; a GPU run uses more epochs and
    images."""

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
            raise SettingError(
                "ratios", (), "must hold at least one ratio strictly between 0 and 1"
            )
        for r in self.ratios:
            check_ratio(r, "ratios")
        if not self.predictors:
            raise SettingError("predictors", (), f"must name at least one of {list(PREDICTORS)}")
        for p in self.predictors:
            check_choice(p, "predictors", PREDICTORS)
        check_choice(self.plan, "plan", PLANS)
        check_choice(self.recipe, "recipe", RECIPES)
        if len(self.ratio_range) != 2 or not self.ratio_range[0] < self.ratio_range[1]:
            raise SettingError(
                "ratio_range", self.ratio_range, "must be (low, high) with low < high"
            )
        for r in self.ratio_range:
            check_ratio(r, "ratio_range")
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.seed, "seed", minimum=0)
        check_positive_int(self.mask_seed, "mask_seed", minimum=0)

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
    if isinstance(train_ratio, tuple):
        return f"{predictor}-{strategy}-{train_ratio[0]:.2f}to{train_ratio[1]:.2f}"
    return f"{predictor}-{strategy}-{train_ratio:.2f}"


# --------------------------------------------------------------------------------------------
# Files written safely
# --------------------------------------------------------------------------------------------
def append_row(path, row: dict) -> None:
    """Append ``row`` to the CSV at ``path`` by rewriting it atomically (new columns allowed)."""
    write_csv(path, read_csv(path) + [row])


def environment() -> dict:
    """Backend, versions and device of this process."""
    import keras
    import skimage

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "scikit-image": skimage.__version__,
    }
    backend = info["backend"]
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            info["tensorflow"] = tf.__version__
            gpus = tf.config.list_physical_devices("GPU")
            info["device"] = f"GPU x{len(gpus)}" if gpus else "CPU"
        elif backend == "jax":
            import jax

            info["jax"] = jax.__version__
            info["device"] = ", ".join(sorted({d.platform for d in jax.devices()}))
        elif backend == "torch":
            import torch

            info["torch"] = torch.__version__
            info["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    except Exception as exc:  # a broken backend install should not stop the record
        info["device"] = f"unknown ({type(exc).__name__})"
    info["cpu_count"] = os.cpu_count()
    return info


class Run:
    """A results folder: ``metrics.csv``, ``matrix.csv``, ``provenance.json`` and ``models/``."""

    def __init__(self, name_or_path):
        path = Path(name_or_path)
        self.path = path if (path.is_absolute() or len(path.parts) > 1) else results_dir() / path
        self.models = self.path / "models"

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def matrix_path(self) -> Path:
        return self.path / MATRIX_FILE

    def rows(self) -> list[dict]:
        return read_csv(self.metrics_path)

    def matrix_rows(self) -> list[dict]:
        return read_csv(self.matrix_path)

    def provenance(self) -> dict:
        p = self.path / PROVENANCE_FILE
        return json.loads(p.read_text()) if p.exists() else {}

    def update_provenance(self, **items) -> dict:
        prov = self.provenance()
        for key, value in items.items():
            if isinstance(value, dict) and isinstance(prov.get(key), dict):
                prov[key].update(value)
            else:
                prov[key] = value
        write_atomic(
            self.path / PROVENANCE_FILE,
            json.dumps(prov, indent=2, sort_keys=True, default=str) + "\n",
        )
        return prov


# --------------------------------------------------------------------------------------------
# Models, masks and scores
# --------------------------------------------------------------------------------------------
def _image_key(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()


class CachedScores:
    """A score function that remembers the scores of every image it has seen.

    Gradient scores of a fixed scorer do not change between epochs, so training on ``importance``
    masks computes them once per distinct image (flipped copies count as distinct).
    """

    def __init__(self, score_fn):
        self.score_fn = score_fn
        self.cache: dict[bytes, np.ndarray] = {}

    def __call__(self, images, patch_size):
        keys = [_image_key(im) for im in images]
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        if missing:
            fresh = np.asarray(self.score_fn(images[missing], patch_size))
            for i, s in zip(missing, fresh):
                self.cache[keys[i]] = s
        return np.stack([self.cache[k] for k in keys])


def pretrained_training(path, predictor: str | None = None) -> dict:
    """What the history beside a saved model says of its training: ``epochs`` and ``images_seen``
    (None where there is no ``history.csv``), the model file it came from and the ``predictor``."""
    from .training import HISTORY, read_history

    path = Path(path)
    history = path.parent / HISTORY
    rows = read_history(history) if history.exists() else []
    seen = rows[-1].get("images_seen") if rows else None
    return {
        "predictor": predictor,
        "pretrained": str(path),
        "epochs": len(rows) if rows else None,
        "images_seen": int(float(seen)) if seen not in (None, "") else None,
    }


class Sweep:
    """Runs a :class:`SweepConfig` on a :class:`~helpers.data.Dataset` into a :class:`Run`."""

    def __init__(
        self,
        dataset,
        config: SweepConfig,
        run,
        *,
        verbose: int = 0,
        extra_provenance: dict | None = None,
        pretrained: dict | None = None,
    ):
        """``pretrained``: predictor -> saved ``.keras`` model used instead of training one (plan
        ``mixed`` only: such a model answers every cell)."""
        self.dataset = dataset
        self.pretrained = {p: Path(path) for p, path in (pretrained or {}).items()}
        if self.pretrained and config.plan != "mixed":
            raise ValueError(
                "pretrained models need plan 'mixed' (one model per predictor), got plan "
                f"{config.plan!r}"
            )
        for p, path in self.pretrained.items():
            check_choice(
                p, "pretrained predictor", [k for k in config.predictors if k not in NON_LEARNED]
            )
            if not path.is_file():
                raise FileNotFoundError(f"pretrained[{p!r}]: no saved model at {str(path)!r}")
        self.config = config
        self.run = run if isinstance(run, Run) else Run(run)
        self.verbose = verbose
        self.extra_provenance = extra_provenance or {}
        self._models: dict[str, object] = {}
        self._scores: dict[str, CachedScores] = {}
        self._masks: dict[tuple, np.ndarray] = {}

    # -- provenance -------------------------------------------------------------------------
    def _record_start(self) -> None:
        ds = self.dataset
        self._check_same_settings()
        self.run.update_provenance(
            dataset={
                "name": ds.name,
                "source": ds.source,
                "train": len(ds.x_train),
                "val": len(ds.x_val),
                "test": len(ds.x_test),
                "image_shape": list(ds.image_shape),
            },
            config=asdict(self.config),
            environment=environment(),
            pretrained={p: str(path) for p, path in self.pretrained.items()},
            **self.extra_provenance,
        )

    def _check_same_settings(self) -> None:
        """A run folder holds one experiment: refuse to mix results of other settings into it."""
        before = self.run.provenance()
        if not before.get(
            "config"
        ):  # nothing recorded yet (or only a model trained before the sweep)
            return
        now = json.loads(
            json.dumps(
                {
                    "config": asdict(self.config),
                    "dataset": {
                        "name": self.dataset.name,
                        "train": len(self.dataset.x_train),
                        "test": len(self.dataset.x_test),
                    },
                },
                default=str,
            )
        )
        old = {
            "config": before.get("config"),
            "dataset": {k: before.get("dataset", {}).get(k) for k in ("name", "train", "test")},
        }
        diff = sorted(
            f"{part}.{k}"
            for part in ("config", "dataset")
            for k in now[part]
            if (old[part] or {}).get(k) != now[part][k]
        )
        if diff:
            raise ValueError(
                f"run folder {self.run.path} holds results of other settings (differs in "
                f"{', '.join(diff)}); "
                "use another run name, or delete the folder to start again"
            )

    # -- models -----------------------------------------------------------------------------
    def _builder_kwargs(self, predictor: str, train_ratio) -> dict:
        kwargs = dict(self.config.model_kwargs.get(predictor, {}))
        kwargs.setdefault("image_shape", self.dataset.image_shape)
        kwargs.setdefault("patch_size", self.config.patch_size)
        low = train_ratio[0] if isinstance(train_ratio, tuple) else train_ratio
        kwargs.setdefault("lowest_ratio", min(low, *self.config.ratios))
        kwargs.setdefault("seed", self.config.seed)
        return kwargs

    def model(self, predictor: str, strategy: str, ratio: float):
        """The predictor for a cell: a non-learned one (never trained), a saved model, or a model
        trained now."""
        from .models import build_model, load_predictor
        from .training import train

        if predictor in NON_LEARNED:
            return load_predictor(predictor)
        train_ratio = self.config.training_ratio(ratio)
        train_strategy = self.config.training_strategy(strategy)
        key = model_id(predictor, "mixed" if self.config.plan == "mixed" else strategy, train_ratio)
        if key in self._models:
            return self._models[key]
        folder = self.run.models / key
        final = folder / "final.keras"
        if predictor in self.pretrained:
            model = load_predictor(self.pretrained[predictor])
            self.run.update_provenance(
                training={key: pretrained_training(self.pretrained[predictor], predictor)}
            )
        elif final.exists():
            model = load_predictor(final)
        else:
            score_fn = (
                self.score_fn()
                if strategy == "importance" and self.config.plan != "mixed"
                else "variance"
            )
            model = build_model(
                predictor, recipe=self.config.recipe, **self._builder_kwargs(predictor, train_ratio)
            )
            result = train(
                model,
                self.dataset,
                strategy=train_strategy,
                ratio=train_ratio,
                epochs=self.config.epochs,
                batch_size=self.config.batch_size,
                seed=self.config.seed,
                run_dir=folder,
                recipe=self.config.recipe,
                lr=self.config.lr,
                lr_schedule=self.config.lr_schedule,
                warmup_epochs=self.config.epochs // 10,  # 5 epochs: none; 50: 5 of warm-up
                augment=self.config.augment,
                score_fn=score_fn,
                verbose=self.verbose,
            )
            self.run.update_provenance(
                training={
                    key: {
                        "seconds": round(result["seconds"], 2),
                        "epochs": result["epochs"],
                        "images_seen": result["images_seen"],
                        **result["settings"],
                    }
                }
            )
        self._models[key] = model
        return model

    def score_fn(self) -> CachedScores:
        """Gradient scores of the scorer (the ViT trained on random masks of this plan), cached."""
        from .importance import gradient_score_fn

        if "scorer" not in self._scores:
            ratios = sorted(self.config.ratios)
            scorer = self.model("vit", "random", 0.5 if 0.5 in ratios else ratios[len(ratios) // 2])
            self._scores["scorer"] = CachedScores(gradient_score_fn(scorer))
        return self._scores["scorer"]

    def masks(self, strategy: str, ratio: float, images=None) -> np.ndarray:
        """Evaluation masks of the test images: the same for every predictor of a cell."""
        images = self.dataset.x_test if images is None else images
        key = (strategy, round(ratio, 6), len(images))
        if key not in self._masks:
            score_fn = self.score_fn() if strategy == "importance" else "variance"
            seed = (
                self.config.mask_seed + STRATEGIES.index(strategy) * 1000 + int(round(ratio * 100))
            )
            self._masks[key] = make_mask(
                strategy,
                ratio,
                images=images,
                patch_size=self.config.patch_size,
                score_fn=score_fn,
                seed=seed,
            )
        return self._masks[key]

    # -- evaluation -------------------------------------------------------------------------
    def evaluate_cell(
        self, strategy: str, ratio: float, predictor: str, eval_strategy: str | None = None
    ) -> dict:
        """Train or load the model of a cell and score it on the test set (with ``eval_strategy``
        masks when given, for the cross-strategy matrix)."""
        from .evaluation import score_predictor

        eval_strategy = eval_strategy or strategy
        t0 = time.perf_counter()
        model = self.model(predictor, strategy, ratio)
        t1 = time.perf_counter()
        x = self.dataset.x_test
        mask = self.masks(eval_strategy, ratio)
        summary, _ = score_predictor(model, x, mask, self.config.patch_size)
        t2 = time.perf_counter()
        row = {"predictor": predictor, "strategy": eval_strategy, "ratio": ratio}
        if eval_strategy != strategy:
            row = {
                "predictor": predictor,
                "train_strategy": strategy,
                "eval_strategy": eval_strategy,
                "ratio": ratio,
            }
        row.update({"plan": self.config.plan, "n_test": len(x)})
        row.update({k: round(v, 6) for k, v in summary.items()})
        row.update({"train_seconds": round(t1 - t0, 2), "eval_seconds": round(t2 - t1, 2)})
        return row

    def run_sweep(self, progress: bool = True) -> list[dict]:
        """Every cell not yet in ``metrics.csv``; returns all rows of the run."""
        from tqdm import tqdm

        self._record_start()
        done = {cell_id(r["strategy"], float(r["ratio"]), r["predictor"]) for r in self.run.rows()}
        cells = self.config.cells()
        todo = [c for c in cells if cell_id(*c) not in done]
        bar = tqdm(
            total=len(cells),
            initial=len(cells) - len(todo),
            desc="sweep",
            unit="cell",
            disable=not progress,
        )
        for strategy, ratio, predictor in todo:
            cid = cell_id(strategy, ratio, predictor)
            bar.set_postfix_str(cid)
            start = time.perf_counter()
            row = self.evaluate_cell(strategy, ratio, predictor)
            append_row(self.run.metrics_path, row)
            stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            self.run.update_provenance(
                cells={cid: {"seconds": round(time.perf_counter() - start, 2), "finished": stamp}}
            )
            bar.update(1)
        bar.close()
        return self.run.rows()

    def run_matrix(
        self, ratio: float = 0.5, predictor: str = "vit", progress: bool = True
    ) -> np.ndarray:
        """Train on strategy A, evaluate on strategy B, for all pairs: (A, B) masked-region PSNR."""
        from tqdm import tqdm

        check_ratio(ratio)
        if self.config.plan == "mixed":
            raise ValueError(
                "the cross-strategy matrix needs one model per training strategy: plan "
                "'per_strategy' or "
                "'per_cell', not 'mixed'"
            )
        self._record_start()
        strategies = self.config.strategies
        done = {
            (r["train_strategy"], r["eval_strategy"]): r
            for r in self.run.matrix_rows()
            if float(r["ratio"]) == ratio and r["predictor"] == predictor
        }
        pairs = [(a, b) for a in strategies for b in strategies]
        bar = tqdm(
            total=len(pairs),
            initial=sum(p in done for p in pairs),
            desc="matrix",
            unit="cell",
            disable=not progress,
        )
        for a, b in pairs:
            if (a, b) in done:
                continue
            bar.set_postfix_str(f"train {a} -> eval {b}")
            row = self.evaluate_cell(a, ratio, predictor, eval_strategy=b)
            row["train_strategy"], row["eval_strategy"] = a, b
            row.pop("strategy", None)
            append_row(self.run.matrix_path, row)
            done[(a, b)] = row
            bar.update(1)
        bar.close()
        return matrix_table(self.run.matrix_rows(), strategies, ratio=ratio, predictor=predictor)


def matrix_table(
    rows, strategies, *, ratio: float = 0.5, predictor: str = "vit", key: str = "psnr_masked_mean"
) -> np.ndarray:
    """(train strategy, eval strategy) array of ``key`` from matrix rows (NaN where missing)."""
    table = np.full((len(strategies), len(strategies)), np.nan)
    for r in rows:
        if (
            r["predictor"] == predictor
            and float(r["ratio"]) == ratio
            and r["train_strategy"] in strategies
            and r["eval_strategy"] in strategies
        ):
            table[strategies.index(r["train_strategy"]), strategies.index(r["eval_strategy"])] = (
                float(r[key])
            )
    return table
