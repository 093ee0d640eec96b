"""The MAE-style ViT (He et al., 2022): images and a patch mask in, images out.

The encoder runs on a fixed number ``n_keep = L - n_masked(min_mask_ratio, L)`` of tokens (JAX
needs static shapes), chosen visible-first by :class:`~helpers.layers.TokenSelector`. When an image
hides more patches than ``L - n_keep`` (e.g. 70% on a model built for 50%), the extra kept tokens
are masked patches: their content is zeroed before the projection and they are excluded as
attention keys, so the visible tokens are encoded exactly as if only they were there. A light
decoder (one block, half the encoder's width, as in MAE's paper, so the model trains faster than
the mask-token ViT at high ratios: ``python -m helpers bench speed``) gets the encoded tokens back
in place, a decoder mask token at every masked position and its own position embeddings, and
predicts every patch; with ``fill="harmonic"`` (never a default) each position also gets its patch
of a smooth guess from the visible pixels and the head predicts the correction to that guess. A
mask hiding *fewer* patches than ``L - n_keep`` cannot be handled (a visible patch would be
dropped): :func:`helpers.models.reconstruct` and the training data raise an error for it
(``model.min_masked``). Build with a larger ``min_mask_ratio`` for a faster model at high ratios.
"""

from __future__ import annotations

import keras
from keras import layers

from . import base
from . import layers as mim
from ._checks import check_choice, check_positive_int, check_ratio
from .masking import n_masked
from .patches import grid_shape
from .recipes import VIT_FILLS


def _check_decoder(decoder_dim, decoder_depth, decoder_num_heads, decoder_mlp_dim, pos_init):
    sizes = (decoder_dim, decoder_depth, decoder_num_heads, decoder_mlp_dim)
    names = ("decoder_dim", "decoder_depth", "decoder_num_heads", "decoder_mlp_dim")
    for value, name in zip(sizes, names):
        check_positive_int(value, name)
    base.check_heads(decoder_dim, decoder_num_heads, "decoder_dim", "decoder_num_heads")
    base.check_sincos_width(decoder_dim, "decoder_dim", pos_init)


def _mae_guess(images, patches, mask, adapter, patch_size, fill_iterations):
    """The MAE's harmonic fill: of the colour ``patches``, or with a gray ``adapter`` of the gray
    ``images``, then through that adapter (as :func:`helpers.base.colour_patches`: no gradient
    has to flow through the fill's loop, and the adapter learns from the guess too)."""
    image_shape = tuple(images.shape[1:])
    fill = mim.HarmonicFill(
        image_shape, patch_size, fill_iterations, dtype="float32", name="harmonic_fill"
    )
    if adapter is None:
        return fill(patches, mask)
    gray = mim.Patchify(patch_size, dtype="float32", name="gray_patches")(images)
    return base.colour_patches(fill(gray, mask), image_shape, patch_size, adapter)


