"""Benchmarks (not tests): speed measured in one run and reported as ratios.

``python -m helpers bench speed`` prints:
- mask generation for 50,000 images per strategy (the random/rows/columns draws are vectorised);
- the metrics on 10,000 images, and batched SSIM against a per-image ``skimage`` loop;
- training images per second of the mask-token ViT and the MAE-style ViT (with the mask token
  alone and with the harmonic fill) at 50% and 75%, against a plain-Keras ViT of the same
  configuration, with and without drawing masks per batch, and (on TensorFlow) with and without
  XLA;
- the autoencoders (CNN, adversarial autoencoder, ViT + CNN decoder) against the mask-token ViT,
  at 50 %;
- the pretrained ViT (:mod:`helpers.pretrained`) with a ViT-B/16-sized backbone (random weights:
  the speed does not depend on them, and nothing is downloaded), head only and fully fine-tuned;
- the input pipeline alone (:class:`helpers.training.MaskingDataset`, batches of 256 as in the
  ``full`` profile): batches and images per second, as a ratio to the ViT's training speed (an
  accelerator waits for its data when that ratio is near 1 or below).

:func:`bench_speed` runs the six parts (``quick=True``: much smaller sizes, for tests) and hands
each part's rows to a callback as soon as they are measured; :func:`format_rows` prints them.
"""

from __future__ import annotations

import inspect
import os
import time
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
from keras import layers

from .. import masking, metrics
from .._checks import check_positive_int
from ..models import MaeViT, build_model
from ..patches import patch_mask_to_pixels
from ..pretrained import build_pretrained_vit
from ..training import MaskingDataset, compile_model


