"""Data parallel training and mixed precision (helpers.devices, ``train(devices=N)``).

Two devices are simulated on the CPU in a fresh interpreter per backend: JAX with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``, TensorFlow with two logical CPU devices.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from _refused import refused

from helpers import devices, models, training

pytestmark = pytest.mark.slow  # every test here starts processes or trains

TINY = dict(image_shape=(32, 32, 3), patch_size=4, embed_dim=16, depth=1, num_heads=2, mlp_dim=32)

SCRIPT = textwrap.dedent(
    """
    import os, sys, tempfile
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        two = [tf.config.LogicalDeviceConfiguration()] * 2
        tf.config.set_logical_device_configuration(cpu, two)
    import keras
    import numpy as np
    from helpers import devices, models, training
    from helpers._checks import SettingError
    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
    assert len(devices.local_devices()) == 2, devices.local_devices()
    x = np.random.default_rng(0).random((71, 32, 32, 3), dtype=np.float32)
    data = (x[:57], x[57:])  # 57 = 3 batches of 16 + 9: the last batch is padded to 10 on 2 devices
    tiny = dict(embed_dim=16, depth=1, num_heads=2, mlp_dim=32, seed=0)
    curves = {}
    for n in (1, 2):
        model = models.build_model("vit", **tiny)
        before = model.get_weights()
        run = tempfile.mkdtemp()
        result = training.train(model, data, epochs=2, batch_size=16, seed=0, verbose=0, devices=n,
                                run_dir=run)
        curves[n] = np.array([result["history"]["loss"], result["history"]["val_loss"]])
        loaded = models.load_predictor(result["final"])  # outside the scope: one device
        for a, b, c in zip(loaded.get_weights(), model.get_weights(), before):
            assert np.allclose(a, b, atol=1e-6)  # the trained weights came back into `model`
        assert any(not np.allclose(b, c) for b, c in zip(model.get_weights(), before))
        out = models.reconstruct(loaded, x[:5], np.eye(5, 64, dtype=bool))
        assert out.shape == (5, 32, 32, 3) and np.isfinite(out).all()
    print("curves", curves[1].tolist(), curves[2].tolist())
    assert np.allclose(curves[1], curves[2], rtol=2e-3), (curves[1], curves[2])
    # interrupted after its first epoch on 2 devices, then started again: it resumes there
    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt
    kw = dict(epochs=2, batch_size=16, seed=0, verbose=0, devices=2, run_dir=tempfile.mkdtemp())
    try:
        training.train(models.build_model("vit", **tiny), data, callbacks=[Stop()], **kw)
    except KeyboardInterrupt:
        pass
    resumed = training.train(models.build_model("vit", **tiny), data, **kw)["history"]
    resumed = np.array([resumed["loss"], resumed["val_loss"]])
    assert np.allclose(resumed, curves[2], rtol=1e-4), (resumed, curves[2])
    try:
        training.train(models.build_model("vit", **tiny), data, epochs=1, batch_size=15, devices=2,
                       run_dir=tempfile.mkdtemp(), verbose=0)
    except SettingError as exc:
        assert "batch_size=15" in str(exc) and "multiple of 2" in str(exc), exc
    else:
        raise AssertionError("batch_size 15 on 2 devices was accepted")
    # a bfloat16 training step on the CPU gives a finite loss in float32
    model = models.build_model("vit", mixed_precision="mixed_bfloat16", **tiny)
    result = training.train(model, data, epochs=1, batch_size=16, devices=2, verbose=0,
                            run_dir=tempfile.mkdtemp())
    assert np.isfinite(result["history"]["loss"]).all(), result["history"]
    print("devices ok")
    """
)


def _available(backend):
    return importlib.util.find_spec("jax" if backend == "jax" else "tensorflow") is not None


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_devices_give_the_loss_curve_of_one(backend):
    if not _available(backend):
        pytest.skip(f"{backend} is not installed")
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "devices ok" in out.stdout


def test_padding_keeps_every_mask_and_adds_weightless_copies():
    x = np.random.default_rng(1).random((21, 32, 32, 3), dtype=np.float32)
    plain = training.MaskingDataset(x, 4, batch_size=8, seed=3)
    padded = training.MaskingDataset(x, 4, batch_size=8, seed=3, pad_to=4)
    for i in range(len(plain)):
        (a, ya, wa), (b, yb, wb) = plain[i], padded[i]
        n = len(ya)
        assert len(yb) % 4 == 0 and len(yb) - n < 4
        assert np.array_equal(a["mask"], b["mask"][:n]) and np.array_equal(ya, yb[:n])
        assert np.array_equal(wa, wb[:n]) and not wb[n:].any()
    assert len(padded[2][1]) == 8  # 21 = 8 + 8 + 5: the last batch is completed to 8


def test_more_devices_than_the_machine_has_is_refused():
    n = len(devices.local_devices())
    with refused("devices", n + 1, problem=f"this machine has {n} device"):
        devices.check_devices(n + 1, 64)
    with refused("devices", 0):
        devices.check_devices(0, 64)


@pytest.mark.parametrize(
    "value, name",
    [(False, "float32"), (True, "mixed_float16"), ("mixed_bfloat16", "mixed_bfloat16")],
)
def test_policy_names(value, name):
    assert devices.policy_name(value) == name


def test_bfloat16_training_gives_a_finite_loss(tmp_path):
    x = np.random.default_rng(0).random((40, 32, 32, 3), dtype=np.float32)
    model = models.build_vit(**TINY, mixed_precision="mixed_bfloat16")
    result = training.train(model, x, epochs=2, batch_size=16, run_dir=tmp_path, verbose=0)
    assert np.isfinite(result["history"]["loss"]).all()
    assert model.get_layer("block_0").dtype_policy.name == "mixed_bfloat16"
    loaded = models.load_predictor(result["final"])
    assert loaded.get_layer("block_0").dtype_policy.name == "mixed_bfloat16"
    out = loaded({"images": x[:2], "mask": np.ones((2, 64), np.float32)})
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_worker_threads_keep_the_batches_and_the_results(tmp_path):
    x = np.random.default_rng(2).random((48, 32, 32, 3), dtype=np.float32)
    losses = []
    for workers in (1, 2):
        model = models.build_vit(**TINY, seed=0)
        result = training.train(
            model, x, epochs=2, batch_size=16, workers=workers, run_dir=tmp_path / str(workers),
            verbose=0,
        )  # fmt: skip
        losses.append(result["history"]["loss"])
    assert np.allclose(losses[0], losses[1], rtol=1e-5), losses
    with refused("workers", 0):
        training.train(models.build_vit(**TINY), x, epochs=1, workers=0, run_dir=tmp_path / "0")


def test_float16_models_get_loss_scaling_at_compile():
    # the builders refuse float16 on a CPU; the class (what loads a GPU-trained file) does not
    model = models.MaskTokenViT(**TINY, mixed_precision="mixed_float16")
    training.compile_model(model, 1e-3, jit_compile=False)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("block_0").dtype_policy.name == "mixed_float16"
    assert model.get_layer("unpatchify").dtype_policy.name == "float32"
