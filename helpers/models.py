"""Predictors of hidden patches: each takes ``{"images": (N, H, W, C) float32 in [0, 1], "mask":
(N, L) 0/1}`` (1 = hidden) and returns full images; :func:`reconstruct` runs any of them.
"""

from __future__ import annotations

import errno
import os

import keras
import numpy as np
from keras import layers, ops

from . import base, pretrained  # pretrained: registers PretrainedViT for load_predictor
from . import layers as mim
from ._checks import (
    SettingError,
    SettingTypeError,
    check_choice,
    check_fraction,
    check_hidden,
    check_images,
    check_mask,
    check_nonnegative_number,
    check_patch_size,
    check_positive_int,
)
from .base import RGB_TO_GRAY, MaskedImageModel  # noqa: F401 (models.RGB_TO_GRAY: gray_variant's)
from .mae import MaeViT, build_mae
from .masking import n_masked
from .patches import grid_shape, patch_mask_to_pixels
from .recipes import BUILDERS, NON_LEARNED, min_hidden_bound, model_settings
from .vit import MaskTokenViT, build_vit, vit_encoder  # noqa: F401


def _stage(x, conv, width, dropout, part, i):
    """A CNN stage: stride-2 3x3 (transposed) convolution, batch normalization, ReLU, dropout."""
    x = conv(width, 3, strides=2, padding="same", use_bias=False, name=f"{part}_conv_{i}")(x)
    # momentum 0.9 (Keras: 0.99): the moving statistics settle within a few hundred steps
    x = layers.BatchNormalization(momentum=0.9, name=f"{part}_bn_{i}")(x)
    x = layers.Activation("relu", name=f"{part}_relu_{i}")(x)
    return layers.Dropout(dropout, name=f"{part}_drop_{i}")(x)


def _cnn(image_shape, patch_size, filters, dropout, skips, latent_dim=0, latent_weight=0, seed=0):
    """The CNN's inputs and output: the masked image, the encoder stages, the AAE's code
    (``latent_dim`` > 0), the mirror stages (joined with the encoder's stage inputs when
    ``skips``), a 3x3 convolution with a sigmoid."""
    images, mask = base.model_inputs(image_shape, patch_size)
    x = mim.MaskedImage(patch_size, base.CNN_FILL, name="masked_image")(images, mask)
    stage_inputs = []
    for i, width in enumerate(filters):
        stage_inputs.append(x)
        x = _stage(x, layers.Conv2D, width, dropout, "enc", i)
    if latent_dim:
        x = layers.Conv2D(latent_dim, 1, name="latent")(x)
        x = mim.LatentAdversary(latent_weight, seed=seed, name="latent_adversary")(x)
    for i, width in enumerate(reversed(filters)):
        x = _stage(x, layers.Conv2DTranspose, width, dropout, "dec", i)
        if skips:
            x = layers.Concatenate(name=f"skip_{i}")([x, stage_inputs.pop()])
    out = layers.Conv2D(
        image_shape[2], 3, padding="same", activation="sigmoid", dtype="float32", name="head"
    )(x)
    return {"images": images, "mask": mask}, out


@keras.saving.register_keras_serializable(package="helpers")
class CnnAutoencoder(MaskedImageModel):
    """Convolutional autoencoder: images and mask in (inside, the hidden pixels become
    :data:`CNN_FILL` and the pixel mask an extra channel), images out.

    Args:
        filters: the width of each encoder stage; each halves the image.
        skips: join each encoder stage's input to the decoder output of its size (U-Net style).
    """

    builder = "cnn"

    def __init__(
        self, image_shape=(32, 32, 3), patch_size=4, filters=(32, 64, 128), dropout=0.0, skips=True,
        mixed_precision=False, name="cnn", **kwargs,
    ):  # fmt: skip
        image_shape, filters, dropout = _check_cnn(image_shape, patch_size, filters, dropout)
        skips = bool(skips)
        settings = base.settings_of(locals())
        with base.policy(mixed_precision):
            inputs, out = _cnn(image_shape, patch_size, filters, dropout, skips)
            super().__init__(inputs, out, settings, name=name, **kwargs)
        self.feature_layer = f"enc_relu_{len(filters) - 1}"  # the bottleneck


