"""Predictors of hidden patches: two Transformers, a convolutional autoencoder, a ViT-encoder +
CNN-decoder hybrid, an adversarial autoencoder, biharmonic inpainting, the mean-colour guess.

Every predictor takes ``{"images": (N, H, W, C) float32 in [0, 1], "mask": (N, L) 0/1}`` (1 =
hidden patch) and returns full images (N, H, W, C); :func:`reconstruct` runs any of them in
batches, :mod:`helpers.metrics` makes the composite and scores it. The learned ones are Keras
models (:class:`MaskedImageModel`) that patch the images themselves and know their
``image_shape``, ``patch_size`` and ``min_masked`` from their saved config; no caller needs to
know which model it holds.

- ``vit`` (:mod:`helpers.vit`, :func:`build_vit`): mask-token ViT. Patches are projected to
  tokens; every masked token is replaced by one learnable mask token; pre-LN Transformer blocks; a
  Dense head predicts every patch.
- ``vit_biharmonic`` (:func:`build_vit` with ``fill="harmonic"``): "ViT refining biharmonic", the
  mask-token ViT whose hidden patches enter as the harmonic fill of the visible pixels plus the
  mask token; its head predicts a correction to that classical fill. Untrained it scores what the
  fill scores, so it is never a default and never called a plain ViT.
- ``mae`` (:mod:`helpers.mae`, :func:`build_mae`): MAE-style ViT (He et al., 2022). The encoder
  runs on the visible tokens only (at least ``L - n_masked(min_mask_ratio, L)`` are hidden:
  ``model.min_masked``), a light decoder predicts every patch.
- ``cnn`` (:func:`build_cnn_autoencoder`): strided-convolution encoder, transposed-convolution
  decoder, batch normalization and dropout; inside it the hidden pixels are set to
  :data:`CNN_FILL` and the pixel mask is added as an extra channel; output the whole image.
- ``vit_cnn`` (:func:`build_vit_cnn`): the mask-token ViT's encoder without its head, each token
  projected to a small latent laid out on the patch grid, and a decoder of stride-2 transposed
  convolutions and residual blocks up to the image size; tanh output mapped to [0, 1].
- ``aae`` (:func:`build_aae`): adversarial autoencoder, the CNN's encoder and decoder with a code
  between them that a discriminator pushes towards N(0, I) (Makhzani et al., 2015), and as an
  option a discriminator on the filled-in images (Context Encoders, Pathak et al., 2016).
- ``biharmonic`` (:class:`BiharmonicInpainter`): ``skimage.restoration.inpaint_biharmonic``,
  not learned.
- ``mean_colour`` (:class:`MeanColourInpainter`): every hidden pixel gets the mean colour of the
  image's visible pixels; what a model that learned nothing scores.

The Transformers' defaults are the ``tuned`` recipe of :mod:`helpers.recipes` (learned position
embeddings started from a 2-D sine-cosine table, no dropout); ``build_model(kind,
recipe="reference")`` builds the seed design (random start, dropout 0.1).
"""

from __future__ import annotations

import errno
import os

import keras
import numpy as np
from keras import layers, ops

from . import layers as mim
from . import pretrained  # registers PretrainedViT for load_predictor and safe-mode loads
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
from .base import (
    CNN_FILL,
    RGB_TO_GRAY,  # noqa: F401 (models.RGB_TO_GRAY: gray_variant's start)
    MaskedImageModel,
    build,
    check_image_shape,
    check_transformer,
    colour_shape,
    gray_out,
    model_inputs,
    policy,
    seed_weights,
    settings_of,
)
from .mae import MaeViT, build_mae
from .masking import n_masked
from .patches import grid_shape, patch_mask_to_pixels
from .recipes import BUILDERS, NON_LEARNED, VIT_FILLS, min_hidden_bound, model_settings
from .vit import MaskTokenViT, build_vit, vit_encoder  # noqa: F401