def _timed(fn, repeat: int = 3) -> float:
    """Best of ``repeat`` wall times in seconds."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_masks(n_images: int = 50_000, grid=(8, 8), ratio: float = 0.5) -> list[dict]:
    """Seconds to draw masks for ``n_images`` images with each data-free strategy."""
    rows = []
    for strategy in ("random", "rows", "columns"):
        sec = _timed(
            lambda s=strategy: masking.make_mask(s, ratio, n_images=n_images, grid=grid, seed=0)
        )
        rows.append({"what": f"{strategy} masks, {n_images} images", "seconds": sec})
    return rows


def bench_metrics(n_images: int = 10_000, loop_images: int = 500, seed: int = 0) -> list[dict]:
    """Seconds for :func:`metrics.evaluate` on ``n_images`` images, and batched SSIM vs a skimage
    loop.

    The skimage loop runs on ``loop_images`` images and is scaled to ``n_images`` (it is linear).
    """
    from skimage.metrics import structural_similarity  # lazy: slow to import

    rng = np.random.default_rng(seed)
    a = rng.random((n_images, 32, 32, 3), dtype=np.float32)
    b = rng.random((n_images, 32, 32, 3), dtype=np.float32)
    m = masking.make_mask("random", 0.5, n_images=n_images, grid=(8, 8), seed=seed)
    t_eval = _timed(lambda: metrics.evaluate(a, b, m, 4), repeat=1)
    t_ssim = _timed(lambda: metrics.ssim(a, b), repeat=1)
    k = min(loop_images, n_images)
    t_loop = _timed(
        lambda: [
            structural_similarity(x, y, data_range=1, channel_axis=-1) for x, y in zip(a[:k], b[:k])
        ],
        repeat=1,
    ) * (n_images / k)
    return [
        {"what": f"metrics.evaluate, {n_images} images", "seconds": t_eval},
        {"what": f"batched SSIM, {n_images} images", "seconds": t_ssim},
        {"what": f"skimage SSIM loop, {n_images} images (from {k})", "seconds": t_loop},
        {"what": "ratio: skimage loop / batched SSIM", "ratio": t_loop / t_ssim},
    ]


def plain_keras_vit(
    image_shape=(32, 32, 3),
    patch_size: int = 4,
    *,
    embed_dim: int = 128,
    depth: int = 4,
    num_heads: int = 4,
    mlp_dim: int = 256,
):
    """A mask-token ViT made of stock Keras layers only (no code of this project), the speed
    reference.

    Same configuration, inputs and output as :func:`helpers.models.build_vit` with ``fill="token"``
    (``images`` (N, H, W, C), ``mask`` (N, L) -> images): patches cut with reshapes, hidden patches
    zeroed and projected, plus a learned vector times the mask
    (the mask token); learned position embeddings; pre-LayerNorm blocks of
    ``keras.layers.MultiHeadAttention`` and a GELU MLP; a sigmoid head. No dropout.
    """

    class AddPositions(layers.Layer):
        def build(self, shape):
            self.table = self.add_weight(shape=(1, shape[1], shape[2]), initializer="random_normal")

        def call(self, x):
            return x + self.table

    (h, w, c), p = image_shape, patch_size
    gh, gw = h // p, w // p
    num_patches, patch_dim = gh * gw, p * p * c
    images = keras.Input(tuple(image_shape), name="images")
    mask = keras.Input((num_patches,), name="mask")
    patches = layers.Reshape((gh, p, gw, p, c))(images)
    patches = layers.Reshape((num_patches, patch_dim))(layers.Permute((1, 3, 2, 4, 5))(patches))
    m = layers.Reshape((num_patches, 1))(mask)
    visible = layers.Multiply()([patches, layers.Rescaling(-1.0, offset=1.0)(m)])
    x = layers.Add()([layers.Dense(embed_dim)(visible), layers.Dense(embed_dim, use_bias=False)(m)])
    x = AddPositions()(x)
    for _ in range(depth):
        h = layers.LayerNormalization(epsilon=1e-6)(x)
        x = layers.Add()([x, layers.MultiHeadAttention(num_heads, embed_dim // num_heads)(h, h)])
        h = layers.Dense(mlp_dim, activation="gelu")(layers.LayerNormalization(epsilon=1e-6)(x))
        x = layers.Add()([x, layers.Dense(embed_dim)(h)])
    x = layers.Dense(patch_dim, activation="sigmoid")(layers.LayerNormalization(epsilon=1e-6)(x))
    x = layers.Permute((1, 3, 2, 4, 5))(layers.Reshape((gh, gw, p, p, c))(x))
    return keras.Model({"images": images, "mask": mask}, layers.Reshape(tuple(image_shape))(x))


class _StepClock(keras.callbacks.Callback):
    """Seconds from each epoch's first training step to the end of its last, summed: the steps
    (fetching their batches included) without Keras's work between epochs, which varies from one
    ``fit`` to the next."""

    def on_train_begin(self, logs=None):
        self.seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += self._end - self._start


def _fit_runner(model, batch, *, batch_size: int, jit_compile="auto"):
    """Compile ``model`` (Adam, the masked MSE) and return ``run(epochs) -> seconds`` of training
    steps (:class:`_StepClock`) on one in-memory ``(inputs, target, weight)`` set (no mask
    drawing)."""
    inputs, target, weight = batch
    compile_model(model, 1e-3, jit_compile)

    def run(epochs: int) -> float:
        clock = _StepClock()
        model.fit(
            inputs,
            target,
            sample_weight=weight,
            batch_size=batch_size,
            epochs=epochs,
            verbose=0,
            shuffle=False,
            callbacks=[clock],
        )
        return clock.seconds

    return run


def _pipeline_runner(model, images, *, ratio: float, seed: int, batch_size: int):
    """As :func:`_fit_runner`, through :class:`helpers.training.MaskingDataset` (random masks
    drawn for every batch), as :func:`helpers.training.train` feeds a model."""
    ds = MaskingDataset(
        images,
        model.patch_size,
        strategy="random",
        ratio=ratio,
        batch_size=batch_size,
        seed=seed,
        min_masked=model.min_masked,
    )
    compile_model(model, 1e-3)

    def run(epochs: int) -> float:
        clock = _StepClock()
        model.fit(ds, epochs=epochs, verbose=0, shuffle=False, callbacks=[clock])
        return clock.seconds

    return run


def _interleaved_speeds(runners: dict, n_images: int, *, epochs: int, repeats: int) -> dict:
    """Images per second of each of ``runners`` (name -> ``run(epochs) -> seconds``; seconds of
    training steps for :func:`_fit_runner` and :func:`_pipeline_runner`): one untimed
    warm-up epoch each (tracing, compilation), then ``repeats`` rounds in which every runner
    trains ``epochs`` epochs in turn; the median of its rounds. Interleaved, every model meets
    the same drift of the machine's load, so the ratios between them hold better than the
    absolute speeds."""
    check_positive_int(repeats, "repeats")
    for run in runners.values():
        run(1)
    seconds = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            seconds[name].append(run(epochs))
    return {name: epochs * n_images / float(np.median(t)) for name, t in seconds.items()}


def _fit_speed(model, batch, *, batch_size: int, epochs: int, jit_compile="auto") -> float:
    """Training images per second of ``model`` on one in-memory set (:func:`_fit_runner`): one
    untimed warm-up epoch, then ``epochs`` timed ones."""
    return _interleaved_speeds(
        {"model": _fit_runner(model, batch, batch_size=batch_size, jit_compile=jit_compile)},
        len(batch[1]),
        epochs=epochs,
        repeats=1,
    )["model"]


def bench_training(
    n_images: int = 1024,
    ratios=(0.5, 0.75),
    *,
    epochs: int = 1,
    repeats: int = 5,
    batch_size: int = 64,
    seed: int = 0,
    vit_kwargs: dict | None = None,
    mae_kwargs: dict | None = None,
) -> list[dict]:
    """Training images per second, in one run, and the ratios that matter:

    - a plain-Keras mask-token ViT of the same configuration (:func:`plain_keras_vit`), the
      project's mask-token ViT and its MAE-style ViT (built with ``min_mask_ratio`` = the ratio, so
      its encoder sees only the visible patches), on the same in-memory images and masks;
    - the project's ViT again through the training data pipeline
      (:class:`helpers.training.MaskingDataset`: masks drawn for every batch), to show what
      drawing the masks costs;
    - on TensorFlow, the project's ViT with XLA off (the default before it was turned on for
      dropout-free models on a CPU), at the first ratio;
    - the mask-token ViT and the MAE-style ViT with the harmonic fill (``vit_biharmonic`` and its
      MAE twin), against the same models without it, and the one against the other.

    At each ratio the models are timed interleaved (:func:`_interleaved_speeds`: ``repeats``
    rounds of ``epochs`` epochs each, the median round), over their training steps
    (:class:`_StepClock`). ``vit_kwargs``/``mae_kwargs`` go to the builders (default: their
    default sizes, the tuned recipe: the mask token alone, the configuration of the plain-Keras
    reference, except in the rows of the harmonic fill).
    """

    images = np.random.default_rng(seed).random((n_images, 32, 32, 3), dtype=np.float32)
    vit_kwargs = {"fill": "token", **(vit_kwargs or {})}
    mae_kwargs = {"fill": "token", **(mae_kwargs or {})}
    names = {**_SPEED_NAMES, "mae": _mae_name(mae_kwargs)}
    rounds = f"median of {repeats} x {epochs} epoch{'s' * (epochs > 1)}"
    label = f"{n_images} images, {rounds}, batch {batch_size}"
    rows, ratio_rows = [], []
    for ratio in ratios:
        keras.utils.set_random_seed(seed)
        no_xla = keras.backend.backend() == "tensorflow" and ratio == ratios[0]
        runners = _training_runners(images, ratio, seed, vit_kwargs, mae_kwargs, batch_size, no_xla)
        speed = _interleaved_speeds(runners, n_images, epochs=epochs, repeats=repeats)
        rows += [
            {"what": f"{names[k]}, {ratio:.0%} masked, {label}", "images_per_s": v}
            for k, v in speed.items()
        ]
        ratio_rows += [
            {"what": f"ratio: {what}, {ratio:.0%} masked", "ratio": speed[a] / speed[b]}
            for what, a, b in _SPEED_RATIOS
            if a in speed and b in speed
        ]
    return rows + ratio_rows


_SPEED_NAMES = {
    "plain": "plain-Keras ViT (reference)",
    "vit": "mask-token ViT",
    "fill": "mask-token ViT + harmonic fill",
    "mae_fill": "MAE-style ViT + harmonic fill",
    "vit_pipeline": "mask-token ViT + masks drawn per batch",
    "no_xla": "mask-token ViT without XLA",
}


def _mae_name(kwargs) -> str:
    """The MAE's row name, with its decoder's width and depth."""
    defaults = inspect.signature(MaeViT).parameters
    width, depth = (kwargs.get(k, defaults[k].default) for k in ("decoder_dim", "decoder_depth"))
    return f"MAE-style ViT (decoder {width} wide, {depth} block{'s' * (depth > 1)})"


_SPEED_RATIOS = (  # (what, numerator, denominator) of bench_training's ratios
    ("mask-token ViT / plain-Keras ViT", "vit", "plain"),
    ("MAE / mask-token ViT", "mae", "vit"),
    ("with / without mask drawing", "vit_pipeline", "vit"),
    ("with / without harmonic fill (mask-token ViT)", "fill", "vit"),
    ("with / without harmonic fill (MAE)", "mae_fill", "mae"),
    ("MAE / mask-token ViT, both with the harmonic fill", "mae_fill", "fill"),
    ("XLA on / off (TensorFlow, mask-token ViT)", "vit", "no_xla"),
)


def _fit_set(images, ratio, seed):
    """(inputs, target, weight) of random masks at ``ratio``: what the training pipeline yields."""
    mask = masking.make_mask("random", ratio, n_images=len(images), grid=(8, 8), seed=seed)
    weight = patch_mask_to_pixels(mask, 4, (32, 32))[..., 0].astype(np.float32)
    return {"images": images, "mask": mask.astype(np.float32)}, images, weight


def _training_runners(images, ratio, seed, vit_kwargs, mae_kwargs, batch_size, no_xla) -> dict:
    """The runners (:func:`_fit_runner`) of :func:`bench_training` at ``ratio``, on the same
    images and masks; the key ``no_xla`` only when ``no_xla``."""
    batch, fit = _fit_set(images, ratio, seed), dict(batch_size=batch_size)
    sizes = {
        k: v for k, v in vit_kwargs.items() if k in ("embed_dim", "depth", "num_heads", "mlp_dim")
    }
    models = {
        "plain": plain_keras_vit(**sizes),
        "vit": build_model("vit", seed=seed, **vit_kwargs),
        "mae": build_model("mae", seed=seed, min_mask_ratio=ratio, **mae_kwargs),
        "fill": build_model("vit", seed=seed, **{**vit_kwargs, "fill": "harmonic"}),
        "mae_fill": build_model(
            "mae", seed=seed, min_mask_ratio=ratio, **{**mae_kwargs, "fill": "harmonic"}
        ),
    }
    runners = {name: _fit_runner(model, batch, **fit) for name, model in models.items()}
    runners["vit_pipeline"] = _pipeline_runner(
        build_model("vit", seed=seed, **vit_kwargs), images, ratio=ratio, seed=seed, **fit
    )
    if no_xla:
        model = build_model("vit", seed=seed, **vit_kwargs)
        runners["no_xla"] = _fit_runner(model, batch, jit_compile=False, **fit)
    return runners


def bench_autoencoders(
    n_images: int = 512,
    *,
    epochs: int = 1,
    repeats: int = 3,
    batch_size: int = 64,
    seed: int = 0,
    sizes=None,
) -> list[dict]:
    """Training images per second of the CNN autoencoder, the adversarial autoencoder (both
    discriminators on) and the ViT + CNN decoder, with the mask-token ViT as the reference, on
    the same images and masks at 50 % (builders' default sizes, or ``sizes[name]``), timed
    interleaved (:func:`_interleaved_speeds`)."""
    images = np.random.default_rng(seed).random((n_images, 32, 32, 3), dtype=np.float32)
    batch, sizes = _fit_set(images, 0.5, seed), dict(sizes or {})
    kinds = {"vit": {}, "cnn": {}, "aae": {"image_weight": 1e-3}, "vit_cnn": {}}
    names = {"vit": "mask-token ViT", "cnn": "CNN autoencoder", "aae": "adversarial autoencoder "
             "(latent + image discriminators)", "vit_cnn": "ViT + CNN decoder"}  # fmt: skip
    runners = {}
    for kind, extra in kinds.items():
        keras.utils.set_random_seed(seed)
        model = build_model(kind, seed=seed, **extra, **sizes.get(kind, {}))
        runners[kind] = _fit_runner(model, batch, batch_size=batch_size)
    speed = _interleaved_speeds(runners, n_images, epochs=epochs, repeats=repeats)
    rows = [{"what": f"{names[k]}, 50 % masked", "images_per_s": v} for k, v in speed.items()]
    return rows + [
        {"what": f"ratio: {names[k]} / mask-token ViT", "ratio": speed[k] / speed["vit"]}
        for k in list(kinds)[1:]  # all but the mask-token ViT
    ]


def bench_pretrained(
    n_images: int = 32, *, batch_size: int = 8, epochs: int = 1, seed: int = 0, backbone=None
) -> list[dict]:
    """Training images per second of :class:`helpers.pretrained.PretrainedViT` on 32-pixel images
    with masks at 50 %, backbone frozen (``head``) and fine-tuned (``all``), in one run.
    ``backbone``: ``ViTBackbone`` keyword arguments (default ViT-B/16 at 224: 12 blocks, width
    768, MLP 3072, 12 heads, patches of 16), built with random weights."""
    import keras_hub  # heavy, optional

    sizes = backbone or dict(
        image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=12, hidden_dim=768,
        mlp_dim=3072,
    )  # fmt: skip
    images = np.random.default_rng(seed).random((n_images, 32, 32, 3), dtype=np.float32)
    batch, speed = _fit_set(images, 0.5, seed), {}
    keras.utils.set_random_seed(seed)
    vit = keras_hub.models.ViTBackbone(**sizes)
    label = f"{sizes['num_layers']} blocks, width {sizes['hidden_dim']}"
    label += f", input {sizes['image_shape'][0]}, batch {batch_size}"
    for fine_tune in ("head", "all"):
        model = build_pretrained_vit(preset=vit, fine_tune=fine_tune, seed=seed)
        speed[fine_tune] = _fit_speed(model, batch, batch_size=batch_size, epochs=epochs)
        del model
    return [
        {"what": f"pretrained ViT ({label}), head only", "images_per_s": speed["head"]},
        {"what": f"pretrained ViT ({label}), fine-tuned", "images_per_s": speed["all"]},
        {
            "what": "ratio: pretrained ViT, head only / fine-tuned",
            "ratio": speed["head"] / speed["all"],
        },
    ]


def bench_pipeline(n_images: int = 4096, batch_size: int = 256, seed: int = 0) -> list[dict]:
    """Batches per second of :class:`MaskingDataset` alone (masks, flips, weights; no model) for
    the masks of the training runs: one of random/rows/columns and a ratio in 30-70 % per batch,
    and importance masks (pixel-variance scores)."""
    images = np.random.default_rng(seed).random((n_images, 32, 32, 3), dtype=np.float32)
    settings = {
        "mixed random/rows/columns, 30-70 %, flips": dict(
            strategy=["random", "rows", "columns"], ratio=(0.3, 0.7), augment=True
        ),
        "importance (variance), 50 %": dict(strategy="importance", ratio=0.5),
    }
    rows = []
    for what, kw in settings.items():
        ds = MaskingDataset(images, 4, batch_size=batch_size, seed=seed, **kw)
        sec = _timed(lambda ds=ds: [ds[i] for i in range(len(ds))], repeat=2) / len(ds)
        with ThreadPoolExecutor(2) as pool:  # what PyDataset(workers=2) does: threads, in order
            two = _timed(lambda d=ds, p=pool: list(p.map(d.__getitem__, range(len(d)))), repeat=2)
        rows += [
            {"what": f"input pipeline, {what}, batch {batch_size}", "per_s": 1 / sec},
            {"what": "  the same in images", "images_per_s": batch_size / sec},
            {
                "what": f"  the same, 2 worker threads ({os.cpu_count()} CPUs)",
                "per_s": len(ds) / two,
            },
        ]
    return rows


#: Sizes of :func:`bench_speed`: the default run (a few minutes on 2 CPU cores) and ``quick``.
SPEED_SETTINGS = {
    False: {
        "masks": {"n_images": 50_000},
        "metrics": {"n_images": 10_000, "loop_images": 500},
        "training": {"n_images": 1024, "epochs": 1, "repeats": 5, "batch_size": 64},
        "pipeline": {"n_images": 4096, "batch_size": 256},
        "autoencoders": {"n_images": 512},
        "pretrained": {"n_images": 32, "batch_size": 8},
    },
    True: {
        "masks": {"n_images": 5_000},
        "metrics": {"n_images": 500, "loop_images": 50},
        "training": {
            "n_images": 64,
            "epochs": 1,
            "repeats": 2,
            "batch_size": 32,
            "vit_kwargs": {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32},
            "mae_kwargs": {
                "embed_dim": 16,
                "depth": 1,
                "num_heads": 2,
                "mlp_dim": 32,
                "decoder_dim": 16,
                "decoder_depth": 1,
                "decoder_num_heads": 2,
                "decoder_mlp_dim": 32,
            },
        },
        "pipeline": {"n_images": 512, "batch_size": 256},
        "autoencoders": {
            "n_images": 32,
            "repeats": 1,
            "batch_size": 16,
            "sizes": {
                "vit": {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32},
                "cnn": {"filters": (4, 8)},
                "aae": {"filters": (4, 8), "latent_dim": 4},
                "vit_cnn": {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32},
            },
        },
        "pretrained": {
            "n_images": 8,
            "batch_size": 8,
            "backbone": dict(
                image_shape=(32, 32, 3),
                patch_size=8,
                num_layers=1,
                num_heads=2,
                hidden_dim=16,
                mlp_dim=32,
            ),  # fmt: skip
        },
    },
}


def bench_speed(quick: bool = False, report=None) -> list[dict]:
    """Masks, metrics and training speed in one run (sizes from :data:`SPEED_SETTINGS`).

    ``report(title, rows)`` is called after each part (e.g. to print it at once). Returns all rows.
    """
    settings = SPEED_SETTINGS[bool(quick)]
    parts = (
        ("mask generation", lambda: bench_masks(**settings["masks"])),
        ("metrics", lambda: bench_metrics(**settings["metrics"])),
        (
            "training throughput" + (" (tiny models)" if quick else " (default model sizes)"),
            lambda: bench_training(**settings["training"]),
        ),
        ("autoencoders", lambda: bench_autoencoders(**settings["autoencoders"])),
        ("pretrained ViT", lambda: bench_pretrained(**settings["pretrained"])),
        ("input pipeline", lambda: _with_ratio(bench_pipeline(**settings["pipeline"]), rows)),
    )
    rows = []
    for title, run in parts:
        part = run()
        if report is not None:
            report(title, part)
        rows.extend(part)
    return rows


def _with_ratio(pipeline: list[dict], rows: list[dict]) -> list[dict]:
    """``pipeline`` plus its images per second as a ratio to the mask-token ViT's training speed
    (the first such row of ``rows``)."""
    vit = next(r["images_per_s"] for r in rows if r["what"].startswith("mask-token ViT, "))
    slowest = min(r["images_per_s"] for r in pipeline if "images_per_s" in r)
    what = "ratio: slowest input pipeline / mask-token ViT training, images/s"
    return pipeline + [{"what": what, "ratio": slowest / vit}]


def format_rows(rows: list[dict]) -> str:
    """A plain-text table of benchmark rows."""
    width = max(len(r["what"]) for r in rows)
    lines = []
    for r in rows:
        if "ratio" in r:
            lines.append(f"{r['what']:<{width}}  x{r['ratio']:.2f}")
        elif "images_per_s" in r:
            lines.append(f"{r['what']:<{width}}  {r['images_per_s']:10.1f} images/s")
        elif "per_s" in r:
            lines.append(f"{r['what']:<{width}}  {r['per_s']:10.1f} batches/s")
        else:
            lines.append(f"{r['what']:<{width}}  {r['seconds']:10.3f} s")
    return "\n".join(lines)
