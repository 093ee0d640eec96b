"""Training: fresh masks every epoch, masked-patch loss, checkpoints that survive interruptions.

Masks depend only on ``(seed, epoch, batch)``: a resumed run sees the masks it would have seen."""

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
from .recipes import LOSS_ON, LOSSES, LR_SCHEDULES, train_settings

SAVE_ROOT = "saved_models"
BEST, FINAL, HISTORY, BACKUP = "best.keras", "final.keras", "history.csv", "backup"


class MaskingDataset(keras.utils.PyDataset):
    """Batches of ``({"images", "mask"}, images, pixel weights)``, masks drawn fresh each epoch.

    Args:
        images: float32 (N, H, W, C) in [0, 1].
        strategy: a strategy of :mod:`helpers.masking`, or a list of them: one drawn per batch.
        ratio: masking ratio, or ``(low, high)``: one ratio drawn uniformly per batch.
        fresh_masks: new masks and order each epoch; ``False`` keeps those of epoch 0 (validation).
        shuffle, augment: shuffle the images each epoch (only with ``fresh_masks``); flip half of
            them horizontally.
        loss_on: ``masked`` (weight 1 on the pixels of masked patches, 0 elsewhere) or ``all``.
        score_fn: score function of the ``importance`` strategy, or a name of its ``SCORES``.
        min_masked: fewest patches a mask may hide (an MAE's limit); checked against ``ratio``.
        pad_to: pad each batch to a multiple of this many images with copies of weight 0.
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
        self.patch_size, self.grid = patch_size, grid_shape(images.shape[1:3], patch_size)
        strategies = [strategy] if isinstance(strategy, str) else strategy
        if not isinstance(strategies, (tuple, list)) or not strategies:
            problem = f"must be one of {list(STRATEGIES)} or a non-empty list of them"
            raise SettingError("strategy", strategy, problem)
        self.strategies = tuple(check_choice(s, "strategy", STRATEGIES) for s in strategies)
        self.strategy = strategy if isinstance(strategy, str) else list(self.strategies)
        self.ratio = check_ratio_spec(ratio)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.fresh_masks, self.shuffle = bool(fresh_masks), bool(shuffle)
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

    def _order(self) -> np.ndarray:
        if not (self.shuffle and self.fresh_masks):
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, self.epoch, 0]).permutation(len(self.images))

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Images (after flipping) and boolean mask (n, L) of batch ``index`` of this epoch."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch index must be in [0, {len(self)}), got {index}")
        rng = np.random.default_rng([self.seed, self.epoch if self.fresh_masks else 0, 1, index])
        images = self.images[self._order()[index * self.batch_size : (index + 1) * self.batch_size]]
        if self.augment:  # images is a copy (fancy indexing)
            flip = rng.random(len(images)) < 0.5
            images[flip] = images[flip, :, ::-1]
        ratio = self.ratio[0] if self.ratio[0] == self.ratio[1] else float(rng.uniform(*self.ratio))
        n = len(self.strategies)
        strategy = self.strategies[rng.integers(n) if n > 1 else 0]
        kwargs = dict(images=images, patch_size=self.patch_size, score_fn=self.score_fn, seed=rng)
        return images, make_mask(strategy, ratio, **kwargs)

    def __getitem__(self, index: int):
        images, mask = self.batch(index)
        images = images.astype(np.float32, copy=False)
        hidden = patch_mask_to_pixels(mask, self.patch_size, images.shape[1:3])[..., 0]
        weight = (np.ones_like(hidden) if self.loss_on == "all" else hidden).astype(np.float32)
        extra = np.arange(-len(images) % self.pad_to) % len(images)
        if len(extra):  # copies that weigh nothing, so that every device gets as many images
            images, mask = (np.concatenate([a, a[extra]]) for a in (images, mask))
            weight = np.concatenate([weight, np.zeros_like(weight[extra])])
        return {"images": images, "mask": mask.astype(np.float32)}, images, weight


def masked_mse():
    """MSE averaged over the weighted entries: with 0/1 weights, the MSE over the masked values."""
    return keras.losses.MeanSquaredError(reduction="mean_with_sample_weight", name="masked_mse")


@keras.saving.register_keras_serializable(package="helpers")
class NegativePSNR(keras.losses.Loss):
    """Minus the mean over the images of their PSNR (dB, peak 1) on the weighted pixels, images of
    weight 0 (padding) left out; ``floor`` (an MSE) keeps a perfect image from dominating."""

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
        count = keras.ops.sum(weight, axis=axes)
        counted = keras.ops.cast(count > 0, error.dtype)
        mse = keras.ops.sum(error * weight, axis=axes) / keras.ops.maximum(count, 1e-12)
        psnr = (-10.0 / math.log(10.0)) * keras.ops.log(mse + self.floor)
        loss = -keras.ops.sum(psnr * counted) / keras.ops.maximum(keras.ops.sum(counted), 1.0)
        # Under tf.distribute Keras sums the replicas' gradients; like its own losses' __call__,
        # this one divides by the replica count (Keras 3.15; tests/test_devices.py)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf  # that backend only

            loss = loss / float(tf.distribute.get_strategy().num_replicas_in_sync)
        return loss

    def get_config(self):
        return {**super().get_config(), "floor": self.floor}


def training_loss(loss: str = "mse"):
    """The Keras loss ``mse`` (:func:`masked_mse`) or ``psnr`` (:class:`NegativePSNR`)."""
    return masked_mse() if check_choice(loss, "loss", LOSSES) == "mse" else NegativePSNR()


def save_atomic(model, path) -> Path:
    """``model.save`` to a temporary file next to ``path``, then ``os.replace`` it into place."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the model atomically when ``monitor`` beats its best (``initial_best`` at first)."""

    def __init__(
        self, path, monitor: str = "val_loss", initial_best: float = math.inf, verbose: int = 0
    ):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, float(initial_best)
        self.verbose = verbose

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value) or value >= self.best:
            return
        self.best = float(value)
        save_atomic(self.model, self.path)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: {self.monitor} improved to {value:.5f}, saved {self.path}")


