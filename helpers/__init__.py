"""Masked image modeling with Vision Transformers: the package the course notebooks import.

The core, what a student reads: ``data`` (CIFAR-10 and the embedded sample dataset), ``patches``
(patchify/unpatchify), ``masking`` (random, rows, columns, importance), ``metrics`` (MSE, PSNR,
SSIM on composites), ``layers``, ``base`` (the learned models' base class), ``vit`` (the
mask-token ViT in one file), ``mae`` (the MAE-style ViT) and ``models`` (every predictor: those
two, CNN autoencoder, ViT encoder + CNN decoder; biharmonic inpainting and the mean-colour guess),
``pretrained`` (a pretrained keras-hub ViT fine-tuned for reconstruction), ``training``,
``devices`` (several devices, mixed precision), ``recipes`` (training recipes), ``importance``
(gradient patch scores), ``plots`` (pictures and ``save_fig``), ``checkpoints`` (the course
checkpoints, loaded) and ``exercises`` (what the notebooks' exercise tests call).

The tools, :mod:`helpers.tools`, run the course around it: the command line (``python -m
helpers``), the notebook runner, evaluation, sweeps and reports, the linear probe, publishing
checkpoints, grading and benchmarks. They import the core; the core never imports them, and
``import helpers`` loads none of them.
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
