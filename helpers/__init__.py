"""Masked image modeling with Vision Transformers: the package the course notebooks import.

Modules: ``data`` (CIFAR-10 and the embedded sample dataset), ``patches`` (patchify/unpatchify),
``masking`` (random, rows, columns, importance), ``metrics`` (MSE, PSNR, SSIM on composites),
``layers`` and ``models`` (mask-token ViT, MAE-style ViT, CNN autoencoder; biharmonic inpainting and the
mean-colour guess, not learned),
``training``, ``importance`` (gradient patch scores), ``evaluation``, ``experiments`` (sweep and
cross-strategy matrix), ``report``, ``plots`` (pictures and ``save_fig``), ``runner`` and ``cli``
(``python -m helpers``), ``bench`` and ``quality`` (benchmarks).
"""

__version__ = "0.1.0"

import logging as _logging

# TensorFlow's Python-side warnings (tf.function retracing when several models predict in turn)
# are advice for TensorFlow developers, not for students: keep them out of notebook outputs.
_logging.getLogger("tensorflow").setLevel(_logging.ERROR)