# --------------------------------------------------------------------------------------------
# The learned predictors: Keras models that take images and a mask and return images
# --------------------------------------------------------------------------------------------
def cnn_encoder(x, filters, dropout):
    """The CNN autoencoder's encoder on a Keras tensor: ``(bottleneck, stage inputs)``; each stage
    a stride-2 3x3 convolution, batch normalization, ReLU and dropout."""
    stage_inputs = []
    for i, f in enumerate(filters):
        stage_inputs.append(x)
        x = layers.Conv2D(f, 3, strides=2, padding="same", use_bias=False, name=f"enc_conv_{i}")(x)
        # momentum 0.9 (Keras: 0.99): the moving statistics settle within a few hundred steps
        x = layers.BatchNormalization(momentum=0.9, name=f"enc_bn_{i}")(x)
        x = layers.Activation("relu", name=f"enc_relu_{i}")(x)
        x = layers.Dropout(dropout, name=f"enc_drop_{i}")(x)
    return x, stage_inputs


def cnn_decoder(x, filters, dropout, skips, stage_inputs, channels):
    """The mirror of :func:`cnn_encoder`: stride-2 transposed convolutions (with the encoder's
    stage inputs joined when ``skips``), then a 3x3 convolution with a sigmoid to ``channels``."""
    for i, f in enumerate(reversed(filters)):
        x = layers.Conv2DTranspose(
            f, 3, strides=2, padding="same", use_bias=False, name=f"dec_conv_{i}"
        )(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"dec_bn_{i}")(x)
        x = layers.Activation("relu", name=f"dec_relu_{i}")(x)
        x = layers.Dropout(dropout, name=f"dec_drop_{i}")(x)
        if skips:
            x = layers.Concatenate(name=f"skip_{i}")([x, stage_inputs[-1 - i]])
    return layers.Conv2D(
        channels, 3, padding="same", activation="sigmoid", dtype="float32", name="head"
    )(x)


@keras.saving.register_keras_serializable(package="helpers")
class CnnAutoencoder(MaskedImageModel):
    """Convolutional autoencoder (:func:`build_cnn_autoencoder` seeds it): images and mask in
    (the hidden pixels become :data:`CNN_FILL` and the pixel mask an extra channel inside the
    model), images out.

    Each encoder stage is a 3x3 convolution with stride 2, batch normalization, ReLU and dropout;
    the decoder mirrors it with stride-2 transposed convolutions; a 3x3 convolution with a sigmoid
    gives the C output channels. ``skips=True`` concatenates each encoder stage's input to the
    decoder output of the same size (U-Net style), so the decoder sees the visible pixels at full
    resolution instead of only through the bottleneck. ``patch_size`` is the size of the mask's
    patches.
    """

    builder = "cnn"

    def __init__(
        self,
        image_shape=(32, 32, 3),
        patch_size=4,
        filters=(32, 64, 128),
        dropout=0.0,
        skips=True,
        mixed_precision=False,
        name="cnn",
        **kwargs,
    ):
        image_shape, filters, dropout = _check_cnn(image_shape, patch_size, filters, dropout)
        skips = bool(skips)
        settings = settings_of(locals())
        with policy(mixed_precision):
            images, mask = model_inputs(image_shape, patch_size)
            x = mim.MaskedImage(patch_size, CNN_FILL, name="masked_image")(images, mask)
            x, stage_inputs = cnn_encoder(x, filters, dropout)
            out = cnn_decoder(x, filters, dropout, skips, stage_inputs, image_shape[2])
            super().__init__({"images": images, "mask": mask}, out, settings, name=name, **kwargs)
        self.feature_layer = f"enc_relu_{len(filters) - 1}"  # the bottleneck


