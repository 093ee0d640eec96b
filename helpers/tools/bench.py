"""``python -m helpers bench speed``: timings of masks, metrics, training and input pipeline."""

from __future__ import annotations

import functools
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
    for _ in range(repeat):  # not timeit: it turns the garbage collector off
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_masks(n_images: int = 50_000, grid=(8, 8), ratio: float = 0.5) -> list[dict]:
    """Seconds to draw masks for ``n_images`` images with each data-free strategy."""
    rows = []
    for s in ("random", "rows", "columns"):
        sec = _timed(lambda s=s: masking.make_mask(s, ratio, n_images=n_images, grid=grid, seed=0))
        rows.append({"what": f"{s} masks, {n_images} images", "seconds": sec})
    return rows


def bench_metrics(n_images: int = 10_000, loop_images: int = 500, seed: int = 0) -> list[dict]:
    """Seconds of :func:`metrics.evaluate`, batched SSIM and a skimage SSIM loop (scaled up)."""
    from skimage.metrics import structural_similarity  # lazy: slow to import

    a, b = np.random.default_rng(seed).random((2, n_images, 32, 32, 3), dtype=np.float32)
    m = masking.make_mask("random", 0.5, n_images=n_images, grid=(8, 8), seed=seed)
    t_eval = _timed(lambda: metrics.evaluate(a, b, m, 4), repeat=1)
    t_ssim = _timed(lambda: metrics.ssim(a, b), repeat=1)
    k = min(loop_images, n_images)
    ssim_one = functools.partial(structural_similarity, data_range=1, channel_axis=-1)
    t_loop = _timed(lambda: list(map(ssim_one, a[:k], b[:k])), repeat=1) * (n_images / k)
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
    """The speed reference: :func:`helpers.models.build_vit` (``fill="token"``) in stock Keras."""

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
    """Seconds of the training steps, summed over epochs, without Keras's work between epochs."""

    def on_train_begin(self, logs=None):
        self.seconds = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:  # the epoch's first step
            self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += self._end - self._start


def _runner(model, data, *, batch_size: int = 0, jit_compile="auto"):
    """Compile ``model``; ``run(epochs) -> seconds`` of training on :func:`_fit_set` ``data``."""
    compile_model(model, 1e-3, jit_compile)
    data = {**data, "batch_size": batch_size} if isinstance(data, dict) else {"x": data}

    def run(epochs: int) -> float:
        clock = _StepClock()
        model.fit(**data, epochs=epochs, verbose=0, shuffle=False, callbacks=[clock])
        return clock.seconds

    return run


def _interleaved_speeds(runners: dict, n_images: int, *, epochs: int, repeats: int) -> dict:
    """Images/s of each ``run(epochs) -> seconds``: median of interleaved rounds after a warm-up."""
    check_positive_int(repeats, "repeats")
    for run in runners.values():
        run(1)
    seconds = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            seconds[name].append(run(epochs))
    return {name: epochs * n_images / float(np.median(t)) for name, t in seconds.items()}


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
    """Training images/s of the models of :func:`_training_runners` at each ratio, and their ratios;
    ``vit_kwargs``/``mae_kwargs`` go to the builders (default: their sizes, the mask token)."""
    images = np.random.default_rng(seed).random((n_images, 32, 32, 3), dtype=np.float32)
    vit_kwargs = {"fill": "token", **(vit_kwargs or {})}
    mae_kwargs = {"fill": "token", **(mae_kwargs or {})}
    sizes = {k: p.default for k, p in inspect.signature(MaeViT).parameters.items()} | mae_kwargs
    width, depth = sizes["decoder_dim"], sizes["decoder_depth"]
    mae = f"MAE-style ViT (decoder {width} wide, {depth} block{'s' * (depth > 1)})"
    names = {**_SPEED_NAMES, "mae": mae}
    rounds = f"median of {repeats} x {epochs} epoch{'s' * (epochs > 1)}"
    label = f"{n_images} images, {rounds}, batch {batch_size}"
    rows, ratio_rows = [], []
    for ratio in ratios:
        keras.utils.set_random_seed(seed)
        no_xla = keras.backend.backend() == "tensorflow" and ratio == ratios[0]
        runners = _training_runners(images, ratio, seed, vit_kwargs, mae_kwargs, batch_size, no_xla)
        speed = _interleaved_speeds(runners, n_images, epochs=epochs, repeats=repeats)
        for k, v in speed.items():
            rows.append({"what": f"{names[k]}, {ratio:.0%} masked, {label}", "images_per_s": v})
        for what, a, b in _SPEED_RATIOS:
            if a in speed and b in speed:
                what = f"ratio: {what}, {ratio:.0%} masked"
                ratio_rows.append({"what": what, "ratio": speed[a] / speed[b]})
    return rows + ratio_rows