class HistoryCSV(keras.callbacks.Callback):
    """Per-epoch logs in a CSV file (``epoch``, the sorted log keys, ``seconds``), rewritten
    atomically; on resuming, rows from this run's first epoch on (an interrupted attempt's) go."""

    def __init__(self, path):
        super().__init__()
        self.path, self.rows, self._t0 = Path(path), [], 0.0

    def on_train_begin(self, logs=None):
        self.rows = read_history(self.path) if self.path.exists() else []

    def on_epoch_begin(self, epoch, logs=None):  # drops rows only at a run's first epoch
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch]
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **{k: float(np.asarray(v)) for k, v in sorted((logs or {}).items())}}
        if "learning_rate" not in row and self.model.optimizer is not None:
            row["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
        row["seconds"] = time.perf_counter() - self._t0
        self.rows.append(row)
        keys = sorted({k for r in self.rows for k in r} - {"epoch", "seconds"})
        write_csv(self.path, self.rows, ["epoch", *keys, "seconds"])


class _Progress(keras.callbacks.Callback):
    """Set the training dataset's epoch (also after a resume); log the training images seen and,
    given ``val_ds``, ``val_psnr_masked``: the mean over the validation images of their
    masked-region PSNR (dB), whatever the loss, so that curves share one axis."""

    def __init__(self, dataset: MaskingDataset, seen: int = 0, val_ds=None):
        super().__init__()
        self.dataset, self.seen, self.val_ds = dataset, int(seen), val_ds

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)

    def on_train_batch_end(self, batch, logs=None):
        size = self.dataset.batch_size
        self.seen += min(size, len(self.dataset.images) - batch * size)

    def on_epoch_end(self, epoch, logs=None):
        psnr = []
        for inputs, images, weight in self.val_ds or ():
            keep = weight.reshape(len(weight), -1).sum(axis=1) > 0  # not a padding copy
            # a direct call: under tf.distribute predict_on_batch gathers the replicas' outputs
            predicted = np.asarray(self.model(inputs, training=False), dtype=np.float64)
            hidden = patch_mask_to_pixels(
                inputs["mask"] > 0.5, self.val_ds.patch_size, images.shape[1:3]
            )
            error = ((predicted - images) ** 2 * hidden).sum(axis=(1, 2, 3))
            mse = error / np.maximum(hidden.sum(axis=(1, 2, 3)) * images.shape[-1], 1)
            psnr.append(psnr_from_mse(mse)[keep])
        if logs is not None:
            logs["images_seen"] = self.seen
            if psnr:
                logs["val_psnr_masked"] = float(np.mean(np.concatenate(psnr)))


