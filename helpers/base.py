"""The base of the learned predictors (:class:`MaskedImageModel`), what building one needs, and
the heads and gray/colour adapters the Transformers share."""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import keras
import numpy as np
from keras import layers

from . import layers as mim
from ._checks import (
    SettingError,
    check_choice,
    check_fraction,
    check_images,
    check_patch_size,
    check_positive_int,
)
from .devices import check_precision, policy_name
from .patches import grid_shape
from .recipes import VIT_FILLS, label

CNN_FILL = 0.5  # grey put in place of the hidden pixels of the CNN input
RGB_TO_GRAY = (0.2125, 0.7154, 0.0721)  # skimage.color.rgb2gray's weights


def check_image_shape(image_shape) -> tuple[int, int, int]:
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
        raise SettingError("image_shape", image_shape, "must be (H, W, C), e.g. (32, 32, 3)")
    names = ("image height", "image width", "channels")
    return tuple(check_positive_int(v, name) for v, name in zip(image_shape, names))


def check_blocks(sizes, names, pos_init) -> None:
    """Check the (width, depth, num_heads, mlp_dim) of Transformer blocks, named ``names``."""
    for value, name in zip(sizes, names):
        check_positive_int(value, name)
    width, num_heads = sizes[0], sizes[2]
    if width % num_heads:
        of, allowed = f"{names[0]}={width}", [d for d in range(1, width + 1) if width % d == 0]
        problem = f"must divide {of}; allowed {names[2]} for {of}: {allowed}"
        raise SettingError(names[2], num_heads, problem)
    if pos_init == "sincos" and width % 4:
        problem = "must be divisible by 4 for pos_init='sincos' (a sine and a cosine per axis)"
        raise SettingError(names[0], width, problem)


def check_transformer(
    image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim, dropout, pos_init="random"
):
    """The checked image shape (H, W, C)."""
    image_shape = check_image_shape(image_shape)
    check_choice(pos_init, "pos_init", mim.POSITION_INITS)
    check_patch_size(patch_size, image_shape)
    sizes = (embed_dim, depth, num_heads, mlp_dim)
    check_blocks(sizes, ("embed_dim", "depth", "num_heads", "mlp_dim"), pos_init)
    check_fraction(dropout, "dropout")
    return image_shape


def check_vit(image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim, dropout, pos_init,
              fill, fill_iterations):  # fmt: skip
    """:func:`check_transformer` plus the ``fill`` settings: ``(image_shape, float(dropout))``."""
    sizes = (embed_dim, depth, num_heads, mlp_dim)
    image_shape = check_transformer(image_shape, patch_size, *sizes, dropout, pos_init)
    check_choice(fill, "fill", VIT_FILLS)
    check_positive_int(fill_iterations, "fill_iterations", minimum=0)
    return image_shape, float(dropout)


