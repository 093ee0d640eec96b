"""Masked image modeling with Vision Transformers: the package the course notebooks import.

Modules: ``data`` (CIFAR-10 and the embedded sample dataset), ``patches`` (patchify/unpatchify),
``masking`` (random, rows, columns, importance), ``metrics`` (MSE, PSNR, SSIM on composites),
``layers`` and ``models`` (mask-token ViT, MAE-style ViT, CNN autoencoder, ViT encoder + CNN
decoder; biharmonic inpainting and the mean-colour guess, not learned), ``pretrained`` (a
pretrained keras-hub ViT fine-tuned for reconstruction), ``training``, ``devices``
(several devices, mixed precision), ``importance`` (gradient patch scores), ``evaluation``,
``probe`` (linear probe of an encoder), ``grading`` (students' models on a hidden test set; the
nbgrader course), ``experiments`` (sweep and cross-strategy matrix), ``report``, ``plots``
(pictures and ``save_fig``), ``runner`` and ``cli`` (``python -m helpers``), ``bench`` and
``quality`` (benchmarks).
"""

__version__ = "0.1.0"

import logging as _logging


class _NoRetracingAdvice(_logging.Filter):
    """Drop TensorFlow's "triggered tf.function retracing" warnings (several models predicting in
    turn trigger them): advice for TensorFlow developers, not for students, and noise in notebook
    outputs. A filter, not a level: TensorFlow sets the level of its logger to INFO when it first
    logs inside Jupyter."""

    def filter(self, record):
        return "tf.function retracing" not in record.getMessage()


_logging.getLogger("tensorflow").addFilter(_NoRetracingAdvice())