class TimeBudget(keras.callbacks.Callback):
    """Train for ``seconds`` of wall time (``spent`` already, when resuming); ``cosine``: warm up
    linearly over ``warmup_fraction`` of the budget, then decay (cosine) to ``alpha * peak_lr``."""

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
        self.warmup_fraction, self.alpha = float(warmup_fraction), float(alpha)
        self.spent, self.start = float(spent), 0.0

    def fraction(self) -> float:
        """Share of the budget spent so far."""
        return (time.perf_counter() - self.start) / self.seconds

    def learning_rate(self, fraction: float) -> float:
        f = min(max(fraction, 0.0), 1.0)
        if f < self.warmup_fraction:
            return self.peak_lr * max(f / self.warmup_fraction, 1e-3)
        decay = (f - self.warmup_fraction) / max(1.0 - self.warmup_fraction, 1e-9)
        cosine = 1 + math.cos(math.pi * decay)
        return self.peak_lr * (self.alpha + (1 - self.alpha) * 0.5 * cosine)

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter() - self.spent

    def on_train_batch_begin(self, batch, logs=None):
        if self.schedule == "cosine":
            self.model.optimizer.learning_rate.assign(self.learning_rate(self.fraction()))

    def on_train_batch_end(self, batch, logs=None):
        if self.fraction() >= 1.0:
            self.model.stop_training = True


def read_history(path) -> list[dict]:
    """Rows of a history CSV, numbers as floats (``epoch`` as int), empty cells left out."""
    return [
        {k: int(v) if k == "epoch" else v for k, v in r.items() if v != ""} for r in read_csv(path)
    ]


