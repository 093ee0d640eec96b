"""Custom Keras layers of the models, in ``keras.ops`` (any backend), registered so saved models
load. A patch mask is a float tensor ``(N, L)``: 1 for a hidden (masked) patch, 0 for a visible one.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
from keras import layers, ops

from ._checks import SettingError, check_choice
from .patches import patchify_ops, unpatchify_ops

PACKAGE = "helpers"


def _hidden(patch_mask):
    """Boolean (N, L, 1) view of a float patch mask, for ``ops.where`` over tokens."""
    return ops.expand_dims(ops.greater(patch_mask, 0.5), -1)


class _Layer(layers.Layer):
    """A layer whose config holds its ``__init__`` arguments, kept as attributes of their names."""

    def get_config(self):
        names = list(inspect.signature(type(self).__init__).parameters)[1:-1]  # no self, kwargs
        return {**super().get_config(), **{k: getattr(self, k) for k in names}}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Patchify(_Layer):
    """Images (N, H, W, C) -> patches (N, L, p*p*C), as :func:`helpers.patches.patchify`."""

    def __init__(self, patch_size: int, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)

    def call(self, images):
        return patchify_ops(images, self.patch_size)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Unpatchify(_Layer):
    """Patches (N, L, p*p*C) -> images (N, H, W, C) of ``image_shape`` (H, W, C)."""

    def __init__(self, patch_size: int, image_shape, **kwargs):
        super().__init__(**kwargs)
        self.patch_size, self.image_shape = int(patch_size), tuple(int(v) for v in image_shape)

    def call(self, patches):
        return unpatchify_ops(patches, self.patch_size, self.image_shape)


def pixel_mask(patch_mask, patch_size: int, image_shape):
    """Float patch mask (N, L) -> float pixel mask (N, H, W, 1), 1 = hidden pixel."""
    gh, gw = image_shape[0] // patch_size, image_shape[1] // patch_size
    grid = ops.reshape(ops.cast(patch_mask, "float32"), (-1, gh, gw, 1))
    return ops.repeat(ops.repeat(grid, patch_size, axis=1), patch_size, axis=2)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedImage(_Layer):
    """The CNN's input from images (N, H, W, C) and a patch mask (N, L): hidden pixels set to
    ``fill``, then the pixel mask as channel C + 1 -> (N, H, W, C + 1)."""

    def __init__(self, patch_size: int, fill: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.patch_size, self.fill = int(patch_size), float(fill)

    def call(self, images, patch_mask):
        pixels = ops.cast(pixel_mask(patch_mask, self.patch_size, images.shape[1:]), images.dtype)
        masked = ops.where(pixels > 0.5, ops.full_like(images, self.fill), images)
        return ops.concatenate([masked, pixels], axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchEmbedding(_Layer):
    """Project flattened patches (N, L, D) to tokens (N, L, embed_dim); the content of masked
    patches is zeroed before the projection, so it never reaches the model (not even a NaN)."""

    def __init__(self, embed_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = int(embed_dim)
        self.projection = layers.Dense(self.embed_dim, dtype=self.dtype_policy, name="projection")

    def build(self, input_shape):
        self.projection.build(input_shape)

    def call(self, patches, patch_mask=None):
        if patch_mask is not None:
            patches = ops.where(_hidden(patch_mask), ops.zeros_like(patches), patches)
        return self.projection(patches)


MASK_TOKEN_MODES = ("replace", "add")


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskToken(_Layer):
    """One learnable vector put in place of the tokens of masked patches (``mode="replace"``) or
    added to them (``mode="add"``: their content is a guess, see :class:`HarmonicFill`)."""

    def __init__(self, mode: str = "replace", **kwargs):
        super().__init__(**kwargs)
        if mode not in MASK_TOKEN_MODES:
            raise SettingError("mode", mode, f"must be one of {list(MASK_TOKEN_MODES)}")
        self.mode = mode

    def build(self, input_shape):
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer=init, name="token")

    def call(self, tokens, patch_mask):
        token = ops.broadcast_to(ops.cast(self.token, tokens.dtype), ops.shape(tokens))
        if self.mode == "add":
            token = tokens + token
        return ops.where(_hidden(patch_mask), token, tokens)


@keras.saving.register_keras_serializable(package=PACKAGE)
class HarmonicFill(_Layer):
    """Fill the hidden patches with a smooth guess from the visible pixels (no weights): from the
    mean visible colour, ``iterations`` Jacobi steps of Laplace's equation on the hidden pixels.

    Call ``(patches (N, L, p*p*C), patch_mask (N, L))`` for patches of images of ``image_shape``;
    returns patches (N, L, p*p*C), the visible ones unchanged.
    """

    def __init__(self, image_shape, patch_size: int, iterations: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.patch_size, self.iterations = int(patch_size), int(iterations)
        if self.iterations < 0:
            raise SettingError("iterations", iterations, "must be >= 0")

    def call(self, patches, patch_mask):
        hidden = _hidden(patch_mask)
        known = ops.where(hidden, ops.zeros_like(patches), patches)
        image = unpatchify_ops(known, self.patch_size, self.image_shape)
        gap = ops.cast(ops.broadcast_to(hidden, ops.shape(patches)), patches.dtype)
        gap = unpatchify_ops(gap, self.patch_size, self.image_shape)
        seen = ops.sum(1.0 - gap, axis=(1, 2), keepdims=True)
        mean = ops.sum(image, axis=(1, 2), keepdims=True) / ops.maximum(seen, 1.0)

        def step(_, y):
            y = ops.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric")
            total = y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:]
            return image + gap * (total * 0.25)

        filled = ops.fori_loop(0, self.iterations, step, image + gap * mean)
        return patchify_ops(filled, self.patch_size)


def sincos_position_embedding(grid, width: int):
    """2-D sine-cosine position embedding (as in MAE) of the patch ``grid``, (gh * gw, width),
    row-major: half the channels encode the row, half the column."""
    gh, gw = (int(v) for v in grid)
    if width % 4:
        problem = "a sine-cosine position embedding needs a token width divisible by 4"
        raise SettingError("width", width, problem)
    omega = 1.0 / 10000 ** (np.arange(width // 4, dtype=np.float64) / (width / 4.0))

    def encode(pos):  # (L,) -> (L, width / 2)
        angles = np.outer(pos, omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    return np.concatenate([encode(rows.ravel()), encode(cols.ravel())], axis=1).astype("float32")


POSITION_INITS = ("random", "sincos")


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionEmbedding(_Layer):
    """Add a learnable position embedding (1, L, E) to tokens (N, L, E), started from a truncated
    normal (``init="random"``) or :func:`sincos_position_embedding` of the patch ``grid``."""

    def __init__(self, init: str = "random", grid=None, **kwargs):
        super().__init__(**kwargs)
        self.init = check_choice(init, "init", POSITION_INITS)
        if init == "sincos" and grid is None:
            raise SettingError("grid", grid, "init='sincos' needs the patch grid (rows, columns)")
        self.grid = None if grid is None else tuple(int(v) for v in grid)

    def build(self, input_shape):
        length, width = int(input_shape[-2]), int(input_shape[-1])
        if self.init == "sincos":
            if (n := self.grid[0] * self.grid[1]) != length:
                raise SettingError("grid", self.grid, f"has {n} patches, the tokens {length}")
            table = sincos_position_embedding(self.grid, width)[None]
            initializer = keras.initializers.Constant(table)
        else:
            initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        shape = (1, length, width)
        self.embedding = self.add_weight(shape=shape, initializer=initializer, name="embedding")

    def call(self, tokens):
        return tokens + ops.cast(self.embedding, tokens.dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerBlock(_Layer):
    """Pre-LayerNorm Transformer block (as in ViT/MAE).

    ``x = x + Dropout(MHA(LN(x)))``; ``x = x + Dropout(Dense(Dropout(GELU(Dense(LN(x))))))``.
    ``key_mask`` (N, S), 1 = may be attended to, keeps the other tokens out of every attention.
    """

    def __init__(self, num_heads: int, mlp_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.mlp_dim, self.dropout = int(num_heads), int(mlp_dim), float(dropout)
        policy = self.dtype_policy
        self.norm1 = layers.LayerNormalization(epsilon=1e-6, dtype=policy, name="norm1")
        self.norm2 = layers.LayerNormalization(epsilon=1e-6, dtype=policy, name="norm2")
        self.fc1 = layers.Dense(self.mlp_dim, activation="gelu", dtype=policy, name="fc1")
        self.drop = layers.Dropout(self.dropout, dtype=policy)
        self.attention = self.fc2 = None  # need the width: made in build

    def build(self, input_shape):
        width = int(input_shape[-1])  # divisible by num_heads: checked by the builders
        self.attention = layers.MultiHeadAttention(
            self.num_heads, width // self.num_heads, dtype=self.dtype_policy, name="attention"
        )
        self.fc2 = layers.Dense(width, dtype=self.dtype_policy, name="fc2")
        self.norm1.build(input_shape)
        self.norm2.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.fc1.build(input_shape)
        self.fc2.build((*input_shape[:-1], self.mlp_dim))

    def call(self, x, key_mask=None, training=None):
        attention_mask = None
        if key_mask is not None:  # (N, S) -> (N, T, S)
            keys = ops.expand_dims(ops.greater(key_mask, 0.5), 1)
            attention_mask = ops.broadcast_to(
                keys, (ops.shape(x)[0], ops.shape(x)[1], ops.shape(key_mask)[1])
            )
        h = self.norm1(x)
        h = self.attention(h, h, attention_mask=attention_mask, training=training)
        x = x + self.drop(h, training=training)
        h = self.fc1(self.norm2(x))
        h = self.fc2(self.drop(h, training=training))
        return x + self.drop(h, training=training)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TokenSelector(_Layer):
    """Choose the ``n_keep`` tokens the MAE encoder processes from a patch mask (N, L), visible
    first, in patch order (distinct sort keys: the same order on every backend). Returns
    ``ids_keep`` (N, n_keep) int and ``kept_visible`` (N, n_keep) float, 1 for a visible patch."""

    def __init__(self, n_keep: int, **kwargs):
        super().__init__(**kwargs)
        self.n_keep = int(n_keep)

    def call(self, patch_mask):
        length = patch_mask.shape[1]
        positions = ops.cast(ops.arange(length), "float32")
        keys = ops.cast(ops.greater(patch_mask, 0.5), "float32") * float(length) + positions
        ids_keep = ops.argsort(keys, axis=1)[:, : self.n_keep]
        kept_keys = ops.sort(keys, axis=1)[:, : self.n_keep]
        return ids_keep, ops.cast(ops.less(kept_keys, float(length)), "float32")

    def compute_output_spec(self, patch_mask):
        shape = (patch_mask.shape[0], self.n_keep)
        return keras.KerasTensor(shape, dtype="int32"), keras.KerasTensor(shape, dtype="float32")


@keras.saving.register_keras_serializable(package=PACKAGE)
class GatherTokens(layers.Layer):
    """Tokens (N, L, E) at positions ``ids`` (N, K) -> (N, K, E)."""

    def call(self, tokens, ids):
        # a batched matmul of one-hot rows: XLA compiles it well on a CPU, unlike take_along_axis
        one_hot = ops.one_hot(ids, tokens.shape[1], dtype=tokens.dtype)
        return ops.einsum("nkl,nle->nke", one_hot, tokens)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScatterTokens(_Layer):
    """Put kept tokens (N, K, E) back at their positions ``ids`` (N, K) of a length-L sequence;
    the other positions are 0 (a :class:`MaskToken` fills the masked ones afterwards)."""

    def __init__(self, num_patches: int, **kwargs):
        super().__init__(**kwargs)
        self.num_patches = int(num_patches)

    def call(self, tokens, ids):
        one_hot = ops.one_hot(ids, self.num_patches, dtype=tokens.dtype)
        return ops.einsum("nkl,nke->nle", one_hot, tokens)


def _bce_with_logits(logits, target: int):
    """Mean binary cross-entropy of ``logits`` against the label ``target`` (0 or 1)."""
    return ops.mean(ops.softplus(-logits) if target else ops.softplus(logits))


def _adversarial_loss(discriminate, real, fake, loss_weight: float):
    """The loss of one adversarial game, for a single backward pass that updates both players.

    - discriminator: ``BCE(D(real), 1) + BCE(D(fake), 0)``, with ``fake`` detached, so only the
      discriminator's weights learn from it;
    - generator (the autoencoder): ``loss_weight * BCE(D(fake), 1)`` (the non-saturating loss of
      Goodfellow et al.), with the discriminator's weights detached, so only the autoencoder
      learns from it.

    Returned as ``loss - stop_gradient(loss)``: its value is 0, its gradient is both players'.
    The value the training reports stays the reconstruction loss, comparable to ``val_loss`` and
    to the other models; :func:`helpers.models.adversary_scores` tells how the game stands.
    """
    d_loss = _bce_with_logits(discriminate(real, False), 1) + _bce_with_logits(
        discriminate(ops.stop_gradient(fake), False), 0
    )
    g_loss = _bce_with_logits(discriminate(fake, True), 1)
    loss = d_loss + loss_weight * g_loss
    return loss - ops.stop_gradient(loss)


class _Adversary(_Layer):
    """Identity at inference; in training adds the loss of :func:`_adversarial_loss` with a
    discriminator whose weights are this layer's (so the autoencoder's term can detach them)."""

    def __init__(self, loss_weight: float, hidden: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.loss_weight, self.hidden = float(loss_weight), int(hidden)
        self.kernels, self.biases = [], []

    def _dense_weights(self, shapes):
        for i, (n_in, n_out) in enumerate(shapes):
            self.kernels.append(
                self.add_weight(shape=n_in + (n_out,), initializer="glorot_uniform", name=f"k{i}")
            )
            self.biases.append(self.add_weight(shape=(n_out,), initializer="zeros", name=f"b{i}"))

    def discriminate(self, x, frozen: bool):
        """Logits of "real" for each sample or position of ``x``; ``frozen``: weights detached."""
        detach = ops.stop_gradient if frozen else (lambda v: v)
        for i, (k, b) in enumerate(zip(self.kernels, self.biases)):
            last = i == len(self.kernels) - 1
            x = self._linear(x, ops.cast(detach(k), x.dtype), last) + ops.cast(detach(b), x.dtype)
            if not last:
                x = ops.leaky_relu(x, 0.2)
        return x


@keras.saving.register_keras_serializable(package=PACKAGE)
class LatentAdversary(_Adversary):
    """The adversarial autoencoder's regulariser (Makhzani et al., 2015): a discriminator tells
    each code vector of (N, ..., D) from samples of the prior N(0, I)."""

    def __init__(self, loss_weight: float, hidden: int = 64, seed=None, **kwargs):
        super().__init__(loss_weight, hidden, **kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        d, h = int(input_shape[-1]), self.hidden
        self._dense_weights([((d,), h), ((h,), h), ((h,), 1)])

    def _linear(self, x, kernel, last):  # codes (M, D) -> logits (M, 1)
        return ops.matmul(x, kernel)

    def call(self, codes, training=None):
        if training:
            flat = ops.cast(ops.reshape(codes, (-1, codes.shape[-1])), "float32")
            prior = keras.random.normal(ops.shape(flat), seed=self.seed_generator)
            self.add_loss(_adversarial_loss(self.discriminate, prior, flat, self.loss_weight))
        return codes


@keras.saving.register_keras_serializable(package=PACKAGE)
class ImageAdversary(_Adversary):
    """The image discriminator of Context Encoders (Pathak et al., 2016): real images against the
    output composited with the visible pixels. Call on ``(output, images, patch_mask)``."""

    def __init__(self, loss_weight: float, patch_size: int, hidden: int = 32, **kwargs):
        super().__init__(loss_weight, hidden, **kwargs)
        self.patch_size = int(patch_size)

    def build(self, output_shape, images_shape=None, patch_mask_shape=None):
        c, h = int(output_shape[-1]), self.hidden
        self._dense_weights([((3, 3, c), h), ((3, 3, h), 2 * h), ((3, 3, 2 * h), 2 * h)])
        self._dense_weights([((1, 1, 2 * h), 1)])

    def _linear(self, x, kernel, last):  # images (N, H, W, C) -> logits (N, h, w, 1)
        return ops.conv(x, kernel, strides=1 if last else 2, padding="same")

    def call(self, output, images, patch_mask, training=None):
        if training:
            real = ops.cast(images, "float32")
            hidden = ops.cast(pixel_mask(patch_mask, self.patch_size, real.shape[1:]), "float32")
            fake = hidden * ops.cast(output, "float32") + (1.0 - hidden) * real
            self.add_loss(_adversarial_loss(self.discriminate, real, fake, self.loss_weight))
        return output