@keras.saving.register_keras_serializable(package="helpers")
class AdversarialAutoencoder(MaskedImageModel):
    """Adversarial autoencoder: the CNN autoencoder with a code between encoder and decoder that
    a discriminator pushes towards N(0, I) (Makhzani et al., 2015), and, with ``image_weight >
    0``, a discriminator on the composited output (Context Encoders, Pathak et al., 2016). The
    discriminators are layers that learn in the same backward pass and do nothing at inference.

    Args:
        latent_dim: the code's values per position of the bottleneck.
        latent_weight: the weight of the code's adversarial loss.
        image_weight: the image discriminator's (0: none).
        seed: the seed of the prior samples.
    """

    builder = "aae"

    def __init__(
        self, image_shape=(32, 32, 3), patch_size=4, filters=(32, 64, 128), latent_dim=16,
        latent_weight=1e-4, image_weight=0.0, dropout=0.0, skips=True, seed=0,
        mixed_precision=False, name="aae", **kwargs,
    ):  # fmt: skip
        image_shape, filters, dropout = _check_cnn(image_shape, patch_size, filters, dropout)
        latent_dim = check_positive_int(latent_dim, "latent_dim")
        latent_weight = check_nonnegative_number(latent_weight, "latent_weight")
        image_weight = check_nonnegative_number(image_weight, "image_weight")
        skips = bool(skips)
        settings = base.settings_of(locals())
        with base.policy(mixed_precision):
            inputs, out = _cnn(
                image_shape, patch_size, filters, dropout, skips, latent_dim, latent_weight, seed
            )
            if image_weight > 0:
                out = mim.ImageAdversary(
                    image_weight, patch_size, dtype="float32", name="image_adversary"
                )(out, inputs["images"], inputs["mask"])
            super().__init__(inputs, out, settings, name=name, **kwargs)
        self.feature_layer = "latent"


@keras.saving.register_keras_serializable(package="helpers")
class VitCnnAutoencoder(MaskedImageModel):
    """ViT encoder + CNN decoder: images and mask in, images out.

    The mask-token ViT's encoder; each token projected to ``latent_dim`` values on the patch
    grid; per doubling, a stride-2 transposed convolution and a residual block; a tanh head gives
    the image, or with ``fill="harmonic"`` the correction to the fill image the decoder also sees.

    Args:
        decoder_filters: one width per doubling, ``log2(patch_size)`` of them (None: 64, 32, ...
            halving, at least 8).
        others: as :class:`helpers.vit.MaskTokenViT`'s.
    """

    builder = "vit_cnn"

    def __init__(
        self, image_shape=(32, 32, 3), patch_size=4, embed_dim=128, depth=4, num_heads=4,
        mlp_dim=256, latent_dim=32, decoder_filters=None, dropout=0.0, pos_init="sincos",
        fill="token", fill_iterations=128, mixed_precision=False, name="vit_cnn", **kwargs,
    ):  # fmt: skip
        image_shape, dropout = base.check_vit(
            image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim, dropout, pos_init,
            fill, fill_iterations,
        )  # fmt: skip
        check_positive_int(latent_dim, "latent_dim")
        decoder_filters = _check_decoder_filters(decoder_filters, patch_size)
        settings = base.settings_of(locals())
        grid = grid_shape(image_shape[:2], patch_size)
        with base.policy(mixed_precision):
            images, mask = base.model_inputs(image_shape, patch_size)
            shape = base.colour_shape(image_shape)
            x, guess = vit_encoder(  # the mask-token ViT's encoder, without its head
                images, mask, image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim,
                dropout, pos_init, fill, fill_iterations,
            )  # fmt: skip
            x = layers.Dense(latent_dim, name="to_latent")(x)
            x = layers.Reshape((*grid, latent_dim), name="latent_grid")(x)
            for i, f in enumerate(decoder_filters):
                x = layers.Conv2DTranspose(
                    f, 3, strides=2, padding="same", activation="relu", name=f"up_{i}"
                )(x)
                y = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"res_{i}_a")(x)
                y = layers.Conv2D(f, 3, padding="same", name=f"res_{i}_b")(y)
                x = layers.ReLU(name=f"res_{i}_relu")(layers.Add(name=f"res_{i}")([x, y]))
            refine = fill == "harmonic"  # the decoder sees the fill and corrects it (head at 0)
            if refine:
                guess = mim.Unpatchify(patch_size, shape, dtype="float32", name="fill_image")(guess)
                x = layers.Concatenate(name="with_fill")([x, guess])
            x = layers.Conv2D(
                shape[2], 3, padding="same", activation="tanh", dtype="float32",
                kernel_initializer="zeros" if refine else "glorot_uniform", name="head",
            )(x)  # fmt: skip
            if refine:
                out = layers.Add(dtype="float32", name="guess_plus")([guess, x])
                out = layers.ReLU(max_value=1.0, dtype="float32", name="to_unit")(out)
            else:
                out = layers.Rescaling(0.5, offset=0.5, dtype="float32", name="to_unit")(x)
            out = base.gray_out(out, image_shape)
            super().__init__({"images": images, "mask": mask}, out, settings, name=name, **kwargs)