def _learning_rate(lr, lr_schedule, warmup_epochs, epochs, steps, seconds=None):
    """The learning rate: a number, or a linear warm-up then cosine decay over ``epochs``."""
    check_positive_number(lr, "lr")
    check_choice(lr_schedule, "lr_schedule", LR_SCHEDULES)
    if lr_schedule == "plateau" or seconds is not None:
        return float(lr)
    warmup = min(int(warmup_epochs) * steps, max(epochs * steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else float(lr),
        decay_steps=max(epochs * steps - warmup, 1),
        alpha=0.01,
        warmup_target=float(lr) if warmup else None,
        warmup_steps=warmup,
    )


def _has_dropout(model) -> bool:
    """Whether a Dropout layer or a multi-head attention in ``model`` (nested layers, found through
    public attributes, included) has a rate above 0."""
    seen, todo = {id(model)}, [model]
    while todo:
        current = todo.pop()
        children = list(current.layers) if isinstance(current, keras.Model) else []
        for name, value in vars(current).items():
            if not name.startswith("_"):
                value = list(value.values()) if isinstance(value, dict) else value
                children += value if isinstance(value, (list, tuple)) else [value]
        for child in children:
            if isinstance(child, keras.layers.Layer) and id(child) not in seen:
                seen.add(id(child))
                todo.append(child)
                # a multi-head attention keeps its Dropout layer private
                rates = (keras.layers.Dropout, "rate"), (keras.layers.MultiHeadAttention, "dropout")
                if any(isinstance(child, t) and float(getattr(child, a)) > 0 for t, a in rates):
                    return True
    return False


def _jit_compile(value, model=None):
    """``"auto"``: XLA, except on a CPU-only TensorFlow for a ``model`` with dropout (much slower
    there). Never across TensorFlow replicas: XLA cannot reach the other replicas' variables."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # that backend only

        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            return False
        if value == "auto" and not tf.config.list_physical_devices("GPU"):
            return model is not None and not _has_dropout(model)
    return value if value == "auto" else bool(value)


def _budget(epochs, images, minutes, n_train: int) -> tuple[int, float | None]:
    """(most epochs, seconds or None) from the budget: ``epochs``, ``images`` or ``minutes``."""
    values = {"epochs": epochs, "images": images, "minutes": minutes}
    given = [name for name, v in values.items() if v is not None]
    if len(given) > 1 and given != ["epochs", "minutes"]:
        problem = "give one training budget: epochs, images or minutes (minutes may come with "
        problem += f"epochs as a cap); got {', '.join(given)}"
        raise SettingError(given[1], values[given[1]], problem)  # names the second budget given
    seconds = None if minutes is None else 60.0 * check_positive_number(minutes, "minutes")
    if images is not None:
        return math.ceil(check_positive_int(images, "images") / n_train), None
    if epochs is None:
        return (10 if seconds is None else 100_000), seconds
    return check_positive_int(epochs, "epochs"), seconds


@keras.saving.register_keras_serializable(package="helpers")
class ScaledAdam(keras.optimizers.Adam):
    """Adam whose step for a variable is multiplied by ``scales[variable.path]`` (default 1): a
    lower rate for a pretrained backbone (scaling the gradients would not do: Adam normalises)."""

    def __init__(self, learning_rate=1e-3, scales=None, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.scales = {str(k): float(v) for k, v in (scales or {}).items()}

    def build(self, variables):
        if not self.built:  # the path of each variable, in the order of its index
            self.variable_paths = tuple(v.path for v in variables)
        super().build(variables)

    def update_step(self, gradient, variable, learning_rate):
        # On TensorFlow ``variable`` has no path, and no public way leads to its index: private
        # ``_get_variable_index`` (Keras 3.15; tests/test_training.py::test_scaled_adam_*)
        path = self.variable_paths[self._get_variable_index(variable)]
        super().update_step(gradient, variable, learning_rate * self.scales.get(path, 1.0))

    def get_config(self):
        return {**super().get_config(), "scales": dict(self.scales)}


def compile_model(model, learning_rate, jit_compile="auto", loss: str = "mse") -> None:
    """Compile ``model`` with Adam (:class:`ScaledAdam` with its ``lr_scales()``) at
    ``learning_rate`` (a number or a schedule) and the loss of :func:`training_loss`."""
    scales = model.lr_scales() if isinstance(model, MaskedImageModel) else {}
    adam = ScaledAdam(learning_rate, scales) if scales else keras.optimizers.Adam(learning_rate)
    jit = _jit_compile(jit_compile, model)
    model.compile(optimizer=adam, loss=training_loss(loss), jit_compile=jit)
    model.optimizer.build(model.trainable_variables)  # else TensorFlow traces the train step twice
    # Every later fit would start at the epoch BackupAndRestore restored; no public way to clear
    # it (Keras 3.15; tests/test_training.py::test_compile_model_forgets_the_epoch_*)
    if hasattr(model, "_initial_epoch"):
        model._initial_epoch = None


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
    """Train ``model`` (of :mod:`helpers.models`) to predict hidden patches; resume if interrupted.

    Args:
        data: a :class:`helpers.data.Dataset`, an ``(x_train, x_val)`` pair or the training images
            alone (then ``loss`` is monitored instead of ``val_loss``).
        strategy, ratio, score_fn: as in :class:`MaskingDataset`; the validation masks are drawn
            once (seed + 1).
        epochs, images, minutes: the budget, one of them (``epochs`` may cap ``minutes``):
            ``epochs`` (default 10), ``images`` seen (rounded up to whole epochs) or ``minutes``
            of wall time (:class:`TimeBudget`, not deterministic).
        run_dir, run_name: the run folder (``best.keras``, ``final.keras``, ``history.csv``,
            ``backup/``): ``run_dir``, else ``save_root/run_name``; an interrupted run resumes.
        recipe: the defaults (None) of ``lr``, ``lr_schedule``, ``augment``, ``loss_on``, ``loss``.
        lr_schedule: ``plateau`` halves ``lr`` when the monitored loss stalls for 3 epochs,
            ``cosine`` warms up linearly for ``warmup_epochs`` (or 5 % of ``minutes``) then decays.
        early_stopping, patience: stop after ``patience`` epochs without improvement.
        loss: ``mse`` or ``psnr`` (:class:`NegativePSNR`: the losses are then minus the mean PSNR).
        callbacks: extra Keras callbacks (run after the built-in ones).
        devices: train data parallel on this many local devices (``batch_size`` a multiple of it).
        workers: threads that assemble the batches (their order is kept).

    Returns:
        A dict: ``history`` (column -> list over every epoch of the run folder), ``run_dir``,
        ``best``, ``final`` (paths), ``epochs`` (completed), ``images_seen`` (over all epochs),
        ``seconds`` and ``images_per_s`` (of this call), ``settings`` (recipe, lr, lr_schedule,
        augment, loss_on, and loss unless it is ``mse``).
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
    plain = isinstance(run_name, str) and run_name not in ("", ".", "..") and os.sep not in run_name
    if run_dir is None and not plain:
        raise SettingError("run_name", run_name, "must be a plain folder name (or pass run_dir)")
    folder = Path(save_root) / run_name if run_dir is None else Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(check_positive_int(seed, "seed", minimum=0))
    kw = dict(patch_size=model.patch_size, strategy=strategy, batch_size=batch_size, pad_to=devices)
    kw.update(loss_on=loss_on, score_fn=score_fn, min_masked=model.min_masked, workers=workers)
    train_ds = MaskingDataset(x_train, ratio=ratio, seed=seed, augment=augment, **kw)
    val_ds = None
    if x_val is not None:  # masks drawn once, at the middle of a ratio range
        val_ratio = float(np.mean(ratio)) if isinstance(ratio, (tuple, list)) else ratio
        val_ds = MaskingDataset(x_val, ratio=val_ratio, seed=seed + 1, fresh_masks=False, **kw)
    learning_rate = _learning_rate(lr, lr_schedule, warmup_epochs, epochs, len(train_ds), seconds)
    resuming = (folder / BACKUP).exists() and (folder / HISTORY).exists()
    previous = read_history(folder / HISTORY) if resuming else []
    seen_before = previous[-1].get("images_seen", 0) if previous else 0
    monitor = "val_loss" if val_ds is not None else "loss"
    best = min((r[monitor] for r in previous if monitor in r), default=math.inf)
    cbs = [
        _Progress(train_ds, seen=seen_before, val_ds=val_ds),
        keras.callbacks.BackupAndRestore(str(folder / BACKUP), delete_checkpoint=True),
        HistoryCSV(folder / HISTORY),
        AtomicCheckpoint(folder / BEST, monitor=monitor, initial_best=best),
    ]
    if seconds is not None:
        spent = sum(r.get("seconds", 0.0) for r in previous)
        cbs.insert(0, TimeBudget(seconds, lr, schedule=lr_schedule, spent=spent))
    if lr_schedule == "plateau":
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor, factor=0.5, patience=3, min_lr=1e-5))
    if early_stopping:
        patience = check_positive_int(patience, "patience")
        cbs.append(keras.callbacks.EarlyStopping(monitor, patience=patience))
    with data_parallel(devices):
        trained = model
        if devices > 1:  # a copy built in the distribution's scope (its variables placed there)
            trained = type(model).from_config(model.get_config())
            trained.set_weights(model.get_weights())
        compile_model(trained, learning_rate, jit_compile, loss=loss)
        start = time.perf_counter()
        fit_kw = dict(validation_data=val_ds, epochs=epochs, verbose=verbose, shuffle=False)
        fit = trained.fit(train_ds, callbacks=cbs + list(callbacks), **fit_kw)
        seconds_here = time.perf_counter() - start
        save_atomic(trained, folder / FINAL)
    if trained is not model:
        model.set_weights(trained.get_weights())
    rows = read_history(folder / HISTORY) if (folder / HISTORY).exists() else []
    seen = int(rows[-1].get("images_seen", 0)) if rows else 0
    speed = (seen - seen_before) / seconds_here if seconds_here > 0 and fit.epoch else math.nan
    settings = dict(recipe=recipe, lr=float(lr), lr_schedule=lr_schedule, augment=augment)
    settings.update(loss_on=loss_on, **({} if loss == "mse" else {"loss": loss}))
    return {
        "history": {k: [r.get(k, math.nan) for r in rows] for k in (rows[0] if rows else {})},
        "run_dir": folder,
        "best": folder / BEST,
        "final": folder / FINAL,
        "epochs": len(rows),
        "images_seen": seen,
        "seconds": seconds_here,
        "images_per_s": speed,
        "settings": settings,
    }


