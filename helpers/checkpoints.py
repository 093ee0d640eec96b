"""The course checkpoints: Transformers and a CNN trained long enough to show what they can do.

Each ``checkpoints/NAME.keras`` was trained with ``python -m helpers train`` on the CIFAR-10
subset; ``NAME.json`` beside it is its provenance (command, commit, data hash, training time and
published metrics), written by :mod:`helpers.tools.publishing`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._checks import SettingError, check_choice
from ._io import project_folder

CHECKPOINT_DIR = project_folder("checkpoints")
NAMES = ("vit", "mae", "cnn")  # the course's checkpoints


def path(name: str, folder=None) -> Path:
    """The ``.keras`` file of the checkpoint ``name`` in ``folder`` (:data:`CHECKPOINT_DIR`)."""
    check_choice(name, "checkpoint", NAMES)
    return Path(folder or CHECKPOINT_DIR) / f"{name}.keras"


def provenance(name: str, folder=None) -> dict:
    """The provenance of the checkpoint ``name`` (its ``.json`` file)."""
    return json.loads(path(name, folder).with_suffix(".json").read_text())


def available(name: str, folder=None) -> bool:
    return path(name, folder).exists() and path(name, folder).with_suffix(".json").exists()


def load(name: str, folder=None):
    """The checkpoint ``name`` as a Keras model (safe mode)."""
    from .models import load_predictor  # lazy: pulls in Keras

    file = path(name, folder)
    if not file.exists():
        rebuild = "the README's 'Course checkpoints' section has the command that rebuilds it"
        raise SettingError("checkpoint", name, f"no {file.name} in {file.parent}; {rebuild}")
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