@keras.saving.register_keras_serializable(package="helpers")
class AdversarialAutoencoder(MaskedImageModel):
    """Adversarial autoencoder (:func:`build_aae` seeds it): the CNN autoencoder's encoder and
    decoder with a code between them that a discriminator pushes towards the prior N(0, I)
    (Makhzani et al., 2015), and, with ``image_weight > 0``, a second discriminator on the output
    composited with the visible pixels (Context Encoders, Pathak et al., 2016, whose weight is
    0.001).

    The code is ``latent_dim`` values per position of the bottleneck (a 1x1 convolution; the
    decoder starts from it). Training is the usual ``fit``: each batch's single backward pass
    updates the autoencoder on the reconstruction loss plus ``latent_weight`` (and
    ``image_weight``) times the non-saturating adversarial loss, and each discriminator on its
    own classification loss (:mod:`helpers.layers`, ``LatentAdversary`` and ``ImageAdversary``;
    simultaneous updates, the same on every backend). The discriminators are layers of the model
    that do nothing at inference. The reported loss is the reconstruction loss alone;
    :func:`adversary_scores` tells how each game stands. With ``skips`` (the ``tuned`` recipe)
    the decoder also sees the encoder's stage inputs, so the code carries only part of the image.

    ``latent_weight``: the weight of the code's adversarial loss; ``image_weight``: the image
    discriminator's (0: no image discriminator). A resumed training draws other prior samples
    than an uninterrupted one would (Keras keeps no random-number state in a backup); it is
    otherwise the same run.
    """

    builder = "aae"

    def __init__(
        self,
        image_shape=(32, 32, 3),
        patch_size=4,
        filters=(32, 64, 128),
        latent_dim=16,
        latent_weight=1e-4,
        image_weight=0.0,
        dropout=0.0,
        skips=True,
        seed=0,
        mixed_precision=False,
        name="aae",
        **kwargs,
    ):
        image_shape, filters, dropout = _check_cnn(image_shape, patch_size, filters, dropout)
        latent_dim = check_positive_int(latent_dim, "latent_dim")
        latent_weight = check_nonnegative_number(latent_weight, "latent_weight")
        image_weight = check_nonnegative_number(image_weight, "image_weight")
        skips = bool(skips)
        settings = settings_of(locals())
        with policy(mixed_precision):
            images, mask = model_inputs(image_shape, patch_size)
            x = mim.MaskedImage(patch_size, CNN_FILL, name="masked_image")(images, mask)
            x, stage_inputs = cnn_encoder(x, filters, dropout)
            # the code: latent_dim values per position of the bottleneck, pushed towards N(0, I)
            z = layers.Conv2D(latent_dim, 1, name="latent")(x)
            z = mim.LatentAdversary(latent_weight, seed=seed, name="latent_adversary")(z)
            out = cnn_decoder(z, filters, dropout, skips, stage_inputs, image_shape[2])
            if image_weight > 0:
                out = mim.ImageAdversary(
                    image_weight, patch_size, dtype="float32", name="image_adversary"
                )(out, images, mask)
            super().__init__({"images": images, "mask": mask}, out, settings, name=name, **kwargs)
        self.feature_layer = "latent"