@contextmanager
def policy(mixed_precision):
    """Build under the dtype policy of ``mixed_precision`` (:mod:`helpers.devices`)."""
    name = policy_name(mixed_precision)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(previous if name == "float32" else name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def seed_weights(value):
    """Seed Keras' initial weights (``None``: unseeded)."""
    if value is not None:
        keras.utils.set_random_seed(check_positive_int(value, "seed", minimum=0))


def settings_of(arguments: dict) -> dict:
    """A model's settings from its ``__init__``'s ``locals()``; lists (from JSON) as tuples."""
    skip = ("self", "name", "kwargs", "__class__")
    return {
        k: tuple(v) if isinstance(v, list) else v for k, v in arguments.items() if k not in skip
    }


def model_inputs(image_shape, patch_size):
    """The Keras inputs of every predictor: images (N, H, W, C) and the patch mask (N, L)."""
    gh, gw = grid_shape(image_shape[:2], patch_size)
    return keras.Input(tuple(image_shape), name="images"), keras.Input((gh * gw,), name="mask")


class MaskedImageModel(keras.Model):
    """Base of the learned predictors: ``{"images": (N, H, W, C), "mask": (N, L)} -> images``.

    Built by its subclass from the settings ``get_config`` returns. ``min_masked``: the fewest
    patches a mask must hide; ``builder``: the name in :mod:`helpers.recipes`.
    """

    builder = ""
    learned = True
    min_masked = 0
    # the encoder's last layer: tokens (N, L, D) for the Transformers, a map (N, h, w, D) for a CNN
    feature_layer = "norm"

    @property
    def label(self) -> str:
        """What the model is called in tables and figures (:func:`helpers.recipes.label`)."""
        return label(self.builder, self.settings.get("fill"))

    def __init__(self, inputs, outputs, settings: dict, **kwargs):
        super().__init__(inputs, outputs, **kwargs)
        self.settings = settings
        self.image_shape = tuple(int(v) for v in settings["image_shape"])
        self.patch_size = int(settings["patch_size"])

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self.settings}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)

    def lr_scales(self) -> dict:
        """Variable path -> learning-rate multiplier (:class:`helpers.training.ScaledAdam`)."""
        return {}

    def feature_model(self) -> keras.Model:
        """``{"images", "mask"} -> (N, D)``: the encoder's output averaged over its tokens (or
        positions), the features of a linear probe; the mask given is all zeros."""
        out = self.get_layer(self.feature_layer).output
        pool = getattr(layers, f"GlobalAveragePooling{len(out.shape) - 2}D")  # tokens or a map
        return keras.Model(self.input, pool(dtype="float32", name="features")(out))

    def features(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Feature vectors (N, D) float32 of :meth:`feature_model`, nothing hidden."""
        check_images(images)
        model = self.feature_model()
        n_patches = int(np.prod(grid_shape(images.shape[1:3], self.patch_size)))
        out = []
        for start in range(0, len(images), check_positive_int(batch_size, "batch_size")):
            batch = images[start : start + batch_size].astype(np.float32, copy=False)
            inputs = {"images": batch, "mask": np.zeros((len(batch), n_patches), np.float32)}
            out.append(np.asarray(model.predict_on_batch(inputs), dtype=np.float32))
        return np.concatenate(out)


def head(x, out_dim, name="head"):
    """Dense + sigmoid kept in float32, also under mixed precision."""
    return layers.Dense(out_dim, activation="sigmoid", dtype="float32", name=name)(x)


def guess_plus(x, guess, out_dim):
    """The guess's patches plus a correction by a Dense head started at 0, clipped to [0, 1]."""
    correction = layers.Dense(out_dim, kernel_initializer="zeros", dtype="float32", name="head")(x)
    out = layers.Add(dtype="float32", name="guess_plus")([guess, correction])
    return layers.ReLU(max_value=1.0, dtype="float32", name="clip")(out)


def colour_shape(image_shape) -> tuple:
    """The image shape the Transformers' layers work in: three channels for one-channel images."""
    return (*image_shape[:2], 3 if image_shape[2] == 1 else image_shape[2])


def gray_adapter():
    """The learned 1x1 convolution ``gray_to_rgb`` from one channel to three, started as a copy."""
    adapter = layers.Conv2D(3, 1, dtype="float32", name="gray_to_rgb")
    adapter.build((None, None, None, 1))
    adapter.set_weights([np.ones((1, 1, 1, 3), np.float32), np.zeros(3, np.float32)])
    return adapter


def colour_in(images, image_shape, adapter=None):
    """``(images, image_shape)`` with three channels: one-channel images through ``adapter``."""
    if image_shape[2] != 1:
        return images, tuple(image_shape)
    return (adapter or gray_adapter())(images), colour_shape(image_shape)


def colour_patches(patches, image_shape, patch_size, adapter=None):
    """Patches of one-channel images as patches of three channels through :func:`colour_in`'s
    ``adapter`` (the harmonic fill runs before it, on the gray image: no gradient through its
    loop)."""
    if image_shape[2] != 1:
        return patches
    image = mim.Unpatchify(patch_size, image_shape, dtype="float32", name="gray_image")(patches)
    rgb, _ = colour_in(image, image_shape, adapter)
    return mim.Patchify(patch_size, dtype="float32", name="rgb_patches")(rgb)


def harmonic_guess(images, patches, mask, adapter, patch_size, fill_iterations):
    """The harmonic fill's patches: of the colour ``patches``, or with a gray ``adapter`` of the
    gray ``images``, then through that adapter (as :func:`colour_patches`)."""
    image_shape = tuple(images.shape[1:])
    fill = mim.HarmonicFill(
        image_shape, patch_size, fill_iterations, dtype="float32", name="harmonic_fill"
    )
    if adapter is None:
        return fill(patches, mask)
    gray = mim.Patchify(patch_size, dtype="float32", name="gray_patches")(images)
    return colour_patches(fill(gray, mask), image_shape, patch_size, adapter)


def gray_out(images, image_shape):
    """Back to one channel for gray models: a learned 1x1 convolution started as RGB_TO_GRAY."""
    if image_shape[2] != 1:
        return images
    back = layers.Conv2D(1, 1, dtype="float32", name="rgb_to_gray")
    out = back(images)
    kernel = np.array(RGB_TO_GRAY, np.float32).reshape(1, 1, 3, 1)
    back.set_weights([kernel, np.zeros(1, np.float32)])
    return out


def build(cls, seed, /, *args, **settings):
    """``cls(*args, **settings)`` with the initial weights of ``seed`` (None: unseeded). Raises
    TypeError for a setting ``cls`` does not take, SettingError for a ``mixed_precision`` this
    machine cannot run (float16 on a CPU)."""
    unknown = sorted(set(settings) - set(inspect.signature(cls).parameters))
    if unknown:
        raise TypeError(f"{cls.__name__} got unexpected keyword arguments {unknown}")
    settings["mixed_precision"] = check_precision(settings.get("mixed_precision", False))
    seed_weights(seed)
    return cls(*args, **settings)
