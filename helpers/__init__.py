"""Masked image modeling with Vision Transformers: the package the course notebooks import.

The core (``helpers/*.py``) is what a student reads; the tools, :mod:`helpers.tools`, run the
course around it (the command line ``python -m helpers``, evaluation, reports, grading). The
core never imports the tools, and ``import helpers`` loads none of them.
"""

__version__ = "0.1.0"

import logging as _logging


class _NoRetracingAdvice(_logging.Filter):
    """Drop TensorFlow's "tf.function retracing" warnings, noise in notebook outputs (a filter, not
    a level: TensorFlow resets its logger's level inside Jupyter)."""

    def filter(self, record):
        return "tf.function retracing" not in record.getMessage()


_logging.getLogger("tensorflow").addFilter(_NoRetracingAdvice())