@keras.saving.register_keras_serializable(package="helpers")
class VitCnnAutoencoder(MaskedImageModel):
    """ViT encoder + CNN decoder (:func:`build_vit_cnn` seeds it): images and mask in, images out.

    The encoder is the mask-token ViT's (a hidden patch enters as the learned mask token) without
    its head. Each token is projected to ``latent_dim`` values and the tokens are laid out on the
    patch grid (H/P x W/P x latent_dim); the decoder doubles that grid back to the image with one
    stride-2 transposed convolution (ReLU) and one residual block of two 3x3 convolutions per
    entry of ``decoder_filters`` (default: 64, 32, ... halving, one per doubling, so
    ``log2(patch_size)`` entries); a 3x3 convolution with tanh gives the image. ``fill="token"``:
    a hidden patch enters the encoder as the mask token alone and the tanh output, mapped to
    [0, 1], is the image (every recipe). ``fill="harmonic"`` (as :func:`build_vit`): a hidden
    patch enters as the harmonic fill of the visible pixels plus the mask token, the decoder's
    last feature map is joined by the fill image, and the tanh output (started at zero) is the
    correction added to the fill, clipped to [0, 1].
    ViT-B/16 sizes (``patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_dim=3072``) are
    allowed; the defaults are small for a CPU.
    """

    builder = "vit_cnn"

    def __init__(
        self,
        image_shape=(32, 32, 3),
        patch_size=4,
        embed_dim=128,
        depth=4,
        num_heads=4,
        mlp_dim=256,
        latent_dim=32,
        decoder_filters=None,
        dropout=0.0,
        pos_init="sincos",
        fill="token",
        fill_iterations=128,
        mixed_precision=False,
        name="vit_cnn",
        **kwargs,
    ):
        image_shape = check_transformer(
            image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim, dropout, pos_init
        )
        check_positive_int(latent_dim, "latent_dim")
        check_choice(fill, "fill", VIT_FILLS)
        check_positive_int(fill_iterations, "fill_iterations", minimum=0)
        decoder_filters = _check_decoder_filters(decoder_filters, patch_size)
        dropout = float(dropout)
        settings = settings_of(locals())
        grid = grid_shape(image_shape[:2], patch_size)
        with policy(mixed_precision):
            images, mask = model_inputs(image_shape, patch_size)
            shape = colour_shape(image_shape)
            x, guess = vit_encoder(  # the mask-token ViT's encoder, without its head
                images, mask, image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim,
                dropout, pos_init, fill, fill_iterations,
            )  # fmt: skip
            # latent: each token projected to latent_dim channels, laid out on the patch grid
            x = layers.Dense(latent_dim, name="to_latent")(x)
            x = layers.Reshape((*grid, latent_dim), name="latent_grid")(x)
            # decoder: one stride-2 transposed convolution and one residual block per doubling
            for i, f in enumerate(decoder_filters):
                x = layers.Conv2DTranspose(
                    f, 3, strides=2, padding="same", activation="relu", name=f"up_{i}"
                )(x)
                y = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"res_{i}_a")(x)
                y = layers.Conv2D(f, 3, padding="same", name=f"res_{i}_b")(y)
                x = layers.ReLU(name=f"res_{i}_relu")(layers.Add(name=f"res_{i}")([x, y]))
            if fill == "harmonic":  # the decoder sees the fill and corrects it (head starts at 0)
                guess = mim.Unpatchify(patch_size, shape, dtype="float32", name="fill_image")(guess)
                x = layers.Concatenate(name="with_fill")([x, guess])
                x = layers.Conv2D(
                    shape[2], 3, padding="same", activation="tanh", dtype="float32",
                    kernel_initializer="zeros", name="head",
                )(x)  # fmt: skip
                out = layers.Add(dtype="float32", name="guess_plus")([guess, x])
                out = layers.ReLU(max_value=1.0, dtype="float32", name="to_unit")(out)
            else:
                x = layers.Conv2D(
                    shape[2], 3, padding="same", activation="tanh", dtype="float32",
                    name="head",
                )(x)  # fmt: skip
                out = layers.Rescaling(0.5, offset=0.5, dtype="float32", name="to_unit")(x)
            out = gray_out(out, image_shape)
            super().__init__({"images": images, "mask": mask}, out, settings, name=name, **kwargs)


# --------------------------------------------------------------------------------------------
# Builders: the models with the initial weights of a seed; the classes check their settings
# --------------------------------------------------------------------------------------------
def build_vit_cnn(
    image_shape=(32, 32, 3), patch_size: int = 4, *, seed: int | None = 0, **settings
) -> VitCnnAutoencoder:
    """A :class:`VitCnnAutoencoder` (``settings``: its other arguments, by name) whose initial
    weights are those of ``seed`` (None: unseeded)."""
    return build(VitCnnAutoencoder, seed, image_shape, patch_size, **settings)


def build_cnn_autoencoder(
    image_shape=(32, 32, 3), patch_size: int = 4, *, seed: int | None = 0, **settings
) -> CnnAutoencoder:
    """A :class:`CnnAutoencoder` (``settings``: its other arguments, by name) whose initial
    weights are those of ``seed`` (None: unseeded)."""
    return build(CnnAutoencoder, seed, image_shape, patch_size, **settings)


def build_aae(
    image_shape=(32, 32, 3), patch_size: int = 4, *, seed: int | None = 0, **settings
) -> AdversarialAutoencoder:
    """An :class:`AdversarialAutoencoder` (``settings``: its other arguments, by name) whose
    initial weights and prior samples are those of ``seed`` (None: unseeded)."""
    return build(AdversarialAutoencoder, seed, image_shape, patch_size, seed=seed, **settings)