def build_vit_cnn(
    image_shape=(32, 32, 3), patch_size: int = 4, *, seed: int | None = 0, **settings
) -> VitCnnAutoencoder:
    """A :class:`VitCnnAutoencoder` (``settings``: its other arguments) seeded by ``seed``."""
    return base.build(VitCnnAutoencoder, seed, image_shape, patch_size, **settings)


def build_cnn_autoencoder(
    image_shape=(32, 32, 3), patch_size: int = 4, *, seed: int | None = 0, **settings
) -> CnnAutoencoder:
    """A :class:`CnnAutoencoder` (``settings``: its other arguments) seeded by ``seed``."""
    return base.build(CnnAutoencoder, seed, image_shape, patch_size, **settings)


def build_aae(
    image_shape=(32, 32, 3), patch_size: int = 4, *, seed: int | None = 0, **settings
) -> AdversarialAutoencoder:
    """An :class:`AdversarialAutoencoder` whose initial weights and prior samples are seeded."""
    return base.build(AdversarialAutoencoder, seed, image_shape, patch_size, seed=seed, **settings)


def _check_cnn(image_shape, patch_size, filters, dropout) -> tuple[tuple, tuple, float]:
    """The CNN's checked ``(image_shape, filters, dropout)``; ``filters``: one halving each."""
    h, w, c = base.check_image_shape(image_shape)
    check_patch_size(patch_size, (h, w))
    if not isinstance(filters, (tuple, list)) or not filters:
        raise SettingError("filters", filters, "must be a non-empty list of positive ints")
    filters = tuple(check_positive_int(f, "filters entries") for f in filters)
    factor = 2 ** len(filters)
    if h % factor or w % factor:
        most = min(h & -h, w & -w).bit_length() - 1
        problem = f"the image size {h}x{w} must be divisible by 2**len(filters) = {factor} (one"
        problem += f" halving per stage); use at most {most} stages"
        raise SettingError("filters", list(filters), problem)
    return (h, w, c), filters, check_fraction(dropout, "dropout")


def _check_decoder_filters(decoder_filters, patch_size) -> tuple:
    """The ViT + CNN decoder's checked widths, one per doubling (None: the default widths)."""
    doublings = patch_size.bit_length() - 1
    if patch_size != 2**doublings:
        raise SettingError(
            "patch_size", patch_size, "must be a power of 2 for the CNN decoder (1, 2, 4, 8, 16)"
        )
    if decoder_filters is None:
        decoder_filters = tuple(max(64 >> i, 8) for i in range(doublings))
    if not isinstance(decoder_filters, (tuple, list)) or len(decoder_filters) != doublings:
        problem = f"must list {doublings} widths, one per doubling from the {patch_size}-pixel"
        raise SettingError("decoder_filters", decoder_filters, problem + " patch grid to the image")
    return tuple(check_positive_int(f, "decoder_filters entries") for f in decoder_filters)


def adversary_scores(model, images: np.ndarray, mask: np.ndarray) -> dict:
    """How the games of an :class:`AdversarialAutoencoder` stand on ``images`` with ``mask``
    hidden: the discriminators' mean probability of "real" for real samples (``*_real``: prior
    codes, real images) and the model's (``*_fake``); both near 0.5 at the balance."""
    if not isinstance(model, AdversarialAutoencoder):
        raise SettingError("model", getattr(model, "name", model), "must be an adversarial model")
    inputs = {"images": images.astype(np.float32), "mask": mask.astype(np.float32)}
    codes = keras.Model(model.input, model.get_layer("latent").output)(inputs, training=False)
    codes = ops.reshape(codes, (-1, codes.shape[-1]))
    games = {"latent": ("latent_adversary", keras.random.normal(ops.shape(codes), seed=0), codes)}
    if model.settings["image_weight"] > 0:
        out = ops.convert_to_tensor(reconstruct(model, images, mask))
        hidden = mim.pixel_mask(inputs["mask"], model.patch_size, images.shape[1:])
        fake = hidden * out + (1.0 - hidden) * inputs["images"]
        games["image"] = ("image_adversary", inputs["images"], fake)
    return {
        f"{game}_{side}": float(ops.mean(ops.sigmoid(model.get_layer(name).discriminate(x, True))))
        for game, (name, real, fake) in games.items()
        for side, x in (("real", real), ("fake", fake))
    }


