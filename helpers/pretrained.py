"""Transfer learning: a pretrained Vision Transformer (keras-hub's ``ViTBackbone``, by default
google/vit-base-patch16-224) fine-tuned to reconstruct masked images (:class:`PretrainedViT`).
keras-hub is heavy: imported inside the functions that need it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path

import keras
import numpy as np
from keras import layers

from . import base
from . import layers as mim
from ._checks import (
    SettingError,
    check_choice,
    check_patch_size,
    check_positive_int,
    check_positive_number,
)
from .base import harmonic_guess
from .devices import check_precision

DEFAULT_PRESET = "vit_base_patch16_224_imagenet"  # keras-hub's google/vit-base-patch16-224
HF_PRESET = "hf://google/vit-base-patch16-224"  # the same weights from the Hugging Face hub
HF_VIT = "vit"  # the model_type of a Hugging Face ViT's config.json (not a helpers.recipes name)
FINE_TUNE = ("head", "all")
FILLS = ("harmonic", "grey")  # what the hidden pixels start as (build_pretrained_vit)
TINY = "tiny"  # notebook 03's name for a tiny local backbone (save_tiny_backbone)
_REMOTE = ("hf://", "kaggle://", "gs://", "modelscope://")
_HOW_OFFLINE = (
    "offline, give a local folder: a Keras preset (on a machine with a network: "
    "keras_hub.models.ViTBackbone.from_preset('vit_base_patch16_224_imagenet')"
    ".save_to_preset('vit_b16')) or a Hugging Face folder with config.json and model.safetensors "
    "(huggingface-cli download google/vit-base-patch16-224 --local-dir vit_b16)"
)


def _is_local(preset) -> bool:
    if isinstance(preset, os.PathLike):
        return True
    text = str(preset)
    local = os.path.exists(text) or text.startswith((".", "~", os.sep)) or os.sep in text
    return local and not text.startswith(_REMOTE)


def _check_folder(folder: Path) -> None:
    """A SettingError unless ``folder`` holds a ViT preset keras-hub can read."""
    allowed = "a Keras preset folder (config.json + model.weights.h5, written by save_to_preset)"
    allowed += " or a Hugging Face folder (config.json + model.safetensors)"
    error = partial(SettingError, "preset", str(folder))
    if not folder.is_dir():
        raise error(f"no such folder; allowed: {allowed}")
    files = sorted(p.name for p in folder.iterdir())
    if "config.json" not in files:
        raise error(f"holds {files[:8]}, not {allowed}")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise error(f"config.json is not JSON ({exc})") from None
    if "model_type" in config:  # Hugging Face
        if (kind := config["model_type"]) != HF_VIT:
            raise error(f"is a Hugging Face {kind!r} model; allowed: a ViT (model_type 'vit')")
        if "model.safetensors" not in files:
            raise error("is a Hugging Face folder without model.safetensors")
    elif "registered_name" in config:
        if "ViTBackbone" not in str(config["registered_name"]):
            raise error(f"holds a {config['registered_name']}; allowed: a ViTBackbone preset")
    else:
        raise error(f"config.json is not {allowed}")


def load_backbone(preset=DEFAULT_PRESET):
    """A keras-hub ``ViTBackbone`` from ``preset``: a ``ViTBackbone`` (returned as is), a local
    folder (checked first), or a preset name or ``hf://`` URI (downloaded by keras-hub; for the
    default name the Hugging Face URI is tried next). Raises SettingError for a wrong folder, or
    if none could be loaded (each try, how to work offline)."""
    import keras_hub  # heavy, optional

    if isinstance(preset, keras_hub.models.ViTBackbone):
        return preset
    if not isinstance(preset, (str, os.PathLike)) or not str(preset):
        allowed = "allowed: a keras-hub preset name, an hf:// URI or a local folder"
        raise SettingError("preset", preset, allowed)
    if _is_local(preset):
        folder = Path(preset).expanduser()
        _check_folder(folder)
        return keras_hub.models.ViTBackbone.from_preset(str(folder))
    failures = []
    for name in [str(preset)] + ([HF_PRESET] if str(preset) == DEFAULT_PRESET else []):
        try:
            return keras_hub.models.ViTBackbone.from_preset(name)
        except Exception as exc:  # network, authentication, unknown name: all end the same way
            failures.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    problem = "could not be loaded; tried " + "; ".join(failures) + ". " + _HOW_OFFLINE
    raise SettingError("preset", str(preset), problem)


def save_tiny_backbone(
    folder, image_size: int = 32, patch_size: int = 4, *, num_layers: int = 2, width: int = 32,
    num_heads: int = 2, mlp_dim: int = 64, seed: int = 0,
) -> Path:  # fmt: skip
    """Save a small ``ViTBackbone`` with seeded random weights as a Keras preset in ``folder``
    (written beside it, then renamed) and return the folder: the download's offline stand-in."""
    import keras_hub  # heavy, optional

    folder = Path(folder)
    base.seed_weights(seed)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 3), patch_size=patch_size, num_layers=num_layers,
        num_heads=num_heads, hidden_dim=width, mlp_dim=mlp_dim,
    )  # fmt: skip
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        backbone.save_to_preset(str(tmp))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