def _check_cnn(image_shape, patch_size, filters, dropout) -> tuple[tuple, tuple, float]:
    """The CNN's checked ``(image_shape, filters, dropout)``; ``filters``: one halving each."""
    h, w, c = check_image_shape(image_shape)
    check_patch_size(patch_size, (h, w))
    if not isinstance(filters, (tuple, list)) or not filters:
        raise SettingError("filters", filters, "must be a non-empty list of positive ints")
    filters = tuple(check_positive_int(f, "filters entries") for f in filters)
    factor = 2 ** len(filters)
    if h % factor or w % factor:
        raise SettingError(
            "filters",
            list(filters),
            f"the image size {h}x{w} must be divisible by 2**len(filters) = {factor} (one halving "
            f"per stage); use at most {min(_twos(h), _twos(w))} stages",
        )
    return (h, w, c), filters, check_fraction(dropout, "dropout")


def _check_decoder_filters(decoder_filters, patch_size) -> tuple:
    """The ViT + CNN decoder's widths, one per doubling from the patch grid to the image (None:
    64, 32, ... halving, at least 8)."""
    doublings = patch_size.bit_length() - 1
    if patch_size != 2**doublings:
        raise SettingError(
            "patch_size", patch_size, "must be a power of 2 for the CNN decoder (1, 2, 4, 8, 16)"
        )
    if decoder_filters is None:
        decoder_filters = tuple(max(64 >> i, 8) for i in range(doublings))
    if not isinstance(decoder_filters, (tuple, list)) or len(decoder_filters) != doublings:
        raise SettingError(
            "decoder_filters",
            decoder_filters,
            f"must list {doublings} widths, one per doubling from the {patch_size}-pixel patch "
            "grid to the image",
        )
    return tuple(check_positive_int(f, "decoder_filters entries") for f in decoder_filters)


def adversary_scores(model, images: np.ndarray, mask: np.ndarray) -> dict:
    """How the adversarial games of an :class:`AdversarialAutoencoder` stand on ``images`` with
    ``mask`` hidden: the discriminators' mean probability of "real" for real samples (prior codes,
    real images) and for the model's (its codes, its composited outputs). At the balance both are
    near 0.5; a discriminator that wins outright gives ~1 and ~0."""
    if not isinstance(model, AdversarialAutoencoder):
        raise SettingError("model", getattr(model, "name", model), "must be an adversarial model")
    inputs = {"images": images.astype(np.float32), "mask": mask.astype(np.float32)}
    codes = keras.Model(model.input, model.get_layer("latent").output)(inputs, training=False)
    codes = ops.reshape(codes, (-1, codes.shape[-1]))
    latent = model.get_layer("latent_adversary")
    prior = keras.random.normal(ops.shape(codes), seed=0)
    scores = {
        "latent_real": float(ops.mean(ops.sigmoid(latent.discriminate(prior, True)))),
        "latent_fake": float(ops.mean(ops.sigmoid(latent.discriminate(codes, True)))),
    }
    if model.settings["image_weight"] > 0:
        adversary = model.get_layer("image_adversary")
        out = ops.convert_to_tensor(reconstruct(model, images, mask))
        hidden = mim.pixel_mask(inputs["mask"], model.patch_size, images.shape[1:])
        fake = hidden * out + (1.0 - hidden) * inputs["images"]
        scores["image_real"] = float(
            ops.mean(ops.sigmoid(adversary.discriminate(inputs["images"], True)))
        )
        scores["image_fake"] = float(ops.mean(ops.sigmoid(adversary.discriminate(fake, True))))
    return scores


def _twos(n: int) -> int:
    k = 0
    while n % 2 == 0:
        n //= 2
        k += 1
    return k


def build_model(name: str, recipe: str = "tuned", *, lowest_ratio: float | None = None, **kwargs):
    """Build a model by name: ``vit``, ``mae``, ``cnn``, ``vit_cnn``, ``aae``, ``vit_biharmonic``
    (the mask-token ViT refining the harmonic fill) or ``pretrained_vit``
    (:mod:`helpers.pretrained`, around a downloaded backbone: ``preset=...``), with the model
    settings of ``recipe`` (:mod:`helpers.recipes`: ``tuned``, the builders' defaults, or
    ``reference``); ``kwargs`` go to its builder and override the recipe. ``lowest_ratio``: the
    lowest ratio the model will be trained or scored at; the MAE is built for it
    (``min_mask_ratio``) unless told otherwise."""
    check_choice(name, "model name", BUILDERS)
    kwargs = {**model_settings(recipe, name), **kwargs}
    if min_hidden_bound(name) and lowest_ratio is not None:
        kwargs.setdefault("min_mask_ratio", lowest_ratio)
    builders = {"vit": build_vit, "vit_biharmonic": build_vit, "mae": build_mae}
    builders.update({"cnn": build_cnn_autoencoder, "vit_cnn": build_vit_cnn, "aae": build_aae})
    builders["pretrained_vit"] = pretrained.build_pretrained_vit
    return builders[name](**kwargs)