_SPEED_NAMES = {
    "plain": "plain-Keras ViT (reference)",
    "vit": "mask-token ViT",
    "fill": "mask-token ViT + harmonic fill",
    "mae_fill": "MAE-style ViT + harmonic fill",
    "vit_pipeline": "mask-token ViT + masks drawn per batch",
    "no_xla": "mask-token ViT without XLA",
}


_SPEED_RATIOS = (  # (what, numerator, denominator) of bench_training's ratios
    ("mask-token ViT / plain-Keras ViT", "vit", "plain"),
    ("MAE / mask-token ViT", "mae", "vit"),
    ("with / without mask drawing", "vit_pipeline", "vit"),
    ("with / without harmonic fill (mask-token ViT)", "fill", "vit"),
    ("with / without harmonic fill (MAE)", "mae_fill", "mae"),
    ("MAE / mask-token ViT, both with the harmonic fill", "mae_fill", "fill"),
    ("XLA on / off (TensorFlow, mask-token ViT)", "vit", "no_xla"),
)


def _fit_set(images, ratio, seed) -> dict:
    """``x``, ``y`` and ``sample_weight`` of random masks at ``ratio``, as the pipeline yields."""
    mask = masking.make_mask("random", ratio, n_images=len(images), grid=(8, 8), seed=seed)
    weight = patch_mask_to_pixels(mask, 4, (32, 32))[..., 0].astype(np.float32)
    inputs = {"images": images, "mask": mask.astype(np.float32)}
    return dict(x=inputs, y=images, sample_weight=weight)


def _training_runners(images, ratio, seed, vit_kwargs, mae_kwargs, batch_size, no_xla) -> dict:
    """The runners (name -> ``run``) of :func:`bench_training` at ``ratio``."""
    batch, fit = _fit_set(images, ratio, seed), dict(batch_size=batch_size)
    keys = ("embed_dim", "depth", "num_heads", "mlp_dim")
    sizes = {k: v for k, v in vit_kwargs.items() if k in keys}
    vit, mae = dict(seed=seed, **vit_kwargs), dict(seed=seed, min_mask_ratio=ratio, **mae_kwargs)
    models = {
        "plain": plain_keras_vit(**sizes),
        "vit": build_model("vit", **vit),
        "mae": build_model("mae", **mae),
        "fill": build_model("vit", **vit | {"fill": "harmonic"}),
        "mae_fill": build_model("mae", **mae | {"fill": "harmonic"}),
    }
    runners = {name: _runner(model, batch, **fit) for name, model in models.items()}
    model = build_model("vit", **vit)
    kw = dict(strategy="random", ratio=ratio, batch_size=batch_size, seed=seed)
    masks = MaskingDataset(images, model.patch_size, min_masked=model.min_masked, **kw)
    runners["vit_pipeline"] = _runner(model, masks)
    if no_xla:
        runners["no_xla"] = _runner(build_model("vit", **vit), batch, jit_compile=False, **fit)
    return runners


