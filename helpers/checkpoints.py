"""The course checkpoints: Transformers and a CNN trained long enough to show what they can do.

The notebooks train a student's own models for a few minutes: enough to see a loss fall and what
training adds, not enough to see what a trained Transformer does. The checkpoints in
``checkpoints/`` (the project's root) are that: each ``NAME.keras`` was trained with the
project's own ``python -m helpers train`` on the CIFAR-10 subset, and ``NAME.json`` beside it is
its provenance: the command, the commit, a hash of the training data, minutes, epochs, images
seen, and its metrics when it was published:

- ``heldout``: masked-region PSNR (dB) on the ``test_batch`` of the training folder, images the
  model never saw, at 30/50/70 % random, rows and columns masks (seed 0), with the untrained
  twin, biharmonic inpainting and the mean-colour guess on the same masks;
- ``reproduce``: masked-region PSNR and SSIM on a fixed set that ships with the project (the
  first 200 test images of the embedded ``sample`` dataset, seed 0, 50 % masks), which a test
  recomputes from the committed file.

This module finds and loads them (:func:`load`) and reads their provenance. Publishing a trained
run with that provenance (``python -m helpers checkpoint --run RUN_DIR --name NAME --data-dir DIR
--command "..."``) and computing its metrics is the course tooling's job:
:mod:`helpers.tools.publishing`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._checks import SettingError, check_choice
from ._io import project_folder

CHECKPOINT_DIR = project_folder("checkpoints")
NAMES = ("vit", "mae", "cnn")  # the course's checkpoints


def path(name: str, folder=None) -> Path:
    """The ``.keras`` file of the checkpoint ``name`` (in ``folder``, default
    :data:`CHECKPOINT_DIR`)."""
    check_choice(name, "checkpoint", NAMES)
    return Path(folder or CHECKPOINT_DIR) / f"{name}.keras"


def provenance(name: str, folder=None) -> dict:
    """The provenance of the checkpoint ``name``: what
    :func:`helpers.tools.publishing.publish` wrote."""
    return json.loads(path(name, folder).with_suffix(".json").read_text())


def available(name: str, folder=None) -> bool:
    return path(name, folder).exists() and path(name, folder).with_suffix(".json").exists()


def load(name: str, folder=None):
    """The checkpoint ``name`` as a Keras model (safe mode), with an error that says how to
    rebuild it when the file is missing."""
    from .models import load_predictor  # lazy: pulls in Keras

    file = path(name, folder)
    if not file.exists():
        raise SettingError(
            "checkpoint",
            name,
            f"no {file.name} in {file.parent}; the README's 'Course checkpoints' section has the "
            "command that rebuilds it",
        )
    return load_predictor(file)


def label(name: str, folder=None) -> str:
    """The checkpoint's name in tables and figures: its model's label and "(course checkpoint)"."""
    return f"{provenance(name, folder)['label']} (course checkpoint)"


def describe(name: str, folder=None) -> str:
    """One sentence on how the checkpoint ``name`` was made, for captions."""
    r = provenance(name, folder)
    return (
        f"{label(name, folder)}: trained {r['minutes']:g} min on the CIFAR-10 subset "
        f"({r['epochs']} epochs, {r['images_seen']:,} images seen, {r['parameters']:,} parameters)"
    )