def build_model(name: str, recipe: str = "tuned", *, lowest_ratio: float | None = None, **kwargs):
    """Build a model by name (``vit``, ``mae``, ``cnn``, ``vit_cnn``, ``aae``, ``vit_biharmonic``
    or ``pretrained_vit``) with the settings of ``recipe`` (:mod:`helpers.recipes`).

    Args:
        lowest_ratio: the lowest ratio the model will see; the MAE's default ``min_mask_ratio``.
        **kwargs: to the model's builder, over the recipe.
    """
    check_choice(name, "model name", BUILDERS)
    kwargs = {**model_settings(recipe, name), **kwargs}
    if min_hidden_bound(name) and lowest_ratio is not None:
        kwargs.setdefault("min_mask_ratio", lowest_ratio)
    builders = {"vit": build_vit, "vit_biharmonic": build_vit, "mae": build_mae, "aae": build_aae}
    builders.update(cnn=build_cnn_autoencoder, vit_cnn=build_vit_cnn)
    return {**builders, "pretrained_vit": pretrained.build_pretrained_vit}[name](**kwargs)


def untrained_twin(model: keras.Model, seed: int | None = 0) -> keras.Model:
    """``model`` rebuilt from its config with the initial weights of ``seed`` (its start if built
    with it)."""
    config = keras.saving.serialize_keras_object(model)  # the architecture, no weights
    base.seed_weights(seed)
    # safe mode: an untrusted model's config (a grader's submission) runs no Python code
    return keras.saving.deserialize_keras_object(config, safe_mode=True)


class Inpainter:
    """A non-learned predictor: the learned models' interface (``predict_on_batch`` of
    ``{"images", "mask"}``) over :meth:`fill`; any image shape and patch size."""

    name = "inpainter"
    learned = False
    image_shape = patch_size = None
    min_masked = 0

    def predict_on_batch(self, inputs) -> np.ndarray:
        images = np.asarray(inputs["images"], dtype=np.float32)
        mask = np.asarray(inputs["mask"]) > 0.5
        return self.fill(images, mask, mask_patch_size(images.shape[1:3], mask.shape[1]))

    def fill(self, images: np.ndarray, mask: np.ndarray, patch_size: int) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class BiharmonicInpainter(Inpainter):
    """Non-learned baseline: ``skimage.restoration.inpaint_biharmonic`` on every image."""

    name = "biharmonic"

    def fill(self, images: np.ndarray, mask: np.ndarray, patch_size: int) -> np.ndarray:
        """Full images (N, H, W, C) float32 with the masked patches inpainted."""
        from skimage.restoration import inpaint_biharmonic  # lazy: slow to import

        pixels = patch_mask_to_pixels(mask, patch_size, images.shape[1:3])[..., 0]
        out = np.empty(images.shape, dtype=np.float32)
        for i, (img, m) in enumerate(zip(images, pixels)):
            out[i] = inpaint_biharmonic(img, m, channel_axis=-1) if m.any() else img
        return out


class MeanColourInpainter(Inpainter):
    """Non-learned floor: every hidden pixel gets the mean colour (per channel) of the image's
    visible pixels (of the whole image if nothing is visible); visible pixels are kept."""

    name = "mean_colour"

    def fill(self, images: np.ndarray, mask: np.ndarray, patch_size: int) -> np.ndarray:
        """Full images (N, H, W, C) float32, the masked patches set to the visible mean colour."""
        hidden = patch_mask_to_pixels(mask, patch_size, images.shape[1:3])  # (N, H, W, 1)
        images = images.astype(np.float32, copy=False)
        visible = ~hidden | hidden.all(axis=(1, 2, 3), keepdims=True)  # all if nothing is visible
        weights = np.broadcast_to(visible, images.shape).astype(np.float32)
        mean = np.average(images, axis=(1, 2), weights=weights, keepdims=True)
        return np.where(hidden, mean, images).astype(np.float32)


_CLASSICAL = {c.name: c for c in (BiharmonicInpainter, MeanColourInpainter)}  # NON_LEARNED


