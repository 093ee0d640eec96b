"""Where training runs: data parallel over ``devices`` local devices (``keras.distribution.
DataParallel`` on JAX, ``tf.distribute.MirroredStrategy`` on TensorFlow), each global batch split
across them, and the mixed precision policy (:data:`PRECISIONS`)."""

from __future__ import annotations

import contextlib
import os

import keras

from ._checks import PRECISIONS, SettingError, check_choice, check_positive_int


def policy_name(precision) -> str:
    """The Keras dtype policy of ``precision``: a name of :data:`PRECISIONS`, or a bool (True:
    ``mixed_float16``)."""
    if isinstance(precision, bool) or precision is None:
        return "mixed_float16" if precision else "float32"
    return check_choice(precision, "precision", PRECISIONS)


def accelerator() -> str:
    """``gpu``, ``tpu`` or ``cpu``: the kind of device the backend computes on."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax  # that backend only

        return jax.default_backend()
    if backend == "tensorflow":
        import tensorflow as tf  # that backend only

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if backend == "torch":
        import torch  # that backend only

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"


def check_precision(precision) -> str:
    """The policy name of ``precision``; ``mixed_float16`` on a CPU is refused."""
    name = policy_name(precision)
    if name == "mixed_float16" and accelerator() == "cpu":
        why = "a CPU emulates float16, slowly and with loss scaling for nothing"
        problem = f"mixed_float16 needs a GPU ({why}); use mixed_bfloat16 or float32 on a CPU"
        raise SettingError("precision", precision, problem)
    return name


def local_devices() -> list[str]:
    """The devices data parallel training can use: the backend's accelerators, else its CPUs."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # that backend only

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return [d.name for d in devices]
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
        problem = f"the global batch is split across devices={n}: use a multiple of {n}"
        raise SettingError("batch_size", batch_size, problem)
    return n


@contextlib.contextmanager
def data_parallel(devices: int):
    """A scope in which models built, compiled and trained are replicated over the first
    ``devices`` local devices (no change for 1)."""
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
