"""``python -m helpers``: see :mod:`helpers.tools.cli`."""

import os

# Before anything imports TensorFlow: hide its C++ info and warning lines (oneDNN notices, "This
# TensorFlow binary is optimized ..."). Only the log level: TF_ENABLE_ONEDNN_OPTS is left alone,
# since it changes the numerics. Set TF_CPP_MIN_LOG_LEVEL=0 yourself to see everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .tools.cli import main  # noqa: E402

raise SystemExit(main())
