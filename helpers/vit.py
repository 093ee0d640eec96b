"""The mask-token ViT: images and a patch mask in, images out.

The image is cut into patches (N, L, p*p*C), each projected to a token. A hidden patch's content
is zeroed before the projection (the model never sees it) and its token is replaced by one
learnable mask token; learnable position embeddings (started from a 2-D sine-cosine table) are
added; pre-LN Transformer blocks and a LayerNorm encode the tokens; a Dense head with a sigmoid
predicts every patch's pixels, and the patches are put back into an image.

With ``fill="harmonic"`` ("ViT refining biharmonic") a hidden patch enters instead as the harmonic
fill of the visible pixels plus the mask token, and the head, started at zero, predicts the
correction to that fill: untrained, the model scores what the fill scores.

Gray images (C = 1) go through a learned 1x1 adapter to three channels and back, so the layers in
between are those of a colour model (:func:`helpers.models.gray_variant`).
"""

from __future__ import annotations

import keras
from keras import layers

from . import base
from . import layers as mim
from ._checks import check_choice, check_positive_int
from .patches import grid_shape
from .recipes import VIT_FILLS


def vit_encoder(
    images, mask, image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim, dropout,
    pos_init, fill, fill_iterations,
):  # fmt: skip
    """The mask-token ViT's encoder on Keras tensors: ``(tokens, guess)``, the encoded tokens
    (N, L, embed_dim) and the harmonic fill's patches (``fill="harmonic"``; else None), with
    three channels when the images have one (:func:`helpers.base.colour_patches`)."""
    grid = grid_shape(image_shape[:2], patch_size)
    patches = mim.Patchify(patch_size, dtype="float32", name="patchify")(images)
    guess = None
    if fill == "harmonic":  # a hidden patch starts as a smooth guess, plus the mask token
        guess = mim.HarmonicFill(
            image_shape, patch_size, fill_iterations, dtype="float32", name="harmonic_fill"
        )(patches, mask)
        guess = base.colour_patches(guess, image_shape, patch_size)  # gray: to 3 channels
        x = mim.PatchEmbedding(embed_dim, name="patch_embed")(guess)
        x = mim.MaskToken("add", name="mask_token")(x, mask)
    else:  # a hidden patch is the mask token alone
        patches = base.colour_patches(patches, image_shape, patch_size)  # gray: to 3 channels
        x = mim.PatchEmbedding(embed_dim, name="patch_embed")(patches, mask)
        x = mim.MaskToken(name="mask_token")(x, mask)
    x = mim.PositionEmbedding(pos_init, grid, name="pos_embed")(x)
    for i in range(depth):
        x = mim.TransformerBlock(num_heads, mlp_dim, dropout, name=f"block_{i}")(x)
    return layers.LayerNormalization(epsilon=1e-6, name="norm")(x), guess


@keras.saving.register_keras_serializable(package="helpers")
class MaskTokenViT(base.MaskedImageModel):
    """Mask-token ViT: ``{"images": (N, H, W, C), "mask": (N, L)} -> images (N, H, W, C)``.

    The defaults are the ``tuned`` recipe of :mod:`helpers.recipes` (no dropout, position
    embeddings started from the sine-cosine table, a hidden patch as the mask token alone);
    ``reference`` is dropout 0.1 and random position embeddings. Build with
    :func:`helpers.models.build_model` or :func:`helpers.models.build_vit` to seed the weights.

    Args:
        image_shape: (H, W, C) of the images; C = 1 for gray images.
        patch_size: the side of a square patch, a divisor of H and W.
        embed_dim: the width of the tokens.
        depth: the number of Transformer blocks.
        num_heads: attention heads per block, a divisor of ``embed_dim``.
        mlp_dim: the hidden width of each block's MLP.
        dropout: dropout rate in the blocks, in [0, 1).
        pos_init: ``"sincos"`` (the 2-D sine-cosine table; ``embed_dim`` divisible by 4) or
            ``"random"``: where the learned position embeddings start.
        fill: ``"token"``: a hidden patch enters as the mask token alone and the head (a
            sigmoid) predicts its pixels. ``"harmonic"``: it enters as the harmonic fill of the
            visible pixels (:class:`helpers.layers.HarmonicFill`) plus the mask token, and the
            head predicts the correction to that fill.
        fill_iterations: the harmonic fill's smoothing steps.
        mixed_precision: ``False``, ``"mixed_bfloat16"`` or ``"mixed_float16"`` (a GPU's).
    """

    @property
    def builder(self) -> str:
        """``vit``, or ``vit_biharmonic`` when its hidden patches start from the harmonic fill."""
        return "vit_biharmonic" if self.settings["fill"] == "harmonic" else "vit"

    def __init__(
        self,
        image_shape=(32, 32, 3),
        patch_size=4,
        embed_dim=128,
        depth=4,
        num_heads=4,
        mlp_dim=256,
        dropout=0.0,
        pos_init="sincos",
        fill="token",
        fill_iterations=128,
        mixed_precision=False,
        name=None,
        **kwargs,
    ):
        image_shape = base.check_transformer(
            image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim, dropout, pos_init
        )
        check_choice(fill, "fill", VIT_FILLS)
        check_positive_int(fill_iterations, "fill_iterations", minimum=0)
        dropout = float(dropout)
        name = name or ("vit_biharmonic" if fill == "harmonic" else "vit")
        settings = base.settings_of(locals())
        with base.policy(mixed_precision):
            images, mask = base.model_inputs(image_shape, patch_size)
            shape = base.colour_shape(image_shape)
            patch_dim = patch_size * patch_size * shape[2]
            x, guess = vit_encoder(
                images, mask, image_shape, patch_size, embed_dim, depth, num_heads, mlp_dim,
                dropout, pos_init, fill, fill_iterations,
            )  # fmt: skip
            out = base.head(x, patch_dim) if guess is None else base.guess_plus(x, guess, patch_dim)
            out = mim.Unpatchify(patch_size, shape, dtype="float32", name="unpatchify")(out)
            out = base.gray_out(out, image_shape)
            super().__init__({"images": images, "mask": mask}, out, settings, name=name, **kwargs)


def build_vit(
    image_shape=(32, 32, 3), patch_size: int = 4, *, seed: int | None = 0, **settings
) -> MaskTokenViT:
    """A :class:`MaskTokenViT` (``settings``: its other arguments, by name) whose initial weights
    are those of ``seed`` (None: unseeded)."""
    return base.build(MaskTokenViT, seed, image_shape, patch_size, **settings)