def untrained_twin(model: keras.Model, seed: int | None = 0) -> keras.Model:
    """The same architecture as ``model`` with the initial weights of ``seed``: rebuilt from its
    config (as a saved ``.keras`` file is), nothing copied from its trained weights. A model of
    :func:`build_model` built with ``seed`` gets back the very weights it started from, so
    ``score(model) - score(untrained_twin(model, seed))`` is what training added."""
    config = keras.saving.serialize_keras_object(model)  # the architecture, no weights
    seed_weights(seed)
    # safe mode: an untrusted model's config (a grader's submission) runs no Python code
    return keras.saving.deserialize_keras_object(config, safe_mode=True)


# --------------------------------------------------------------------------------------------
# Biharmonic inpainting
# --------------------------------------------------------------------------------------------
class Inpainter:
    """A non-learned predictor: the learned models' interface (``predict_on_batch`` of
    ``{"images", "mask"}``) over :meth:`fill`; any image shape and patch size."""

    name = "inpainter"
    learned = False
    image_shape = None
    patch_size = None
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
        """Full images (N, H, W, C) float32 with the masked patches set to the visible mean
        colour."""
        hidden = patch_mask_to_pixels(mask, patch_size, images.shape[1:3])  # (N, H, W, 1)
        images = images.astype(np.float32, copy=False)
        weights = np.where(hidden.all(axis=(1, 2, 3), keepdims=True), True, ~hidden).astype(
            np.float32
        )
        mean = (images * weights).sum(axis=(1, 2), keepdims=True) / weights.sum(
            axis=(1, 2), keepdims=True
        )
        return np.where(hidden, mean, images).astype(np.float32)


_CLASSICAL = {c.name: c for c in (BiharmonicInpainter, MeanColourInpainter)}  # NON_LEARNED


