"""The MAE-style ViT (He et al., 2022): images and a patch mask in, images out."""

from __future__ import annotations

import keras
from keras import layers

from . import base
from . import layers as mim
from ._checks import check_ratio
from .base import harmonic_guess
from .masking import n_masked
from .patches import grid_shape


@keras.saving.register_keras_serializable(package="helpers")
class MaeViT(base.MaskedImageModel):
    """MAE-style ViT: ``{"images": (N, H, W, C), "mask": (N, L)} -> images (N, H, W, C)``.

    The encoder runs on a fixed number ``L - n_masked(min_mask_ratio, L)`` of tokens (static
    shapes), visible first; when more patches are hidden, the extra kept tokens are zeroed and
    excluded as attention keys. A light decoder predicts every patch. The defaults are the
    ``tuned`` recipe of :mod:`helpers.recipes`.

    Args:
        decoder_dim, decoder_depth, decoder_num_heads, decoder_mlp_dim: the decoder's width,
            blocks, heads (a divisor of ``decoder_dim``) and MLP width; the encoder's settings
            as :class:`helpers.vit.MaskTokenViT`'s.
        min_mask_ratio: the fewest patches (a ratio in (0, 1)) a mask hides.
        fill: ``"token"``: the decoder gets the mask token at every hidden position and a sigmoid
            head predicts the pixels. ``"harmonic"``: every decoder position also gets the patch
            of the harmonic fill, and the head (started at zero) predicts its correction.
    """

    builder = "mae"

    def __init__(
        self, image_shape=(32, 32, 3), patch_size=4, embed_dim=128, depth=4, num_heads=4,
        mlp_dim=256, decoder_dim=64, decoder_depth=1, decoder_num_heads=4, decoder_mlp_dim=128,
        dropout=0.0, pos_init="sincos", min_mask_ratio=0.5, mixed_precision=False, fill="token",
        fill_iterations=128, name="mae", **kwargs,
    ):  # fmt: skip
        image_shape, dropout = base.check_vit(
            image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim, dropout, pos_init,
            fill, fill_iterations,
        )  # fmt: skip
        base.check_blocks(  # not through locals: they become the settings
            (decoder_dim, decoder_depth, decoder_num_heads, decoder_mlp_dim),
            ("decoder_dim", "decoder_depth", "decoder_num_heads", "decoder_mlp_dim"),
            pos_init,
        )
        min_mask_ratio = check_ratio(min_mask_ratio, "min_mask_ratio")
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
                block = mim.TransformerBlock(num_heads, mlp_dim, dropout, name=f"block_{i}")
                x = block(x, key_mask)
            x = layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
            # decoder: all L positions, mask tokens where hidden
            x = layers.Dense(decoder_dim, name="decoder_embed")(x)
            x = mim.ScatterTokens(num_patches, name="restore_tokens")(x, ids_keep)
            x = mim.MaskToken(name="decoder_mask_token")(x, mask)
            guess = None
            if fill == "harmonic":  # every position also gets the fill's patch (a guess if hidden)
                guess = harmonic_guess(images, patches, mask, adapter, patch_size, fill_iterations)
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
        """The encoder over all L tokens, averaged; the model's inputs, the mask unused."""
        images, mask = base.model_inputs(self.image_shape, self.patch_size)
        x = self.get_layer("gray_to_rgb")(images) if self.image_shape[2] == 1 else images
        blocks = [f"block_{i}" for i in range(self.settings["depth"])]
        for name in ("patchify", "patch_embed", "pos_embed", *blocks, "norm"):
            x = self.get_layer(name)(x)
        x = layers.GlobalAveragePooling1D(dtype="float32", name="features")(x)
        return keras.Model({"images": images, "mask": mask}, x)


def build_mae(
    image_shape=(32, 32, 3), patch_size: int = 4, *, seed: int | None = 0, **settings
) -> MaeViT:
    """A :class:`MaeViT` (``settings``: its other arguments) seeded by ``seed`` (None: unseeded)."""
    return base.build(MaeViT, seed, image_shape, patch_size, **settings)