@keras.saving.register_keras_serializable(package="helpers")
class PretrainedViT(base.MaskedImageModel):
    """A pretrained ``ViTBackbone`` with an input adapter and a light decoding head.

    The masked image and pixel mask (with ``fill="harmonic"`` the fill in front) go through a 1x1
    convolution to three channels, resized to the backbone's input; its patch tokens on their
    grid are projected, resized back and decoded by two 3x3 convolutions that also see the
    masked image. Build with :func:`build_pretrained_vit`; ``backbone``: the backbone's config.
    """

    builder = "pretrained_vit"
    feature_layer = "patch_tokens"

    def __init__(
        self, image_shape=(32, 32, 3), patch_size=4, backbone=None, head_dim=64, fine_tune="head",
        backbone_lr_scale=0.1, fill="grey", fill_iterations=128, preset="", mixed_precision=False,
        name="pretrained_vit", **kwargs,
    ):  # fmt: skip
        import keras_hub  # heavy, optional

        settings = base.settings_of(locals())
        h, w, c = image_shape
        with base.policy(mixed_precision):
            vit = keras_hub.models.ViTBackbone.from_config({**backbone, "name": "backbone"})
            bh, bw = vit.image_shape[:2]
            ph, pw = vit.patch_size
            images, mask = base.model_inputs(image_shape, patch_size)
            masked = mim.MaskedImage(patch_size, base.CNN_FILL, name="masked_image")(images, mask)
            guess = None
            if fill == "harmonic":  # the smooth guess joins the input; the head corrects it
                patches = mim.Patchify(patch_size, dtype="float32", name="patchify")(images)
                guess = harmonic_guess(images, patches, mask, None, patch_size, fill_iterations)
                guess = mim.Unpatchify(patch_size, image_shape, dtype="float32", name="fill_image")(
                    guess
                )
                masked = layers.Concatenate(name="fill_and_mask")([guess, masked])
            adapter = layers.Conv2D(3, 1, name="to_rgb")
            x = adapter(masked)
            # started as a copy of the colours (of the fill when there is one); the rest at 0
            start = np.zeros((1, 1, masked.shape[-1], 3), np.float32)
            start[0, 0, :c] = np.eye(3, dtype=np.float32) if c == 3 else 1.0
            adapter.set_weights([start, np.zeros(3, np.float32)])
            if (bh, bw) != (h, w):
                x = layers.Resizing(bh, bw, "bilinear", name="to_backbone_size")(x)
            x = layers.Rescaling(2.0, offset=-1.0, name="to_backbone_range")(x)
            crop = partial(layers.Cropping1D, (1, 0)) if vit.use_class_token else layers.Identity
            tokens = crop(name="patch_tokens")(vit(x))  # without the class token
            y = layers.Reshape((bh // ph, bw // pw, vit.hidden_dim), name="token_grid")(tokens)
            y = layers.Dense(head_dim, activation="gelu", name="head_proj")(y)
            if (bh // ph, bw // pw) != (h, w):
                y = layers.Resizing(h, w, "bilinear", name="to_image_size")(y)
            y = layers.Concatenate(name="with_image")([y, masked])
            y = layers.Conv2D(head_dim, 3, padding="same", activation="gelu", name="head_conv")(y)
            refine = guess is not None  # the head's output: a correction of the fill, started at 0
            out = layers.Conv2D(
                c, 3, padding="same", activation="tanh" if refine else "sigmoid", dtype="float32",
                kernel_initializer="zeros" if refine else "glorot_uniform", name="head",
            )(y)  # fmt: skip
            if refine:
                out = layers.Add(dtype="float32", name="fill_plus")([guess, out])
                out = layers.ReLU(max_value=1.0, dtype="float32", name="to_unit")(out)
            super().__init__({"images": images, "mask": mask}, out, settings, name=name, **kwargs)
        vit.trainable = fine_tune == "all"

    def lr_scales(self) -> dict:
        """Variable path -> step multiplier: the backbone's, when it is fine-tuned."""
        if self.settings["fine_tune"] != "all":
            return {}
        scale = float(self.settings["backbone_lr_scale"])
        return {v.path: scale for v in self.get_layer("backbone").trainable_variables}


def build_pretrained_vit(
    image_shape=(32, 32, 3), patch_size: int = 4, *, preset=DEFAULT_PRESET, head_dim: int = 64,
    fine_tune: str = "head", backbone_lr_scale: float = 0.1, fill: str = "grey",
    fill_iterations: int = 128, seed: int | None = 0, mixed_precision: bool | str = False,
) -> PretrainedViT:  # fmt: skip
    """A :class:`PretrainedViT` around :func:`load_backbone`'s ``preset``, new layers seeded.

    Args:
        fine_tune: ``"head"`` (the backbone frozen) or ``"all"`` (steps × ``backbone_lr_scale``).
        fill: ``"grey"`` (hidden pixels enter grey, a sigmoid head gives the pixels) or
            ``"harmonic"`` (the harmonic fill joins the input; the head corrects it).
    """
    image_shape = base.check_image_shape(image_shape)
    check_patch_size(patch_size, image_shape)
    check_positive_int(head_dim, "head_dim")
    check_choice(fine_tune, "fine_tune", FINE_TUNE)
    check_positive_number(backbone_lr_scale, "backbone_lr_scale")
    check_choice(fill, "fill", FILLS)
    check_positive_int(fill_iterations, "fill_iterations", minimum=0)
    mixed_precision = check_precision(mixed_precision)
    backbone = load_backbone(preset)
    config = backbone.get_config()  # without name, trainable and dtype: the model's policy applies
    config = {k: v for k, v in config.items() if k not in ("name", "trainable", "dtype")}
    base.seed_weights(seed)
    model = PretrainedViT(
        image_shape, patch_size, config, head_dim, fine_tune,
        float(backbone_lr_scale), fill, int(fill_iterations),
        str(preset) if isinstance(preset, (str, os.PathLike)) else backbone.name, mixed_precision,
    )  # fmt: skip
    model.get_layer("backbone").set_weights(backbone.get_weights())
    return model
