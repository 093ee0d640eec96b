"""Training: fresh masks every epoch, masked-patch loss, checkpoints that survive interruptions.

- :class:`MaskingDataset`: a ``keras.utils.PyDataset`` that draws new masks for every batch of
  every epoch (any strategy of :mod:`helpers.masking`, a fixed ratio or a ``(low, high)`` range
  drawn per batch), optionally flips images horizontally, and yields ``({"images", "mask"},
  images, pixel weights)``, the one input every predictor takes. Everything is a pure function of
  ``(seed, epoch, batch)``,
  so runs are reproducible and a resumed run sees the masks it would have seen.
- The loss is ``MeanSquaredError(reduction="mean_with_sample_weight")`` with 0/1 weights per
  pixel: with ``loss_on="masked"`` the reported loss is exactly the MSE over the
  masked patch values of each batch; ``loss_on="all"`` weighs every patch.
- :func:`train`: the settings of a recipe (:mod:`helpers.recipes`; ``tuned`` by default: Adam with
  warm-up + cosine decay, flips), a budget in epochs, images seen or minutes (:class:`TimeBudget`),
  best and final models, a CSV history (with the images seen), optional early stopping,
  ``BackupAndRestore`` so that calling :func:`train` again with the same run folder resumes an
  interrupted run. On a CPU, TensorFlow compiles dropout-free models with XLA. Model files are
  written under a temporary name and moved into place with ``os.replace``, so
  ``best.keras``/``final.keras`` are never half written.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from ._checks import (
    SettingError,
    SettingTypeError,
    check_choice,
    check_hidden,
    check_images,
    check_positive_int,
    check_positive_number,
    check_ratio_spec,
)
from ._io import atomic_path, read_csv, write_csv
from .devices import check_devices, data_parallel
from .masking import STRATEGIES, make_mask, n_masked
from .metrics import psnr_from_mse
from .models import MaskedImageModel, check_fits
from .patches import grid_shape, patch_mask_to_pixels
from .recipes import LOSS_ON, LOSSES, train_settings

LR_SCHEDULES = ("plateau", "cosine")
SAVE_ROOT = "saved_models"
BEST, FINAL, HISTORY, BACKUP = "best.keras", "final.keras", "history.csv", "backup"


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def _check_strategy_spec(strategy) -> tuple[str, ...]:
    """A strategy name, or a non-empty list of them (one drawn per batch)."""
    if isinstance(strategy, str):
        return (check_choice(strategy, "strategy", STRATEGIES),)
    if not isinstance(strategy, (tuple, list)) or not strategy:
        raise SettingError(
            "strategy", strategy, f"must be one of {list(STRATEGIES)} or a non-empty list of them"
        )
    return tuple(check_choice(s, "strategy", STRATEGIES) for s in strategy)


class MaskingDataset(keras.utils.PyDataset):
    """Batches of ``({"images", "mask"}, images, pixel weights)`` with masks drawn fresh every
    epoch.

    Args:
        images: float32 (N, H, W, C) in [0, 1].
        patch_size: side of the square patches.
        strategy: a strategy of :mod:`helpers.masking`, or a list of strategies: one drawn
            uniformly for every batch (one model trained on several kinds of masks).
        ratio: masking ratio, or ``(low, high)``: one ratio drawn uniformly per batch.
        batch_size, seed: batch size; seed of the shuffling, masks and flips.
        fresh_masks: new masks and order each epoch (training); ``False`` keeps the epoch-0
            masks and the image order forever (validation: comparable losses across epochs).
        shuffle: shuffle the images each epoch (only with ``fresh_masks``).
        augment: flip half of the images horizontally (before masking).
        loss_on: ``masked`` (weight 1 on the pixels of masked patches, 0 elsewhere) or ``all``.
        score_fn: score function for the ``importance`` strategy (e.g.
            :func:`helpers.importance.gradient_score_fn`), or a name of ``helpers.masking.SCORES``.
        min_masked: fewest patches a mask may hide (an MAE's limit); checked against ``ratio``.
        pad_to: make every batch a multiple of this many images (data parallel training on
            ``pad_to`` devices): a short last batch is completed with copies of its first images
            whose weights are 0, so the masked loss is that of the real images.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` of ``PyDataset``.
    """

    def __init__(
        self,
        images,
        patch_size: int,
        *,
        strategy: str = "random",
        ratio=0.5,
        batch_size: int = 64,
        seed: int = 0,
        fresh_masks: bool = True,
        shuffle: bool = True,
        augment: bool = False,
        loss_on: str = "masked",
        score_fn="variance",
        min_masked: int | None = None,
        pad_to: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.images = check_images(images)
        self.patch_size = patch_size
        self.grid = grid_shape(images.shape[1:3], patch_size)
        self.strategies = _check_strategy_spec(strategy)
        self.strategy = strategy if isinstance(strategy, str) else list(self.strategies)
        self.ratio = check_ratio_spec(ratio)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.fresh_masks = bool(fresh_masks)
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.loss_on = check_choice(loss_on, "loss_on", LOSS_ON)
        self.score_fn = score_fn
        self.pad_to = check_positive_int(pad_to, "pad_to")
        self.epoch = 0
        n_patches = self.grid[0] * self.grid[1]
        check_hidden(n_masked(self.ratio[0], n_patches), min_masked or 0, n_patches, "ratio", ratio)

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Draw the masks (and order, flips) of ``epoch`` from now on."""
        self.epoch = int(epoch)

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def _epoch(self) -> int:
        return self.epoch if self.fresh_masks else 0

    def _order(self) -> np.ndarray:
        if not (self.shuffle and self.fresh_masks):
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, self._epoch(), 0]).permutation(len(self.images))

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Images (after flipping) and boolean mask (n, L) of batch ``index`` in the current
        epoch."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch index must be in [0, {len(self)}), got {index}")
        rng = np.random.default_rng([self.seed, self._epoch(), 1, index])
        idx = self._order()[index * self.batch_size : (index + 1) * self.batch_size]
        images = self.images[idx]  # a copy (fancy indexing): flipped in place
        if self.augment:
            flip = rng.random(len(images)) < 0.5
            images[flip] = images[flip, :, ::-1]
        ratio = self.ratio[0] if self.ratio[0] == self.ratio[1] else float(rng.uniform(*self.ratio))
        strategy = (
            self.strategies[0]
            if len(self.strategies) == 1
            else self.strategies[rng.integers(len(self.strategies))]
        )
        mask = make_mask(
            strategy,
            ratio,
            images=images,
            patch_size=self.patch_size,
            score_fn=self.score_fn,
            seed=rng,
        )
        return images, mask

    def __getitem__(self, index: int):
        images, mask = self.batch(index)
        images = images.astype(np.float32, copy=False)
        if self.loss_on == "all":
            weight = np.ones(images.shape[:3], dtype=np.float32)
        else:
            weight = patch_mask_to_pixels(mask, self.patch_size, images.shape[1:3])[..., 0].astype(
                np.float32
            )
        extra = np.arange(-len(images) % self.pad_to) % len(images)
        if len(extra):  # copies that weigh nothing, so that every device gets as many images
            images, mask = (
                np.concatenate([images, images[extra]]),
                np.concatenate([mask, mask[extra]]),
            )
            weight = np.concatenate([weight, np.zeros_like(weight[extra])])
        return {"images": images, "mask": mask.astype(np.float32)}, images, weight


def masked_mse():
    """MSE averaged over the weighted entries: with 0/1 weights, the MSE over the masked values."""
    return keras.losses.MeanSquaredError(reduction="mean_with_sample_weight", name="masked_mse")


@keras.saving.register_keras_serializable(package="helpers")
class NegativePSNR(keras.losses.Loss):
    """Minus the mean over the images of a batch of each image's PSNR (dB, peak 1) over its
    weighted pixels: with 0/1 weights, the masked-region PSNR that the project reports, averaged
    as the tables average it. Images whose weights are all 0 (padding) do not count.

    The MSE weighs every image by its squared error, so the images that are hard to fill in
    dominate it; -10 log10 weighs each image's error relative to its own, as the mean PSNR does.
    ``floor`` (an MSE, 1e-5 = 50 dB) keeps a perfectly predicted image from dominating instead.
    """

    def __init__(self, floor: float = 1e-5, name: str = "negative_psnr", **kwargs):
        super().__init__(name=name, **kwargs)
        self.floor = float(floor)

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = keras.ops.convert_to_tensor(y_pred)
        error = keras.ops.square(keras.ops.cast(y_true, y_pred.dtype) - y_pred)
        weight = keras.ops.ones_like(error)
        if sample_weight is not None:  # per pixel (N, H, W): the same for every channel
            sample_weight = keras.ops.cast(sample_weight, error.dtype)
            while len(sample_weight.shape) < len(error.shape):
                sample_weight = keras.ops.expand_dims(sample_weight, -1)
            weight = weight * sample_weight
        axes = tuple(range(1, len(error.shape)))
        total = keras.ops.sum(error * weight, axis=axes)
        count = keras.ops.sum(weight, axis=axes)
        counted = keras.ops.cast(count > 0, error.dtype)
        mse = total / keras.ops.maximum(count, 1e-12)
        psnr = (-10.0 / math.log(10.0)) * keras.ops.log(mse + self.floor)
        loss = -keras.ops.sum(psnr * counted) / keras.ops.maximum(keras.ops.sum(counted), 1.0)
        # Under tf.distribute Keras sums the replicas' gradients and multiplies the reported loss
        # by the number of replicas, because its own losses divide themselves by it in __call__
        # (Keras 3.15); this __call__ does the same (tests/test_devices.py checks the curves)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf  # that backend only

            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            if replicas > 1:
                loss = loss / float(replicas)
        return loss

    def get_config(self):
        return {**super().get_config(), "floor": self.floor}


def training_loss(loss: str = "mse"):
    """The Keras loss of ``loss``: ``mse`` (:func:`masked_mse`) or ``psnr``
    (:class:`NegativePSNR`)."""
    return masked_mse() if check_choice(loss, "loss", LOSSES) == "mse" else NegativePSNR()


# --------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------
def save_atomic(model, path) -> Path:
    """``model.save`` to a temporary file next to ``path``, then ``os.replace`` it into place."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the model when ``monitor`` improves (lower is better), atomically.

    ``initial_best``: the best value so far (from the history of an interrupted run), so a
    resumed run does not overwrite a better checkpoint with a worse one.
    """

    def __init__(
        self, path, monitor: str = "val_loss", initial_best: float = math.inf, verbose: int = 0
    ):
        super().__init__()
        self.path, self.monitor, self.best, self.verbose = (
            Path(path),
            monitor,
            float(initial_best),
            verbose,
        )

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value) or value >= self.best:
            return
        self.best = float(value)
        save_atomic(self.model, self.path)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: {self.monitor} improved to {value:.5f}, saved {self.path}")


class ValidationPSNR(keras.callbacks.Callback):
    """``val_psnr_masked`` in the logs of every epoch: the mean over the validation images of
    each image's masked-region PSNR (dB, the tables' measure) on the validation masks, which are
    drawn once. Every model gets it whatever its loss, so the curves of models trained on
    different losses can share one axis (:func:`helpers.plots.plot_training_curves`)."""

    def __init__(self, val_ds):
        super().__init__()
        self.val_ds = val_ds

    def on_epoch_end(self, epoch, logs=None):
        psnr = []
        for index in range(len(self.val_ds)):
            inputs, images, weight = self.val_ds[index]
            keep = weight.reshape(len(weight), -1).sum(axis=1) > 0  # not a padding copy
            # a direct call: under tf.distribute predict_on_batch gathers the replicas' outputs
            predicted = np.asarray(self.model(inputs, training=False), dtype=np.float64)
            hidden = patch_mask_to_pixels(
                inputs["mask"] > 0.5, self.val_ds.patch_size, images.shape[1:3]
            )
            error = ((predicted - images) ** 2 * hidden).sum(axis=(1, 2, 3))
            mse = error / np.maximum(hidden.sum(axis=(1, 2, 3)) * images.shape[-1], 1)
            psnr.append(psnr_from_mse(mse)[keep])
        if logs is not None and psnr:
            logs["val_psnr_masked"] = float(np.mean(np.concatenate(psnr)))


class HistoryCSV(keras.callbacks.Callback):
    """Per-epoch logs in a CSV file (``epoch`` first, then the sorted log keys, ``seconds``).

    Resume-aware: rows of epochs at or after the first epoch of this run are dropped (they belong
    to an interrupted attempt), earlier rows are kept. The file is rewritten atomically each epoch.
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict] = []
        self._started = False
        self._t0 = 0.0

    def on_train_begin(self, logs=None):
        self.rows = read_history(self.path) if self.path.exists() else []
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            self.rows = [r for r in self.rows if int(r["epoch"]) < epoch]
            self._started = True
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch}
        for key, value in sorted((logs or {}).items()):
            row[key] = float(np.asarray(value))
        if "learning_rate" not in row and self.model.optimizer is not None:
            row["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
        row["seconds"] = time.perf_counter() - self._t0
        self.rows.append(row)
        self._write()

    def _write(self):
        keys = (
            ["epoch"]
            + sorted({k for r in self.rows for k in r} - {"epoch", "seconds"})
            + ["seconds"]
        )
        write_csv(self.path, self.rows, keys)


class _EpochSync(keras.callbacks.Callback):
    """Tell the training dataset which epoch starts (also right after a resume)."""

    def __init__(self, dataset: MaskingDataset):
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)


def read_history(path) -> list[dict]:
    """Rows of a history CSV, numbers as floats (``epoch`` as int), empty cells left out."""
    return [
        {k: (int(v) if k == "epoch" else v) for k, v in r.items() if v != ""}
        for r in read_csv(path)
    ]


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------
def _split(data):
    """(x_train, x_val or None) from a helpers.data.Dataset, a (train, val) pair or one array."""
    if hasattr(data, "x_train") and hasattr(data, "x_val"):
        x_val = data.x_val if len(data.x_val) else None
        return data.x_train, x_val
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise SettingError(
                "data",
                f"a {type(data).__name__} of {len(data)}",
                "must be a Dataset, an array or an (x_train, x_val) pair",
            )
        return data[0], data[1]
    return data, None


def run_folder(run_dir=None, run_name=None, save_root=SAVE_ROOT) -> Path:
    """``run_dir`` if given, else ``save_root/run_name``."""
    if run_dir is not None:
        return Path(run_dir)
    if (
        not run_name
        or not isinstance(run_name, str)
        or os.sep in run_name
        or run_name in (".", "..")
    ):
        raise SettingError("run_name", run_name, "must be a plain folder name (or pass run_dir)")
    return Path(save_root) / run_name


def _learning_rate(lr, lr_schedule, warmup_epochs, epochs, steps):
    check_positive_number(lr, "lr")
    check_choice(lr_schedule, "lr_schedule", LR_SCHEDULES)
    if lr_schedule == "plateau":
        return float(lr)
    warmup = min(int(warmup_epochs) * steps, max(epochs * steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else float(lr),
        decay_steps=max(epochs * steps - warmup, 1),
        alpha=0.01,
        warmup_target=float(lr) if warmup else None,
        warmup_steps=warmup,
    )


def _sublayers(layer) -> list:
    """Every layer inside ``layer``, nested ones included, each once, found through public
    attributes only: a model's ``layers``, and the layers a custom layer holds in its public
    attributes (alone, or in a list, tuple or dict)."""
    seen, found, todo = {id(layer)}, [], [layer]
    while todo:
        current = todo.pop()
        children = list(current.layers) if isinstance(current, keras.Model) else []
        for name, value in vars(current).items():
            if name.startswith("_"):
                continue
            if isinstance(value, dict):
                value = list(value.values())
            children += [v for v in (value if isinstance(value, (list, tuple)) else [value])]
        for child in children:
            if isinstance(child, keras.layers.Layer) and id(child) not in seen:
                seen.add(id(child))
                found.append(child)
                todo.append(child)
    return found


def _dropout_rates(model) -> list[float]:
    """Rates of every Dropout layer inside ``model`` (nested layers included), a multi-head
    attention's (which keeps its Dropout layer private) read from its ``dropout``."""
    rates = []
    for layer in _sublayers(model):
        if isinstance(layer, keras.layers.Dropout):
            rates.append(float(layer.rate))
        elif isinstance(layer, keras.layers.MultiHeadAttention):
            rates.append(float(layer.dropout))
    return rates


def _jit_compile(value, model=None):
    """``"auto"``: XLA, except for the TensorFlow backend on a CPU-only machine when ``model`` has
    dropout (XLA's random numbers make dropout much slower there). Without dropout XLA is the
    faster choice on the CPU too (``bench speed``). Never
    inside a TensorFlow strategy of several replicas (``train(devices=N)``): XLA cannot reach the
    variables of MirroredStrategy's other replicas."""
    if keras.backend.backend() != "tensorflow":
        return value if value == "auto" else bool(value)
    import tensorflow as tf  # that backend only

    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        return False
    if value != "auto":
        return bool(value)
    if not tf.config.list_physical_devices("GPU"):
        return model is not None and not any(rate > 0 for rate in _dropout_rates(model))
    return "auto"


class TimeBudget(keras.callbacks.Callback):
    """Train for ``seconds`` of wall time, whatever the machine's speed.

    With ``schedule="cosine"`` the learning rate follows a linear warm-up (the first
    ``warmup_fraction`` of the budget) then a cosine decay to ``alpha * peak`` over the elapsed
    fraction of the budget, set before every batch; with ``plateau`` it is left alone. Training
    stops after the batch that spends the budget (validation of that epoch still runs).
    ``spent``: seconds already trained (a resumed run). Not deterministic: how many batches fit
    depends on the machine and its load.
    """

    def __init__(
        self,
        seconds: float,
        peak_lr: float,
        *,
        schedule: str = "cosine",
        warmup_fraction: float = 0.05,
        alpha: float = 0.01,
        spent: float = 0.0,
    ):
        super().__init__()
        check_positive_number(seconds, "seconds")
        self.seconds, self.peak_lr, self.schedule = float(seconds), float(peak_lr), schedule
        self.warmup_fraction, self.alpha, self.spent = (
            float(warmup_fraction),
            float(alpha),
            float(spent),
        )
        self.start = 0.0

    def fraction(self) -> float:
        """Share of the budget spent so far."""
        return (time.perf_counter() - self.start) / self.seconds

    def learning_rate(self, fraction: float) -> float:
        f = min(max(fraction, 0.0), 1.0)
        if f < self.warmup_fraction:
            return self.peak_lr * max(f / self.warmup_fraction, 1e-3)
        decay = (f - self.warmup_fraction) / max(1.0 - self.warmup_fraction, 1e-9)
        return self.peak_lr * (
            self.alpha + (1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * decay))
        )

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter() - self.spent

    def on_train_batch_begin(self, batch, logs=None):
        if self.schedule == "cosine":
            self.model.optimizer.learning_rate.assign(self.learning_rate(self.fraction()))

    def on_train_batch_end(self, batch, logs=None):
        if self.fraction() >= 1.0:
            self.model.stop_training = True


class _ImagesSeen(keras.callbacks.Callback):
    """Count the training images of every batch; add the running total to each epoch's logs."""

    def __init__(self, n_images: int, batch_size: int, seen: int = 0):
        super().__init__()
        self.n_images, self.batch_size, self.seen = n_images, batch_size, int(seen)

    def on_train_batch_end(self, batch, logs=None):
        self.seen += min(self.batch_size, self.n_images - batch * self.batch_size)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["images_seen"] = self.seen


def _budget(epochs, images, minutes, n_train: int) -> tuple[int, float | None]:
    """(most epochs, seconds or None) from one budget: ``epochs``, ``images`` seen, or
    ``minutes``."""
    values = {"epochs": epochs, "images": images, "minutes": minutes}
    given = [name for name, v in values.items() if v is not None]
    if len(given) > 1 and given != ["epochs", "minutes"]:
        raise SettingError(  # names the second budget given
            given[1],
            values[given[1]],
            "give one training budget: epochs, images or minutes (minutes may come with epochs as "
            f"a cap); got {', '.join(given)}",
        )
    seconds = None
    if minutes is not None:
        seconds = 60.0 * check_positive_number(minutes, "minutes")
    if images is not None:
        return math.ceil(check_positive_int(images, "images") / n_train), None
    if epochs is None:
        return (10 if seconds is None else 100_000), seconds
    return check_positive_int(epochs, "epochs"), seconds


@keras.saving.register_keras_serializable(package="helpers")
class ScaledAdam(keras.optimizers.Adam):
    """Adam whose step for a variable is multiplied by ``scales[variable.path]`` (1 for a path
    not in it): a lower learning rate for a pretrained backbone than for the new layers
    (:class:`helpers.pretrained.PretrainedViT`). Keras' optimizers have one learning rate, and
    scaling the gradients instead would change nothing: Adam normalises them."""

    def __init__(self, learning_rate=1e-3, scales=None, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.scales = {str(k): float(v) for k, v in (scales or {}).items()}

    def build(self, variables):
        if not self.built:  # the path of each variable, in the order of its index
            self.variable_paths = tuple(v.path for v in variables)
        super().build(variables)

    def update_step(self, gradient, variable, learning_rate):
        # On TensorFlow ``variable`` is the tf.Variable behind the Keras one (a replica's copy of
        # it under a strategy of several devices), which has no path. Keras has no public way
        # from it to its index: ``_get_variable_index``, which every built-in optimizer's
        # ``update_step`` calls, checked against Keras 3.15
        # (tests/test_training.py::test_scaled_adam_scales_the_step_of_the_listed_variables).
        path = self.variable_paths[self._get_variable_index(variable)]
        if path in self.scales:
            learning_rate = learning_rate * self.scales[path]
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "scales": dict(self.scales)}


def compile_model(model, learning_rate, jit_compile="auto", loss: str = "mse") -> None:
    """Compile ``model`` for training: Adam at ``learning_rate`` (a number or a schedule; with the
    step multipliers of the model's ``lr_scales()``, :class:`ScaledAdam`), the loss
    (:func:`training_loss`: the masked MSE by default), XLA as :func:`_jit_compile` decides; shared
    by :func:`train` and ``bench speed``."""
    scales = model.lr_scales() if isinstance(model, MaskedImageModel) else {}
    adam = ScaledAdam(learning_rate, scales) if scales else keras.optimizers.Adam(learning_rate)
    model.compile(
        optimizer=adam, loss=training_loss(loss), jit_compile=_jit_compile(jit_compile, model)
    )
    model.optimizer.build(model.trainable_variables)  # else TensorFlow traces the train step twice
    # Keras keeps the epoch that BackupAndRestore restored on the model, and every later fit
    # starts there; no public way to clear it (checked against Keras 3.15,
    # tests/test_training.py::test_compile_model_forgets_the_epoch_of_an_earlier_restore)
    if hasattr(model, "_initial_epoch"):
        model._initial_epoch = None


def _callbacks(
    folder, train_ds, previous, monitor, seconds, lr, lr_schedule, patience=None, val_ds=None
):
    """The callbacks of a run in ``folder``: epoch sync, images seen, the validation PSNR (when
    there is ``val_ds``), backup (resume), history, best model; a :class:`TimeBudget` when
    ``seconds`` is given; the plateau schedule; early stopping after ``patience`` epochs without
    progress when given. ``previous``: the history rows of the interrupted run being resumed (or
    ``[]``)."""
    best_so_far = min((r[monitor] for r in previous if monitor in r), default=math.inf)
    seen = previous[-1].get("images_seen", 0) if previous else 0
    cbs = [
        _EpochSync(train_ds),
        _ImagesSeen(len(train_ds.images), train_ds.batch_size, seen=seen),
        *([ValidationPSNR(val_ds)] if val_ds is not None else []),
        keras.callbacks.BackupAndRestore(str(folder / BACKUP), delete_checkpoint=True),
        HistoryCSV(folder / HISTORY),
        AtomicCheckpoint(folder / BEST, monitor=monitor, initial_best=best_so_far),
    ]
    if seconds is not None:
        spent = sum(r.get("seconds", 0.0) for r in previous)
        cbs.insert(0, TimeBudget(seconds, lr, schedule=lr_schedule, spent=spent))
    if lr_schedule == "plateau":
        cbs.append(
            keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=3, min_lr=1e-5)
        )
    if patience is not None:
        cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=patience))
    return cbs


def train(
    model,
    data,
    *,
    strategy: str = "random",
    ratio=0.5,
    epochs: int | None = None,
    images: int | None = None,
    minutes: float | None = None,
    batch_size: int = 64,
    seed: int = 0,
    run_dir=None,
    run_name: str | None = None,
    save_root=SAVE_ROOT,
    recipe: str = "tuned",
    lr: float | None = None,
    lr_schedule: str | None = None,
    warmup_epochs: int = 2,
    early_stopping: bool = False,
    patience: int = 10,
    augment: bool | None = None,
    loss_on: str | None = None,
    loss: str | None = None,
    score_fn="variance",
    verbose="auto",
    callbacks=(),
    jit_compile="auto",
    devices: int = 1,
    workers: int = 1,
) -> dict:
    """Train ``model`` (from :mod:`helpers.models`) to predict hidden patches; resume if
    interrupted.

    Args:
        data: a :class:`helpers.data.Dataset` (``x_train``/``x_val``), an ``(x_train, x_val)`` pair
            or one array of training images (then ``loss`` is monitored instead of ``val_loss``).
        strategy, ratio, score_fn: masks, as in :class:`MaskingDataset`; validation masks are drawn
            once (seed + 1) and kept, so ``val_loss`` is comparable across epochs.
        epochs, images, minutes: the budget, one of them. ``epochs`` (default 10) or ``images``
            seen (rounded up to whole epochs) are deterministic; ``minutes`` of wall time
            (:class:`TimeBudget`) fills the time whatever the machine's speed, the learning rate
            decaying over the time (``epochs`` may then cap it).
        run_dir / run_name: the folder for ``best.keras``, ``final.keras``, ``history.csv`` and
            the ``backup/`` of ``BackupAndRestore``: ``run_dir``, else ``save_root/run_name``.
            Calling again with the same folder after an interruption continues where it stopped;
            after a completed run the backup is gone and training starts again from epoch 0.
        recipe: ``tuned``, ``long`` or ``reference`` (:mod:`helpers.recipes`): the defaults of
            ``lr``, ``lr_schedule``, ``augment``, ``loss_on`` and ``loss`` for the model (its
            ``builder``); a value given here wins.
        lr, lr_schedule: Adam learning rate; ``plateau`` halves it when the monitored loss stalls
            for 3 epochs, ``cosine`` warms up linearly for ``warmup_epochs`` (with ``minutes``: the
            first 5 % of the time) then decays (cosine).
        early_stopping, patience: stop when the monitored loss has not improved for ``patience``
        epochs.
        augment: random horizontal flips of the training images.
        loss_on: ``masked`` (MSE over masked patches) or ``all``; None for the recipe's.
        loss: ``mse`` (the MSE over the weighted pixels) or ``psnr`` (minus each image's PSNR
            over them, averaged: :class:`NegativePSNR`); ``loss`` and ``val_loss`` are then
            minus the mean PSNR in dB. None: the recipe's
            (:func:`helpers.recipes.train_settings`).
        verbose: Keras verbosity: ``"auto"``/1 progress bar, 2 one line per epoch, 0 silent.
        callbacks: extra Keras callbacks (run after the built-in ones).
        jit_compile: passed to ``compile``; ``"auto"``: see :func:`_jit_compile`.
        devices: train data parallel on this many local devices (:mod:`helpers.devices`):
            ``model`` is rebuilt in the distribution's scope from its config and weights, trained
            there with ``batch_size`` split across the devices (a multiple of ``devices``), and
            its weights copied back into ``model`` at the end.
        workers: threads that assemble the batches (``PyDataset``'s ``workers``; the batches keep
            their order, so the results do not change): more than 1 where a GPU waits for them.

    Mixed precision is chosen when the model is built (``mixed_precision="mixed_bfloat16"`` or
    ``"mixed_float16"`` in the builders); with float16 ``compile`` wraps Adam in a loss-scale
    optimizer.

    Returns a dict: ``history`` (column -> list over all epochs of the run folder, resumed ones
    included), ``run_dir``, ``best``, ``final`` (paths), ``epochs`` (completed), ``images_seen``
    (training images over all epochs), ``seconds`` (wall time of this call), ``images_per_s``
    (training images per second of this call) and ``settings`` (recipe, lr, lr_schedule, augment,
    loss_on, and loss unless it is ``mse``).
    """
    x_train, x_val = training_images(model, data)
    defaults = train_settings(recipe, model.builder)
    lr = defaults["lr"] if lr is None else lr
    lr_schedule = defaults["lr_schedule"] if lr_schedule is None else lr_schedule
    augment = defaults["augment"] if augment is None else bool(augment)
    loss_on = defaults["loss_on"] if loss_on is None else loss_on
    loss = defaults.get("loss", "mse") if loss is None else loss
    epochs, seconds = _budget(epochs, images, minutes, len(x_train))
    check_choice(loss_on, "loss_on", LOSS_ON)
    check_choice(loss, "loss", LOSSES)
    devices = check_devices(devices, batch_size)
    workers = check_positive_int(workers, "workers")
    folder = run_folder(run_dir, run_name, save_root)
    folder.mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(check_positive_int(seed, "seed", minimum=0))
    train_ds, val_ds = masking_datasets(
        model, x_train, x_val, strategy, ratio, batch_size, seed, augment, loss_on, score_fn,
        pad_to=devices, workers=workers,
    )  # fmt: skip
    if seconds is None:
        learning_rate = _learning_rate(lr, lr_schedule, warmup_epochs, epochs, len(train_ds))
    else:
        _learning_rate(lr, lr_schedule, 0, 1, 1)  # checks lr and lr_schedule
        learning_rate = float(lr)  # TimeBudget sets it before every batch
    history_path = folder / HISTORY
    resuming = (folder / BACKUP).exists() and history_path.exists()
    previous = read_history(history_path) if resuming else []
    monitor = "val_loss" if val_ds is not None else "loss"
    patience = check_positive_int(patience, "patience") if early_stopping else None
    cbs = _callbacks(
        folder, train_ds, previous, monitor, seconds, lr, lr_schedule, patience, val_ds=val_ds
    )
    with data_parallel(devices):
        trained = model if devices == 1 else _replica(model)
        compile_model(trained, learning_rate, jit_compile, loss=loss)
        start = time.perf_counter()
        fit = trained.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            callbacks=cbs + list(callbacks),
            verbose=verbose,
            shuffle=False,
        )
        seconds_here = time.perf_counter() - start
        save_atomic(trained, folder / FINAL)
    if trained is not model:
        model.set_weights(trained.get_weights())
    settings = {"recipe": recipe, "lr": float(lr), "lr_schedule": lr_schedule, "augment": augment}
    settings["loss_on"] = loss_on
    if loss != "mse":  # recorded where it is not the default
        settings["loss"] = loss
    return _result(folder, previous, seconds_here, bool(fit.epoch), settings)


def describe_loss(settings: dict) -> str:
    """What a training run minimised, in words, from the ``settings`` :func:`train` returns:
    ``'MSE on the hidden patches'``, ``'minus the PSNR on every patch'``."""
    what = "minus the PSNR" if settings.get("loss", "mse") == "psnr" else "MSE"
    where = "every patch" if settings.get("loss_on", "masked") == "all" else "the hidden patches"
    return f"{what} on {where}"


def training_images(model, data) -> tuple[np.ndarray, np.ndarray | None]:
    """The training and validation images of ``data`` (see :func:`train`), checked against
    ``model``; no validation images: None."""
    if not isinstance(model, MaskedImageModel):
        raise SettingTypeError(
            "model",
            type(model).__name__,
            "train needs a Keras model from helpers.models (build_vit, build_mae, "
            "build_cnn_autoencoder)",
        )
    x_train, x_val = _split(data)
    if x_val is not None and len(x_val) == 0:
        x_val = None
    for name, x in (("x_train", x_train), ("x_val", x_val)):
        if x is not None:
            check_images(x, name)
            check_fits(model, x.shape[1:], model.patch_size)
    return x_train, x_val


def _replica(model):
    """A copy of ``model`` built in the current distribution scope (its variables placed there)."""
    replica = type(model).from_config(model.get_config())
    replica.set_weights(model.get_weights())
    return replica


def masking_datasets(
    model, x_train, x_val, strategy, ratio, batch_size, seed, augment, loss_on, score_fn, **kwargs
):
    """The training :class:`MaskingDataset` (fresh masks every epoch) and the validation one
    (masks drawn once from ``seed + 1`` at the middle of a ratio range, kept; None without
    validation images); ``kwargs`` (``pad_to``, ``workers``) go to both."""
    common = dict(
        patch_size=model.patch_size,
        strategy=strategy,
        batch_size=batch_size,
        loss_on=loss_on,
        score_fn=score_fn,
        min_masked=model.min_masked,
        **kwargs,
    )
    train_ds = MaskingDataset(x_train, ratio=ratio, seed=seed, augment=augment, **common)
    if x_val is None:
        return train_ds, None
    val_ratio = float(np.mean(ratio)) if isinstance(ratio, (tuple, list)) else ratio
    return train_ds, MaskingDataset(
        x_val, ratio=val_ratio, seed=seed + 1, fresh_masks=False, **common
    )


def _result(folder, previous, seconds_here, trained, settings) -> dict:
    """What :func:`train` returns, from the history file of the run folder."""
    history_path = folder / HISTORY
    rows = read_history(history_path) if history_path.exists() else []
    history = {k: [r.get(k, math.nan) for r in rows] for k in (rows[0] if rows else {})}
    seen_before = previous[-1].get("images_seen", 0) if previous else 0
    seen = int(rows[-1].get("images_seen", 0)) if rows else 0
    speed = (seen - seen_before) / seconds_here if seconds_here > 0 and trained else math.nan
    return {
        "history": history,
        "run_dir": folder,
        "best": folder / BEST,
        "final": folder / FINAL,
        "epochs": len(rows),
        "images_seen": seen,
        "seconds": seconds_here,
        "images_per_s": speed,
        "settings": settings,
    }
