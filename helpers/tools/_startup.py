"""TensorFlow's start-up noise on stderr, hidden by the command line and by ``run``'s kernels."""

from __future__ import annotations

import os
import re
import sys
import tempfile

# Lines TF_CPP_MIN_LOG_LEVEL does not hide (absl writes them before reading it) or hides only at
# level 3, with real errors: CUDA probes without a GPU, the CPU-instruction and oneDNN notices.
TF_STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|Could not find cuda drivers"
    r"|failed call to cuInit|cpu_feature_guard|This TensorFlow binary is optimized"
    r"|rebuild TensorFlow with the appropriate compiler flags|oneDNN custom "
    r"operations|TF_ENABLE_ONEDNN_OPTS|oneDNN supports DT_BOOL only"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
)


def quiet_tensorflow() -> None:
    """Import Keras (and start TensorFlow's devices) without the lines of :data:`TF_STARTUP_NOISE`;
    sets TF_CPP_MIN_LOG_LEVEL=2 unless it is set, and filters nothing at level 0 or 1."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"].strip() in ("0", "1"):
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr to filter
        return
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices()  # the CUDA probe happens here, not at import
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            lines = log.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not TF_STARTUP_NOISE.search(line)))
            sys.stderr.flush()