def describe_loss(settings: dict) -> str:
    """What a run minimised, from the ``settings`` of :func:`train`: ``'MSE on every patch'``."""
    what = "minus the PSNR" if settings.get("loss", "mse") == "psnr" else "MSE"
    where = "every patch" if settings.get("loss_on", "masked") == "all" else "the hidden patches"
    return f"{what} on {where}"


def training_images(model, data) -> tuple[np.ndarray, np.ndarray | None]:
    """The training and validation (or None) images of ``data``, checked against ``model``."""
    if not isinstance(model, MaskedImageModel):
        problem = "train needs a Keras model from helpers.models (build_vit, build_mae, "
        raise SettingTypeError("model", type(model).__name__, problem + "build_cnn_autoencoder)")
    if hasattr(data, "x_train") and hasattr(data, "x_val"):
        data = (data.x_train, data.x_val)
    elif not isinstance(data, (tuple, list)):
        data = (data, None)
    if len(data) != 2:
        problem = "must be a Dataset, an array or an (x_train, x_val) pair"
        raise SettingError("data", f"a {type(data).__name__} of {len(data)}", problem)
    x_train, x_val = data
    if x_val is not None and len(x_val) == 0:
        x_val = None
    for name, x in (("x_train", x_train), ("x_val", x_val)):
        if x is not None:
            check_images(x, name)
            check_fits(model, x.shape[1:], model.patch_size)
    return x_train, x_val