@keras.saving.register_keras_serializable(package="helpers")
class MaeViT(base.MaskedImageModel):
    """MAE-style ViT: ``{"images": (N, H, W, C), "mask": (N, L)} -> images (N, H, W, C)``.

    The defaults are the ``tuned`` recipe of :mod:`helpers.recipes` (no dropout, position
    embeddings started from the sine-cosine table, a hidden patch as the decoder's mask token);
    :func:`helpers.models.build_model` or :func:`build_mae` seed the weights. Every mask given to
    the model must hide at least ``model.min_masked = n_masked(min_mask_ratio, L)`` patches.

    Args:
        image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim, dropout, pos_init,
            fill_iterations, mixed_precision: as :class:`helpers.vit.MaskTokenViT`'s.
        decoder_dim, decoder_depth, decoder_num_heads, decoder_mlp_dim: the decoder's width,
            blocks, heads (a divisor of ``decoder_dim``) and MLP width.
        min_mask_ratio: the fewest patches (a ratio in (0, 1)) a mask hides; the encoder sees
            ``L - n_masked(min_mask_ratio, L)`` tokens.
        fill: ``"token"``: the decoder gets the mask token at every hidden position and the head
            (a sigmoid) predicts the pixels. ``"harmonic"``: every position of the decoder also
            gets the patch of the harmonic fill of the visible pixels, and the head (started at
            zero) predicts the correction to that fill.
    """

    builder = "mae"

    def __init__(
        self,
        image_shape=(32, 32, 3),
        patch_size=4,
        embed_dim=128,
        depth=4,
        num_heads=4,
        mlp_dim=256,
        decoder_dim=64,
        decoder_depth=1,
        decoder_num_heads=4,
        decoder_mlp_dim=128,
        dropout=0.0,
        pos_init="sincos",
        min_mask_ratio=0.5,
        mixed_precision=False,
        fill="token",
        fill_iterations=128,
        name="mae",
        **kwargs,
    ):
        image_shape = base.check_transformer(
            image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim, dropout, pos_init
        )
        _check_decoder(decoder_dim, decoder_depth, decoder_num_heads, decoder_mlp_dim, pos_init)
        min_mask_ratio = check_ratio(min_mask_ratio, "min_mask_ratio")
        check_choice(fill, "fill", VIT_FILLS)
        check_positive_int(fill_iterations, "fill_iterations", minimum=0)
        dropout = float(dropout)
        settings = base.settings_of(locals())
        grid = grid_shape(image_shape[:2], patch_size)
        num_patches = grid[0] * grid[1]
        n_keep = num_patches - n_masked(min_mask_ratio, num_patches)
        with base.policy(mixed_precision):
            images, mask = base.model_inputs(image_shape, patch_size)
            adapter = base.gray_adapter() if image_shape[2] == 1 else None
            rgb, shape = base.colour_in(images, image_shape, adapter)
            patches = mim.Patchify(patch_size, dtype="float32", name="patchify")(rgb)
            # encoder: visible tokens only (plus zeroed, key-masked fillers when more are hidden)
            x = mim.PatchEmbedding(embed_dim, name="patch_embed")(patches, mask)
            x = mim.PositionEmbedding(pos_init, grid, name="pos_embed")(x)
            ids_keep, key_mask = mim.TokenSelector(n_keep, name="select_tokens")(mask)
            x = mim.GatherTokens(name="keep_tokens")(x, ids_keep)
            for i in range(depth):
                x = mim.TransformerBlock(num_heads, mlp_dim, dropout, name=f"block_{i}")(
                    x, key_mask
                )
            x = layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
            # decoder: all L positions, mask tokens where hidden
            x = layers.Dense(decoder_dim, name="decoder_embed")(x)
            x = mim.ScatterTokens(num_patches, name="restore_tokens")(x, ids_keep)
            x = mim.MaskToken(name="decoder_mask_token")(x, mask)
            guess = None
            if fill == "harmonic":  # every position also gets the fill's patch (a guess if hidden)
                guess = _mae_guess(images, patches, mask, adapter, patch_size, fill_iterations)
                fill_tokens = mim.PatchEmbedding(decoder_dim, name="decoder_fill_embed")(guess)
                x = layers.Add(name="decoder_plus_fill")([x, fill_tokens])
            x = mim.PositionEmbedding(pos_init, grid, name="decoder_pos_embed")(x)
            for i in range(decoder_depth):
                x = mim.TransformerBlock(
                    decoder_num_heads, decoder_mlp_dim, dropout, name=f"decoder_block_{i}"
                )(x)
            x = layers.LayerNormalization(epsilon=1e-6, name="decoder_norm")(x)
            patch_dim = patches.shape[-1]
            out = base.head(x, patch_dim) if guess is None else base.guess_plus(x, guess, patch_dim)
            out = mim.Unpatchify(patch_size, shape, dtype="float32", name="unpatchify")(out)
            out = base.gray_out(out, image_shape)
            super().__init__({"images": images, "mask": mask}, out, settings, name=name, **kwargs)
        self.min_masked = num_patches - n_keep

    def feature_model(self) -> keras.Model:
        """The encoder's layers over all L tokens (none is dropped: nothing is hidden), averaged;
        the same inputs as the model, the mask unused."""
        images, mask = base.model_inputs(self.image_shape, self.patch_size)
        rgb = self.get_layer("gray_to_rgb")(images) if self.image_shape[2] == 1 else images
        x = self.get_layer("pos_embed")(
            self.get_layer("patch_embed")(self.get_layer("patchify")(rgb))
        )
        for i in range(self.settings["depth"]):
            x = self.get_layer(f"block_{i}")(x)
        x = layers.GlobalAveragePooling1D(dtype="float32", name="features")(
            self.get_layer("norm")(x)
        )
        return keras.Model({"images": images, "mask": mask}, x)


def build_mae(
    image_shape=(32, 32, 3), patch_size: int = 4, *, seed: int | None = 0, **settings
) -> MaeViT:
    """A :class:`MaeViT` (``settings``: its other arguments, by name) whose initial weights are
    those of ``seed`` (None: unseeded)."""
    return base.build(MaeViT, seed, image_shape, patch_size, **settings)