def bench_autoencoders(
    n_images=512, *, epochs=1, repeats=3, batch_size=64, seed=0, sizes=None
) -> list[dict]:
    """Training images/s of the autoencoders and the mask-token ViT at 50 %; ``sizes[name]``."""
    images = np.random.default_rng(seed).random((n_images, 32, 32, 3), dtype=np.float32)
    batch, sizes = _fit_set(images, 0.5, seed), dict(sizes or {})
    kinds = {"vit": {}, "cnn": {}, "aae": {"image_weight": 1e-3}, "vit_cnn": {}}
    names = {"vit": "mask-token ViT", "cnn": "CNN autoencoder", "aae": "adversarial autoencoder "
             "(latent + image discriminators)", "vit_cnn": "ViT + CNN decoder"}  # fmt: skip
    runners = {}
    for kind, extra in kinds.items():
        keras.utils.set_random_seed(seed)
        model = build_model(kind, seed=seed, **extra, **sizes.get(kind, {}))
        runners[kind] = _runner(model, batch, batch_size=batch_size)
    speed = _interleaved_speeds(runners, n_images, epochs=epochs, repeats=repeats)
    rows = [{"what": f"{names[k]}, 50 % masked", "images_per_s": v} for k, v in speed.items()]
    return rows + [
        {"what": f"ratio: {names[k]} / mask-token ViT", "ratio": speed[k] / speed["vit"]}
        for k in list(kinds)[1:]  # all but the mask-token ViT
    ]


def bench_pretrained(
    n_images: int = 32, *, batch_size: int = 8, epochs: int = 1, seed: int = 0, backbone=None
) -> list[dict]:
    """Training images per second of ``PretrainedViT`` at 50 %, head only and fine-tuned;
    ``backbone``: ``ViTBackbone`` arguments (default: ViT-B/16 at 224, random weights)."""
    import keras_hub  # heavy, optional

    sizes = backbone or _VIT_B16
    images = np.random.default_rng(seed).random((n_images, 32, 32, 3), dtype=np.float32)
    batch, speed, rows = _fit_set(images, 0.5, seed), {}, []
    keras.utils.set_random_seed(seed)
    vit = keras_hub.models.ViTBackbone(**sizes)
    label = f"{sizes['num_layers']} blocks, width {sizes['hidden_dim']}"
    label += f", input {sizes['image_shape'][0]}, batch {batch_size}"
    for fine_tune, what in (("head", "head only"), ("all", "fine-tuned")):
        model = build_pretrained_vit(preset=vit, fine_tune=fine_tune, seed=seed)
        run = {"model": _runner(model, batch, batch_size=batch_size)}
        speed[fine_tune] = _interleaved_speeds(run, n_images, epochs=epochs, repeats=1)["model"]
        rows.append({"what": f"pretrained ViT ({label}), {what}", "images_per_s": speed[fine_tune]})
        del model, run
    ratio = speed["head"] / speed["all"]
    return rows + [{"what": "ratio: pretrained ViT, head only / fine-tuned", "ratio": ratio}]


def bench_pipeline(n_images: int = 4096, batch_size: int = 256, seed: int = 0) -> list[dict]:
    """Batches per second of ``MaskingDataset``: mixed and importance masks, 1 and 2 threads."""
    images = np.random.default_rng(seed).random((n_images, 32, 32, 3), dtype=np.float32)
    mixed = dict(strategy=["random", "rows", "columns"], ratio=(0.3, 0.7), augment=True)
    settings = {"mixed random/rows/columns, 30-70 %, flips": mixed}
    settings["importance (variance), 50 %"] = dict(strategy="importance", ratio=0.5)
    rows = []
    for what, kw in settings.items():
        ds = MaskingDataset(images, 4, batch_size=batch_size, seed=seed, **kw)
        sec = _timed(lambda ds=ds: [ds[i] for i in range(len(ds))], repeat=2) / len(ds)
        with ThreadPoolExecutor(2) as pool:  # what PyDataset(workers=2) does: threads, in order
            two = _timed(lambda d=ds, p=pool: list(p.map(d.__getitem__, range(len(d)))), repeat=2)
        threads = f"  the same, 2 worker threads ({os.cpu_count()} CPUs)"
        rows += [
            {"what": f"input pipeline, {what}, batch {batch_size}", "per_s": 1 / sec},
            {"what": "  the same in images", "images_per_s": batch_size / sec},
            {"what": threads, "per_s": len(ds) / two},
        ]
    return rows


_TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32}  # a ViT of the quick run
_TINY_MAE = _TINY | dict(decoder_dim=16, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=32)
_TINY_SIZES = {"vit": _TINY, "cnn": {"filters": (4, 8)}, "vit_cnn": _TINY}
_TINY_SIZES["aae"] = {"filters": (4, 8), "latent_dim": 4}
_TINY_BACKBONE = dict(image_shape=(32, 32, 3), patch_size=8, num_layers=1, num_heads=2)
_TINY_BACKBONE |= dict(hidden_dim=16, mlp_dim=32)
_VIT_B16 = dict(image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=12)
_VIT_B16 |= dict(hidden_dim=768, mlp_dim=3072)
#: Sizes of :func:`bench_speed`'s parts: ``quick`` (True) and the default run (a few minutes on
#: 2 CPU cores), which takes each benchmark's defaults.
SPEED_SETTINGS = {
    True: {
        "masks": {"n_images": 5_000},
        "metrics": {"n_images": 500, "loop_images": 50},
        "training": dict(n_images=64, epochs=1, repeats=2, batch_size=32, vit_kwargs=_TINY)
        | {"mae_kwargs": _TINY_MAE},
        "pipeline": {"n_images": 512, "batch_size": 256},
        "autoencoders": dict(n_images=32, repeats=1, batch_size=16, sizes=_TINY_SIZES),
        "pretrained": dict(n_images=8, batch_size=8, backbone=_TINY_BACKBONE),
    }
}
SPEED_SETTINGS[False] = {key: {} for key in SPEED_SETTINGS[True]}


def bench_speed(quick: bool = False, report=None) -> list[dict]:
    """Every part (sizes of :data:`SPEED_SETTINGS`), calling ``report(title, rows)`` after each."""
    settings = SPEED_SETTINGS[bool(quick)]
    training = "training throughput" + (" (tiny models)" if quick else " (default model sizes)")
    parts = (
        ("mask generation", bench_masks, "masks"),
        ("metrics", bench_metrics, "metrics"),
        (training, bench_training, "training"),
        ("autoencoders", bench_autoencoders, "autoencoders"),
        ("pretrained ViT", bench_pretrained, "pretrained"),
        ("input pipeline", bench_pipeline, "pipeline"),
    )
    rows = []
    for title, bench, key in parts:
        part = bench(**settings[key])
        if key == "pipeline":  # its slowest images per second over the ViT's training speed
            vit = next(r["images_per_s"] for r in rows if r["what"].startswith("mask-token ViT, "))
            slowest = min(r["images_per_s"] for r in part if "images_per_s" in r)
            what = "ratio: slowest input pipeline / mask-token ViT training, images/s"
            part.append({"what": what, "ratio": slowest / vit})
        if report is not None:
            report(title, part)
        rows.extend(part)
    return rows


def format_rows(rows: list[dict]) -> str:
    """A plain-text table of benchmark rows."""
    width = max(len(r["what"]) for r in rows)
    units = {"ratio": "x{:.2f}", "images_per_s": "{:10.1f} images/s", "per_s": "{:10.1f} batches/s"}
    units["seconds"] = "{:10.3f} s"
    keys = [next((k for k in units if k in r), "seconds") for r in rows]
    return "\n".join(f"{r['what']:<{width}}  " + units[k].format(r[k]) for r, k in zip(rows, keys))
