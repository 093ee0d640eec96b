"""Where training runs: data parallel on several devices and mixed precision, with Keras' own
engines (no distribution code of the project's own).

- ``devices=N`` (:func:`data_parallel`): on JAX, ``keras.distribution.DataParallel`` over the first
  ``N`` local devices (variables replicated, every batch split along its first axis); on
  TensorFlow, ``tf.distribute.MirroredStrategy``. The model is built and compiled inside the
  scope (:func:`helpers.training.train` rebuilds it there from its config and weights). The global
  batch (``batch_size``) is split across the devices, so it must be a multiple of ``N``. Masks are
  drawn on the host for every image of the global batch, so the same seed gives the same masks
  whatever ``N``. Several hosts: set Keras' ``KERAS_DISTRIBUTION_JOB_ADDRESSES``,
  ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID`` on each (JAX);
  :func:`local_devices` then calls ``keras.distribution.initialize`` (not tested here: one host).
- ``precision`` (:data:`PRECISIONS`): ``float32``, ``mixed_bfloat16`` or ``mixed_float16`` (a GPU
  only; ``compile`` wraps the optimizer in a ``LossScaleOptimizer``). Every model's output layers
  are float32, so the loss and the metrics are computed in float32.

On a CPU, two devices are simulated for tests with ``XLA_FLAGS=--xla_force_host_platform_device_
count=2`` (JAX, before it starts) or ``tf.config.set_logical_device_configuration`` (TensorFlow).
"""

from __future__ import annotations

import contextlib
import os

import keras

from ._checks import PRECISIONS, SettingError, check_choice, check_positive_int


def policy_name(precision) -> str:
    """The Keras dtype policy of a ``precision`` setting: a name of :data:`PRECISIONS`, or a bool
    (the former ``mixed_precision=True`` is ``mixed_float16``)."""
    if isinstance(precision, bool) or precision is None:
        return "mixed_float16" if precision else "float32"
    return check_choice(precision, "precision", PRECISIONS)


def accelerator() -> str:
    """``gpu``, ``tpu`` or ``cpu``: the kind of device the backend computes on."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # that backend only

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if keras.backend.backend() == "jax":
        import jax  # that backend only

        return jax.default_backend()
    if keras.backend.backend() == "torch":
        import torch  # that backend only

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"


def check_precision(precision) -> str:
    """The policy name of ``precision``; ``mixed_float16`` on a CPU is refused."""
    name = policy_name(precision)
    if name == "mixed_float16" and accelerator() == "cpu":
        raise SettingError(
            "precision",
            precision,
            "mixed_float16 needs a GPU (a CPU emulates float16, slowly and with loss scaling for "
            "nothing); use mixed_bfloat16 or float32 on a CPU",
        )
    return name


def local_devices() -> list[str]:
    """The devices data parallel training can use: the backend's accelerators, else its CPUs
    (logical devices on TensorFlow)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # that backend only

        return [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
    if backend == "jax":
        if os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
            keras.distribution.initialize()
        return keras.distribution.list_devices()
    raise SettingError(
        "devices", "several", f"data parallel training runs on tensorflow and jax, not {backend}"
    )


def check_devices(devices, batch_size) -> int:
    """``devices`` as an int, checked against the machine and the global ``batch_size``."""
    n = check_positive_int(devices, "devices")
    if n == 1:
        return n
    available = local_devices()
    if n > len(available):
        raise SettingError(
            "devices",
            devices,
            f"this machine has {len(available)} device(s) for training ({', '.join(available)}); "
            "on a CPU, simulate more with XLA_FLAGS=--xla_force_host_platform_device_count=N "
            "(JAX) or tf.config.set_logical_device_configuration (TensorFlow)",
        )
    if batch_size % n:
        raise SettingError(
            "batch_size",
            batch_size,
            f"the global batch is split across devices={n}: use a multiple of {n}",
        )
    return n


@contextlib.contextmanager
def data_parallel(devices: int):
    """A scope in which models built, compiled and trained are replicated over the first
    ``devices`` local devices (nothing changes for 1)."""
    if devices == 1:
        yield
        return
    chosen = local_devices()[:devices]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # that backend only

        with tf.distribute.MirroredStrategy(chosen).scope():
            yield
    else:
        with keras.distribution.DataParallel(devices=chosen).scope():
            yield
