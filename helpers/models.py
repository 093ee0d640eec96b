"""Predictors of hidden patches: two Transformers, a convolutional autoencoder, biharmonic inpainting,
the mean-colour guess.

Every predictor answers :func:`reconstruct` ``(predictor, images, mask, patch_size) -> images``
with a full image; :mod:`helpers.metrics` makes the composite and scores it.

- ``vit`` (:func:`build_vit`): mask-token ViT. Patches (N, L, D) are projected to tokens; every
  masked token is replaced by one learnable mask token (its content is zeroed before the
  projection, so the model never sees it); learnable position embeddings; pre-LN Transformer
  blocks; LayerNorm; a Dense head with a sigmoid predicts every patch.
- ``mae`` (:func:`build_mae`): MAE-style ViT (He et al., 2022). The encoder runs on a fixed number
  ``n_keep = L - n_masked(min_mask_ratio, L)`` of tokens (JAX needs static shapes), chosen
  visible-first by :class:`~helpers.layers.TokenSelector`. When an image hides more patches
  than ``L - n_keep`` (e.g. 70% on a model built for 50%), the extra kept tokens are masked
  patches: their content is zeroed before the projection and they are excluded as attention keys,
  so the visible tokens are encoded exactly as if only they were there. A lighter decoder gets the
  encoded tokens back in place, a decoder mask token at every masked position and its own
  position embeddings, and predicts every patch. A mask hiding *fewer* patches than
  ``L - n_keep`` cannot be handled (a visible patch would be dropped): :func:`reconstruct` and the
  training data raise an error for it. Build with a larger ``min_mask_ratio`` for a faster model
  at high ratios.
- ``cnn`` (:func:`build_cnn_autoencoder`): strided-convolution encoder, transposed-convolution
  decoder, batch normalization and dropout; input the masked image (hidden pixels set to
  :data:`CNN_FILL`) plus the pixel mask as an extra channel, output the whole image.
- ``biharmonic`` (:class:`BiharmonicInpainter`): ``skimage.restoration.inpaint_biharmonic``,
  not learned.
- ``mean_colour`` (:class:`MeanColourInpainter`): every hidden pixel gets the mean colour of the
  image's visible pixels; what a model that learned nothing scores.

The Transformers' defaults are the ``tuned`` recipe of :mod:`helpers.recipes` (learned position
embeddings started from a 2-D sine-cosine table, no dropout); ``build_model(kind,
recipe="reference")`` builds the seed design (random start, dropout 0.1).

Models take named inputs: ``{"patches": (N, L, D), "mask": (N, L)}`` for the Transformers,
``{"image": (N, H, W, C + 1)}`` for the CNN (see :func:`model_inputs`); masks as inputs are
float, 1 = hidden.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from numbers import Real

import numpy as np

from ._checks import check_choice, check_images, check_mask, check_patch_size, check_positive_int
from .masking import n_masked
from .patches import grid_shape, patch_mask_to_pixels, patchify, unpatchify

MODEL_KINDS = ("vit", "mae", "cnn")
NON_LEARNED = ("biharmonic", "mean_colour")
VIT_FILLS = ("harmonic", "token")  # how a hidden patch enters the mask-token ViT: build_vit
PREDICTORS = (*MODEL_KINDS, *NON_LEARNED)
CNN_FILL = 0.5  # grey put in place of the hidden pixels of the CNN input
SELECTOR_NAME = "mae_select"  # the TokenSelector layer of an MAE, which knows n_keep


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def _check_dropout(dropout, name="dropout") -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


def _check_image_shape(image_shape) -> tuple[int, int, int]:
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
        raise ValueError(f"image_shape must be (H, W, C), e.g. (32, 32, 3); got {image_shape!r}")
    h, w, c = (check_positive_int(v, name) for v, name in zip(image_shape, ("image height", "image width", "channels")))
    return h, w, c


def _check_heads(width: int, num_heads: int, width_name: str, heads_name: str) -> None:
    if width % num_heads:
        allowed = [d for d in range(1, width + 1) if width % d == 0]
        raise ValueError(
            f"{width_name}={width} must be divisible by {heads_name}={num_heads}; "
            f"allowed {heads_name} for {width_name}={width}: {allowed}"
        )


def _check_sincos_width(width: int, name: str, pos_init: str) -> None:
    if pos_init == "sincos" and width % 4:
        raise ValueError(f"{name}={width} must be divisible by 4 for pos_init='sincos' (a sine and a cosine per axis)")


def _check_transformer(image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim, dropout, pos_init="random"):
    from .layers import POSITION_INITS

    image_shape = _check_image_shape(image_shape)
    check_choice(pos_init, "pos_init", POSITION_INITS)
    check_patch_size(patch_size, image_shape)
    for value, name in ((embed_dim, "embed_dim"), (depth, "depth"), (num_heads, "num_heads"), (mlp_dim, "mlp_dim")):
        check_positive_int(value, name)
    _check_heads(embed_dim, num_heads, "embed_dim", "num_heads")
    _check_sincos_width(embed_dim, "embed_dim", pos_init)
    _check_dropout(dropout)
    grid = grid_shape(image_shape[:2], patch_size)
    return grid, grid[0] * grid[1], patch_size * patch_size * image_shape[2]


@contextmanager
def _policy(mixed_precision: bool):
    """Build under the ``mixed_float16`` policy when asked, then restore the previous policy."""
    import keras

    if not mixed_precision:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _seed(seed):
    import keras

    if seed is not None:
        keras.utils.set_random_seed(check_positive_int(seed, "seed", minimum=0))


def _head(x, out_dim, name="head"):
    """Dense + sigmoid kept in float32, also under mixed precision."""
    from keras import layers

    return layers.Dense(out_dim, activation="sigmoid", dtype="float32", name=name)(x)


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------
def build_vit(
    image_shape=(32, 32, 3),
    patch_size: int = 4,
    *,
    embed_dim: int = 128,
    depth: int = 4,
    num_heads: int = 4,
    mlp_dim: int = 256,
    dropout: float = 0.0,
    pos_init: str = "sincos",
    fill: str = "harmonic",
    fill_iterations: int = 128,
    seed: int | None = 0,
    mixed_precision: bool = False,
):
    """Mask-token ViT: inputs ``patches`` (N, L, D) and ``mask`` (N, L), output patches (N, L, D).

    ``fill="token"``: a hidden patch enters as the learned mask token alone and the head (a
    sigmoid) predicts its pixels. ``fill="harmonic"``: a hidden patch enters as a smooth guess from
    the visible pixels (:class:`helpers.layers.HarmonicFill`, ``fill_iterations`` steps) plus the
    mask token, and the head (started at zero) predicts the correction to that guess; the model
    starts where harmonic inpainting is and learns what smoothness misses.
    """
    import keras
    from keras import layers

    from . import layers as mim

    grid, num_patches, patch_dim = _check_transformer(image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim,
                                                      dropout, pos_init)
    check_choice(fill, "fill", VIT_FILLS)
    check_positive_int(fill_iterations, "fill_iterations", minimum=0)
    _seed(seed)
    with _policy(mixed_precision):
        patches = keras.Input((num_patches, patch_dim), name="patches")
        mask = keras.Input((num_patches,), name="mask")
        if fill == "harmonic":
            guess = mim.HarmonicFill(image_shape, patch_size, fill_iterations, dtype="float32", name="harmonic_fill")(
                patches, mask)
            x = mim.PatchEmbedding(embed_dim, name="patch_embed")(guess)
            x = mim.MaskToken("add", name="mask_token")(x, mask)
        else:
            x = mim.PatchEmbedding(embed_dim, name="patch_embed")(patches, mask)
            x = mim.MaskToken(name="mask_token")(x, mask)
        x = mim.PositionEmbedding(pos_init, grid, name="pos_embed")(x)
        for i in range(depth):
            x = mim.TransformerBlock(num_heads, mlp_dim, dropout, name=f"block_{i}")(x)
        x = layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
        if fill == "harmonic":
            correction = layers.Dense(patch_dim, kernel_initializer="zeros", dtype="float32", name="head")(x)
            out = layers.ReLU(max_value=1.0, dtype="float32", name="clip")(layers.Add(dtype="float32", name="guess_plus")(
                [guess, correction]))
        else:
            out = _head(x, patch_dim)
        return keras.Model({"patches": patches, "mask": mask}, out, name="vit")


def build_mae(
    image_shape=(32, 32, 3),
    patch_size: int = 4,
    *,
    embed_dim: int = 128,
    depth: int = 4,
    num_heads: int = 4,
    mlp_dim: int = 256,
    decoder_dim: int = 128,
    decoder_depth: int = 2,
    decoder_num_heads: int = 4,
    decoder_mlp_dim: int = 256,
    dropout: float = 0.0,
    pos_init: str = "sincos",
    min_mask_ratio: float = 0.5,
    seed: int | None = 0,
    mixed_precision: bool = False,
):
    """MAE-style ViT, same inputs and output as :func:`build_vit`.

    The decoder is as wide as the encoder by default: a 64-wide decoder (MLP 128) stayed at the
    mean-colour guess after 4 epochs on the embedded sample (21.8 dB at 50 % random), the
    128-wide one with the tuned recipe's loss on every patch reached 23.5 dB, as the mask-token
    ViT (23.3 dB) in the same epochs.

    The encoder sees ``L - n_masked(min_mask_ratio, L)`` tokens; every mask given to the model must
    hide at least ``n_masked(min_mask_ratio, L)`` patches (see the module docstring).
    """
    import keras
    from keras import layers

    from . import layers as mim

    grid, num_patches, patch_dim = _check_transformer(image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim,
                                                      dropout, pos_init)
    for value, name in ((decoder_dim, "decoder_dim"), (decoder_depth, "decoder_depth"),
                        (decoder_num_heads, "decoder_num_heads"), (decoder_mlp_dim, "decoder_mlp_dim")):
        check_positive_int(value, name)
    _check_heads(decoder_dim, decoder_num_heads, "decoder_dim", "decoder_num_heads")
    _check_sincos_width(decoder_dim, "decoder_dim", pos_init)
    n_keep = num_patches - n_masked(min_mask_ratio, num_patches)
    _seed(seed)
    with _policy(mixed_precision):
        patches = keras.Input((num_patches, patch_dim), name="patches")
        mask = keras.Input((num_patches,), name="mask")
        # encoder: visible tokens only (plus zeroed, key-masked fillers when more are hidden)
        x = mim.PatchEmbedding(embed_dim, name="patch_embed")(patches, mask)
        x = mim.PositionEmbedding(pos_init, grid, name="pos_embed")(x)
        ids_keep, key_mask = mim.TokenSelector(n_keep, name=SELECTOR_NAME)(mask)
        x = mim.GatherTokens(name="keep_tokens")(x, ids_keep)
        for i in range(depth):
            x = mim.TransformerBlock(num_heads, mlp_dim, dropout, name=f"block_{i}")(x, key_mask)
        x = layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
        # decoder: all L positions, mask tokens where hidden
        x = layers.Dense(decoder_dim, name="decoder_embed")(x)
        x = mim.ScatterTokens(num_patches, name="restore_tokens")(x, ids_keep)
        x = mim.MaskToken(name="decoder_mask_token")(x, mask)
        x = mim.PositionEmbedding(pos_init, grid, name="decoder_pos_embed")(x)
        for i in range(decoder_depth):
            x = mim.TransformerBlock(decoder_num_heads, decoder_mlp_dim, dropout, name=f"decoder_block_{i}")(x)
        x = layers.LayerNormalization(epsilon=1e-6, name="decoder_norm")(x)
        out = _head(x, patch_dim)
        return keras.Model({"patches": patches, "mask": mask}, out, name="mae")


def build_cnn_autoencoder(
    image_shape=(32, 32, 3),
    *,
    filters=(32, 64, 128),
    dropout: float = 0.0,
    skips: bool = True,
    seed: int | None = 0,
    mixed_precision: bool = False,
):
    """Convolutional autoencoder: input ``image`` (N, H, W, C + 1), masked image plus mask channel.

    Each encoder stage is a 3x3 convolution with stride 2, batch normalization, ReLU and dropout;
    the decoder mirrors it with stride-2 transposed convolutions; a 3x3 convolution with a sigmoid
    gives the C output channels. ``skips=True`` concatenates each encoder stage's input to the
    decoder output of the same size (U-Net style), so the decoder sees the visible pixels at full
    resolution instead of only through the bottleneck.
    """
    import keras
    from keras import layers

    h, w, c = _check_image_shape(image_shape)
    if not isinstance(filters, (tuple, list)) or not filters:
        raise ValueError(f"filters must be a non-empty list of positive ints, got {filters!r}")
    filters = [check_positive_int(f, "filters entries") for f in filters]
    factor = 2 ** len(filters)
    if h % factor or w % factor:
        raise ValueError(
            f"image size {h}x{w} must be divisible by 2**len(filters) = {factor} (one halving per stage); "
            f"got filters={filters}, use at most {min(_twos(h), _twos(w))} stages"
        )
    dropout = _check_dropout(dropout)
    _seed(seed)
    with _policy(mixed_precision):
        inp = keras.Input((h, w, c + 1), name="image")
        x = inp
        stage_inputs = []
        for i, f in enumerate(filters):
            stage_inputs.append(x)
            x = layers.Conv2D(f, 3, strides=2, padding="same", use_bias=False, name=f"enc_conv_{i}")(x)
            # momentum 0.9 (Keras: 0.99): the moving statistics settle within a few hundred steps
            x = layers.BatchNormalization(momentum=0.9, name=f"enc_bn_{i}")(x)
            x = layers.Activation("relu", name=f"enc_relu_{i}")(x)
            x = layers.Dropout(dropout, name=f"enc_drop_{i}")(x)
        for i, f in enumerate(reversed(filters)):
            x = layers.Conv2DTranspose(f, 3, strides=2, padding="same", use_bias=False, name=f"dec_conv_{i}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"dec_bn_{i}")(x)
            x = layers.Activation("relu", name=f"dec_relu_{i}")(x)
            x = layers.Dropout(dropout, name=f"dec_drop_{i}")(x)
            if skips:
                x = layers.Concatenate(name=f"skip_{i}")([x, stage_inputs[-1 - i]])
        out = layers.Conv2D(c, 3, padding="same", activation="sigmoid", dtype="float32", name="head")(x)
        return keras.Model({"image": inp}, out, name="cnn")


def _twos(n: int) -> int:
    k = 0
    while n % 2 == 0:
        n //= 2
        k += 1
    return k


def build_model(name: str, recipe: str = "tuned", **kwargs):
    """Build a model by name: ``vit``, ``mae`` or ``cnn``, with the model settings of ``recipe``
    (:mod:`helpers.recipes`: ``tuned``, the builders' defaults, or ``reference``); ``kwargs`` go to
    its builder and override the recipe."""
    from .recipes import model_settings

    check_choice(name, "model name", MODEL_KINDS)
    kwargs = {**model_settings(recipe, name), **kwargs}
    if name == "cnn":
        kwargs.pop("patch_size", None)
    return {"vit": build_vit, "mae": build_mae, "cnn": build_cnn_autoencoder}[name](**kwargs)


# --------------------------------------------------------------------------------------------
# Biharmonic inpainting
# --------------------------------------------------------------------------------------------
class BiharmonicInpainter:
    """Non-learned baseline: ``skimage.restoration.inpaint_biharmonic`` on every image."""

    name = "biharmonic"

    def predict(self, images: np.ndarray, mask: np.ndarray, patch_size: int) -> np.ndarray:
        """Full images (N, H, W, C) float32 with the masked patches inpainted."""
        from skimage.restoration import inpaint_biharmonic

        pixels = patch_mask_to_pixels(mask, patch_size, images.shape[1:3])[..., 0]
        out = np.empty(images.shape, dtype=np.float32)
        for i, (img, m) in enumerate(zip(images, pixels)):
            out[i] = inpaint_biharmonic(img, m, channel_axis=-1) if m.any() else img
        return out

    def __repr__(self):
        return "BiharmonicInpainter()"


class MeanColourInpainter:
    """Non-learned floor: every hidden pixel gets the mean colour (per channel) of the image's
    visible pixels (of the whole image if nothing is visible); visible pixels are kept."""

    name = "mean_colour"

    def predict(self, images: np.ndarray, mask: np.ndarray, patch_size: int) -> np.ndarray:
        """Full images (N, H, W, C) float32 with the masked patches set to the visible mean colour."""
        hidden = patch_mask_to_pixels(mask, patch_size, images.shape[1:3])  # (N, H, W, 1)
        images = images.astype(np.float32, copy=False)
        weights = np.where(hidden.all(axis=(1, 2, 3), keepdims=True), True, ~hidden).astype(np.float32)
        mean = (images * weights).sum(axis=(1, 2), keepdims=True) / weights.sum(axis=(1, 2), keepdims=True)
        return np.where(hidden, mean, images).astype(np.float32)

    def __repr__(self):
        return "MeanColourInpainter()"


_NON_LEARNED_CLASSES = {"biharmonic": BiharmonicInpainter, "mean_colour": MeanColourInpainter}


# --------------------------------------------------------------------------------------------
# One interface for every predictor
# --------------------------------------------------------------------------------------------
def model_kind(predictor) -> str:
    """``vit``, ``mae``, ``cnn``, ``biharmonic`` or ``mean_colour``."""
    if isinstance(predictor, tuple(_NON_LEARNED_CLASSES.values())):
        return predictor.name
    name = getattr(predictor, "name", None)
    if name in MODEL_KINDS:
        return name
    input_names = set(getattr(predictor, "input_names", None) or _input_names(predictor))
    if "image" in input_names:
        return "cnn"
    if {"patches", "mask"} <= input_names:
        layer_names = {layer.name for layer in predictor.layers}
        return "mae" if SELECTOR_NAME in layer_names else "vit"
    raise ValueError(
        f"cannot tell the kind of predictor {predictor!r}: expected a model from build_vit/build_mae/"
        f"build_cnn_autoencoder (name one of {list(MODEL_KINDS)}), a BiharmonicInpainter or a MeanColourInpainter"
    )


def _input_names(model):
    try:
        return [t.name for t in model.inputs]
    except (AttributeError, TypeError):
        return []


def mae_min_masked(model) -> int:
    """Fewest patches a mask must hide for this MAE: ``L - n_keep``."""
    n_keep = model.get_layer(SELECTOR_NAME).n_keep
    return int(model.get_layer("pos_embed").embedding.shape[1]) - n_keep


def check_mask_for_model(model, mask: np.ndarray) -> None:
    """Raise if ``mask`` hides fewer patches than an MAE ``model`` was built for (no-op otherwise)."""
    if model_kind(model) != "mae":
        return
    need = mae_min_masked(model)
    hidden = mask.sum(axis=1)
    if hidden.size and hidden.min() < need:
        L = mask.shape[1]
        raise ValueError(
            f"this MAE was built for masks hiding at least {need} of {L} patches "
            f"(min_mask_ratio ~ {need / L:.2f}), but a mask hides only {int(hidden.min())}; "
            f"use a ratio >= {need / L:.2f} or build the MAE with a smaller min_mask_ratio"
        )


def model_inputs(kind: str, images: np.ndarray, mask: np.ndarray, patch_size: int) -> dict[str, np.ndarray]:
    """The input dict a model of ``kind`` takes for ``images`` (N, H, W, C) and ``mask`` (N, L) bool."""
    check_choice(kind, "model kind", MODEL_KINDS)
    if kind == "cnn":
        pixels = patch_mask_to_pixels(mask, patch_size, images.shape[1:3])
        masked = np.where(pixels, np.float32(CNN_FILL), images.astype(np.float32, copy=False))
        return {"image": np.concatenate([masked, pixels.astype(np.float32)], axis=-1)}
    return {"patches": patchify(images, patch_size).astype(np.float32, copy=False), "mask": mask.astype(np.float32)}


def _check_model_geometry(model, kind, images, patch_size):
    """The images and patch size must give the input shape the model was built for."""
    if kind == "cnn":
        want = tuple(model.inputs[0].shape[1:3])
        if tuple(images.shape[1:3]) != want or images.shape[3] + 1 != model.inputs[0].shape[3]:
            raise ValueError(f"this CNN takes images of shape {want + (model.inputs[0].shape[3] - 1,)}, got {images.shape[1:]}")
        return
    gh, gw = grid_shape(images.shape[1:3], patch_size)
    got = (gh * gw, patch_size * patch_size * images.shape[3])
    shapes = {t.name: tuple(t.shape[1:]) for t in model.inputs}
    want = shapes.get("patches")
    if want is not None and tuple(want) != got:
        raise ValueError(
            f"this {kind} model takes (L, D) = {want} patches, but images {images.shape[1:]} with "
            f"patch_size={patch_size} give {got}"
        )


def reconstruct(predictor, images: np.ndarray, mask: np.ndarray, patch_size: int, batch_size: int = 256) -> np.ndarray:
    """Full images (N, H, W, C) float32 predicted by ``predictor`` for ``images`` with ``mask`` hidden.

    ``images``: float in [0, 1]; ``mask``: bool (N, L) from :mod:`helpers.masking`. Keras models
    run in batches of ``batch_size`` without a progress bar.
    """
    check_images(images)
    check_patch_size(patch_size, images.shape[1:3])
    gh, gw = grid_shape(images.shape[1:3], patch_size)
    check_mask(mask, n_images=images.shape[0], n_patches=gh * gw)
    batch_size = check_positive_int(batch_size, "batch_size")
    kind = model_kind(predictor)
    if kind in NON_LEARNED:
        return predictor.predict(images, mask, patch_size)
    _check_model_geometry(predictor, kind, images, patch_size)
    check_mask_for_model(predictor, mask)
    out = np.empty(images.shape, dtype=np.float32)
    for start in range(0, images.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        pred = np.asarray(predictor.predict_on_batch(model_inputs(kind, images[sl], mask[sl], patch_size)), dtype=np.float32)
        out[sl] = pred if kind == "cnn" else unpatchify(pred, patch_size, images.shape[1:])
    return out


def load_predictor(path_or_name):
    """``"biharmonic"`` or ``"mean_colour"`` gives that non-learned predictor; a path loads a saved
    ``.keras`` model."""
    import keras

    from . import layers  # noqa: F401  (registers the custom layers)

    if isinstance(path_or_name, str) and path_or_name in NON_LEARNED:
        return _NON_LEARNED_CLASSES[path_or_name]()
    path = os.fspath(path_or_name)
    if not path.endswith(".keras"):
        raise ValueError(f"path_or_name must be one of {list(NON_LEARNED)} or a path to a .keras file, got {path_or_name!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no saved model at {path!r}")
    return keras.saving.load_model(path, compile=False)
