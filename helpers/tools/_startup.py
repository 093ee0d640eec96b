"""TensorFlow's start-up noise: the lines its C++ code writes to stderr when Keras is imported,
hidden by the command line (:func:`quiet_tensorflow`) and by ``run``'s kernels
(:func:`helpers.tools.runner.kernel_noise`)."""

from __future__ import annotations

import os
import re
import sys
import tempfile

# TensorFlow's start-up lines that TF_CPP_MIN_LOG_LEVEL does not hide (absl writes them before its
# log level is read) or that only level 3 would hide together with real errors: the CUDA probes of a
# machine without a GPU, the CPU-instruction notice, the oneDNN notices (also the one TensorFlow
# 2.21 logs at error level when its first boolean op falls back to Eigen, on AVX-512 CPUs too).
TF_STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|Could not find cuda drivers"
    r"|failed call to cuInit|cpu_feature_guard|This TensorFlow binary is optimized"
    r"|rebuild TensorFlow with the appropriate compiler flags|oneDNN custom "
    r"operations|TF_ENABLE_ONEDNN_OPTS|oneDNN supports DT_BOOL only"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
)


def quiet_tensorflow() -> None:
    """Import Keras (and start TensorFlow's devices) without TensorFlow's C++ start-up lines on
    stderr.

    Sets TF_CPP_MIN_LOG_LEVEL=2 unless it is set; while Keras is imported, stderr (file descriptor
    2, where the C++ code writes) goes to a temporary file, and afterwards every line of it is
    written to stderr except the start-up notices in :data:`TF_STARTUP_NOISE`, so real errors still
    show. With TF_CPP_MIN_LOG_LEVEL 0 or 1 nothing is filtered. TF_ENABLE_ONEDNN_OPTS is left alone.
    """
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