def mask_patch_size(image_shape, n_patches: int) -> int:
    """The patch size that cuts images of ``image_shape`` (H, W, ...) into ``n_patches`` patches."""
    h, w = int(image_shape[0]), int(image_shape[1])
    sizes = {(h // p) * (w // p): p for p in range(min(h, w), 0, -1) if h % p == 0 and w % p == 0}
    if n_patches not in sizes:
        problem = f"images of {h}x{w} pixels have one of {sorted(sizes)} patches per image"
        raise SettingError("mask", f"{n_patches} patches per image", problem)
    return sizes[n_patches]


def check_fits(
    predictor, image_shape, patch_size: int, *, hidden: int | None = None, ratio=None
) -> None:
    """Raise :class:`SettingError` unless ``predictor`` takes images of ``image_shape`` with masks
    of ``patch_size`` patches hiding ``hidden`` (the fewest in a batch) or ``ratio`` of them."""
    if not isinstance(predictor, (MaskedImageModel, Inpainter)):
        problem = "must be a model from helpers.models (build_* or load_predictor)"
        raise SettingTypeError("predictor", type(predictor).__name__, problem)
    want, built, model = predictor.image_shape, predictor.patch_size, f"this {predictor.name} model"
    if want is not None and tuple(image_shape) != want:
        raise SettingError("images", tuple(image_shape), f"{model} takes images of shape {want}")
    if built is not None and patch_size != built:
        raise SettingError(
            "patch_size", patch_size, f"{model} was built for patch_size {built}; allowed: {built}"
        )
    gh, gw = grid_shape(image_shape[:2], patch_size)
    if ratio is not None:
        hidden = n_masked(ratio, gh * gw)
    if hidden is not None:
        param, value = ("ratio", ratio) if ratio is not None else ("mask", f"{hidden} hidden")
        check_hidden(hidden, predictor.min_masked, gh * gw, param, value, model=model)


def reconstruct(
    predictor, images: np.ndarray, mask: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Full images (N, H, W, C) float32 predicted by ``predictor`` for ``images`` (float in [0,
    1]) with ``mask`` hidden (bool (N, L), its length gives the patch size), in batches."""
    check_images(images)
    check_mask(mask, n_images=images.shape[0])
    patch_size = mask_patch_size(images.shape[1:3], mask.shape[1])
    hidden = int(mask.sum(axis=1).min()) if mask.size else None
    check_fits(predictor, images.shape[1:], patch_size, hidden=hidden)
    batch_size = check_positive_int(batch_size, "batch_size")
    out = np.empty(images.shape, dtype=np.float32)
    for start in range(0, images.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        batch = images[sl].astype(np.float32, copy=False)
        inputs = {"images": batch, "mask": mask[sl].astype(np.float32)}
        out[sl] = np.asarray(predictor.predict_on_batch(inputs), dtype=np.float32)
    return out


def stage_shapes(model, images: np.ndarray, mask: np.ndarray, stages) -> list[tuple[str, tuple]]:
    """``(layer name, output shape)`` of the layers named in ``stages`` on ``images``, ``mask``."""
    probe = keras.Model(model.input, [model.get_layer(name).output for name in stages])
    outputs = probe({"images": images, "mask": mask.astype(np.float32)}, training=False)
    return [(name, tuple(out.shape)) for name, out in zip(stages, outputs)]


def gray_variant(model: MaskedImageModel) -> MaskedImageModel:
    """The same Transformer for one-channel images, every weight of ``model`` copied by layer
    name; only the gray adapters are new (:func:`helpers.base.gray_adapter`, ``gray_out``)."""
    if not isinstance(model, (MaskTokenViT, MaeViT, VitCnnAutoencoder)):
        problem = "has no gray variant: the Transformers (vit, mae, vit_cnn) reach three channels "
        problem += "through a 1x1 adapter; the CNN takes one channel as it is (build it with "
        raise SettingError(
            "model",
            getattr(model, "name", type(model).__name__),
            problem + "image_shape=(H, W, 1))",
        )
    if model.image_shape[2] != 3:
        problem = f"takes {model.image_shape[2]} channels; allowed: a colour model"
        raise SettingError("model", model.name, problem)
    config = {**model.get_config(), "image_shape": (*model.image_shape[:2], 1)}
    gray = type(model).from_config(config)
    for layer in model.layers:
        if layer.weights:
            gray.get_layer(layer.name).set_weights(layer.get_weights())
    return gray


def load_predictor(path_or_name):
    """The non-learned predictor named ``path_or_name``, or the saved ``.keras`` model at it."""
    if isinstance(path_or_name, str) and path_or_name in _CLASSICAL:
        return _CLASSICAL[path_or_name]()
    path = os.fspath(path_or_name)
    if not path.endswith(".keras"):
        allowed = f"must be one of {list(NON_LEARNED)} or a path to a .keras file"
        raise SettingError("path_or_name", path_or_name, allowed)
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "no saved model", path)
    model = keras.saving.load_model(path, compile=False)
    if not isinstance(model, MaskedImageModel):
        problem = f"holds a {type(model).__name__} with inputs {[t.name for t in model.inputs]}: it"
        problem += " was written by an older version of this package, whose models took patches or"
        problem += " a masked image; this version's models take images and a mask. Retrain it"
        raise SettingError("path_or_name", path, problem + " (python -m helpers train ...).")
    return model
