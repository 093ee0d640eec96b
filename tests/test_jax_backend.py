"""The patch and masking helpers under the JAX backend, in a fresh interpreter."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="JAX is not installed (pip install 'jax[cpu]')"
)

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import keras
    from keras import ops
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from helpers import masking, patches
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    P = ops.convert_to_numpy(patches.patchify_ops(ops.convert_to_tensor(x), 4))
    assert np.array_equal(P, patches.patchify(x, 4))
    back = ops.convert_to_numpy(patches.unpatchify_ops(ops.convert_to_tensor(P), 4, (32, 32, 3)))
    assert np.array_equal(back, x)
    for s in masking.STRATEGIES:
        m = masking.make_mask(s, 0.5, images=x, patch_size=4, seed=0)
        assert (m.sum(1) == 32).all(), s
        # masked tokens selected with keras.ops on the JAX backend agree with NumPy
        hidden = ops.convert_to_tensor(m)[..., None]
        kept = ops.convert_to_numpy(ops.where(hidden, 0.0, ops.convert_to_tensor(P)))
        assert np.array_equal(kept, np.where(m[..., None], 0.0, P)), s
    print("jax ok")
    """
)


@pytest.mark.slow  # starts a JAX process
def test_patches_and_masking_under_jax():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "jax ok" in out.stdout