# --------------------------------------------------------------------------------------------
# One interface for every predictor
# --------------------------------------------------------------------------------------------
def mask_patch_size(image_shape, n_patches: int) -> int:
    """The patch size that cuts images of ``image_shape`` (H, W, ...) into ``n_patches`` patches."""
    h, w = int(image_shape[0]), int(image_shape[1])
    sizes = {(h // p) * (w // p): p for p in range(min(h, w), 0, -1) if h % p == 0 and w % p == 0}
    if n_patches not in sizes:
        raise SettingError(
            "mask",
            f"{n_patches} patches per image",
            f"images of {h}x{w} pixels have one of {sorted(sizes)} patches per image",
        )
    return sizes[n_patches]


def check_fits(
    predictor, image_shape, patch_size: int, *, hidden: int | None = None, ratio=None
) -> None:
    """Raise :class:`SettingError` unless ``predictor`` takes images of ``image_shape`` with masks
    of ``patch_size`` patches hiding ``hidden`` (the fewest in a batch) or ``ratio`` of them."""
    if not isinstance(predictor, (MaskedImageModel, Inpainter)):
        raise SettingTypeError(
            "predictor",
            type(predictor).__name__,
            "must be a model from helpers.models (build_* or load_predictor)",
        )
    want = predictor.image_shape
    if want is not None and tuple(image_shape) != want:
        raise SettingError(
            "images",
            tuple(image_shape),
            f"this {predictor.name} model takes images of shape {want}",
        )
    if predictor.patch_size is not None and patch_size != predictor.patch_size:
        raise SettingError(
            "patch_size",
            patch_size,
            f"this {predictor.name} model was built for patch_size {predictor.patch_size}; "
            f"allowed: {predictor.patch_size}",
        )
    gh, gw = grid_shape(image_shape[:2], patch_size)
    if ratio is not None:
        hidden = n_masked(ratio, gh * gw)
    if hidden is not None:
        param, value = ("ratio", ratio) if ratio is not None else ("mask", f"{hidden} hidden")
        model = f"this {predictor.name} model"
        check_hidden(hidden, predictor.min_masked, gh * gw, param, value, model=model)


def reconstruct(
    predictor, images: np.ndarray, mask: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Full images (N, H, W, C) float32 predicted by ``predictor`` for ``images`` with ``mask``
    hidden.

    ``images``: float in [0, 1]; ``mask``: bool (N, L) from :mod:`helpers.masking` (its length
    gives the patch size). Keras models run in batches of ``batch_size`` without a progress bar.
    """
    check_images(images)
    check_mask(mask, n_images=images.shape[0])
    patch_size = mask_patch_size(images.shape[1:3], mask.shape[1])
    check_fits(
        predictor,
        images.shape[1:],
        patch_size,
        hidden=int(mask.sum(axis=1).min()) if mask.size else None,
    )
    batch_size = check_positive_int(batch_size, "batch_size")
    out = np.empty(images.shape, dtype=np.float32)
    for start in range(0, images.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        inputs = {
            "images": images[sl].astype(np.float32, copy=False),
            "mask": mask[sl].astype(np.float32),
        }
        out[sl] = np.asarray(predictor.predict_on_batch(inputs), dtype=np.float32)
    return out


def stage_shapes(model, images: np.ndarray, mask: np.ndarray, stages) -> list[tuple[str, tuple]]:
    """``(layer name, output shape)`` of each layer named in ``stages`` when ``model`` runs on
    ``images`` and ``mask``: the shapes a reader checks along the way (patches, tokens, pixels)."""
    probe = keras.Model(model.input, [model.get_layer(name).output for name in stages])
    outputs = probe({"images": images, "mask": mask.astype(np.float32)}, training=False)
    return [(name, tuple(out.shape)) for name, out in zip(stages, outputs)]


def gray_variant(model: MaskedImageModel) -> MaskedImageModel:
    """The same Transformer for one-channel images: built from ``model``'s settings with one input
    channel, every weight of ``model`` copied by layer name; only the adapters are new
    (``gray_to_rgb`` copies the gray value into the three channels, ``rgb_to_gray`` takes
    ``skimage.color.rgb2gray``'s weights), so a model trained in colour starts on gray images
    where it stood and can be fine-tuned there."""
    if not isinstance(model, (MaskTokenViT, MaeViT, VitCnnAutoencoder)):
        raise SettingError(
            "model",
            getattr(model, "name", type(model).__name__),
            "has no gray variant: the Transformers (vit, mae, vit_cnn) reach three channels "
            "through a 1x1 adapter; the CNN takes one channel as it is (build it with "
            "image_shape=(H, W, 1))",
        )
    if model.image_shape[2] != 3:
        raise SettingError(
            "model", model.name, f"takes {model.image_shape[2]} channels; allowed: a colour model"
        )
    config = {**model.get_config(), "image_shape": (*model.image_shape[:2], 1)}
    gray = type(model).from_config(config)
    for layer in model.layers:
        if layer.weights:
            gray.get_layer(layer.name).set_weights(layer.get_weights())
    return gray


def load_predictor(path_or_name):
    """``"biharmonic"`` or ``"mean_colour"`` gives that non-learned predictor; a path loads a saved
    ``.keras`` model (one written by this version of the package)."""
    if isinstance(path_or_name, str) and path_or_name in _CLASSICAL:
        return _CLASSICAL[path_or_name]()
    path = os.fspath(path_or_name)
    if not path.endswith(".keras"):
        raise SettingError(
            "path_or_name",
            path_or_name,
            f"must be one of {list(NON_LEARNED)} or a path to a .keras file",
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "no saved model", path)
    model = keras.saving.load_model(path, compile=False)
    if not isinstance(model, MaskedImageModel):
        raise SettingError(
            "path_or_name",
            path,
            f"holds a {type(model).__name__} with inputs {[t.name for t in model.inputs]}: it was "
            "written by an older version of this package, whose models took patches or a masked "
            "image; this version's models take images and a mask. Retrain it (python -m helpers "
            "train ...).",
        )
    return model
