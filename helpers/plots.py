"""Pictures: images, patches, masks, reconstructions, curves, tables and architecture diagrams."""

from __future__ import annotations

import os
import textwrap
from contextlib import suppress
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects
from matplotlib.patches import FancyBboxPatch, Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from ._checks import SettingError, check_images, check_mask
from ._io import atomic_path, project_folder
from .metrics import composite as composite_images
from .patches import grid_shape, patch_mask_to_pixels
from .recipes import is_vit, min_hidden_bound

FIGURES_DIR = project_folder("figures")
DPI = 120
HIDDEN_COLOUR = (1.0, 0.0, 1.0)  # a hidden (masked) patch in every figure, RGB in [0, 1]

# metric keys (of results, histories and sweep rows) in words
METRIC_LABELS = {
    "psnr_masked": "masked-region PSNR (dB)",
    "psnr": "whole-image PSNR (dB)",
    "ssim": "SSIM (whole image)",
    "mse_masked": "masked-region MSE",
    "mse": "whole-image MSE",
    "loss": "training loss",
    "val_loss": "validation loss",
    "learning_rate": "learning rate",
}

# smallest colour range of plot_matrix per metric: noise between runs stays one colour
MATRIX_MIN_SPAN = {"psnr_masked": 3.0, "psnr": 3.0, "ssim": 0.05}
PSNR_CURVE_LABEL = "PSNR (dB): minus the PSNR loss"
TITLE_WIDTH = 16  # characters a line of a column title of plot_reconstructions

PREDICTOR_STYLE = {
    "vit": dict(color="tab:blue", marker="o", label="mask-token ViT"),
    "mae": dict(color="tab:green", marker="s", label="MAE-style ViT"),
    "cnn": dict(color="tab:orange", marker="^", label="CNN autoencoder"),
    "vit_cnn": dict(color="tab:purple", marker="D", label="ViT + CNN decoder"),
    "aae": dict(color="tab:red", marker="P", label="adversarial autoencoder"),
    "vit_biharmonic": dict(color="tab:cyan", marker="*", label="ViT refining biharmonic"),
    "biharmonic": dict(color="tab:gray", marker="x", label="biharmonic inpainting"),
    "mean_colour": dict(
        color="black", marker="v", linestyle=":", label="mean colour (learned nothing)"
    ),
}
RATIO_DODGE = 0.8  # percentage points between neighbouring predictors in plot_metric_vs_ratio
STRATEGY_MARKERS = {"random": "o", "rows": "s", "columns": "D", "importance": "^"}

# Architecture diagrams of the two Transformers, drawn from a model's own settings; sizes in inches
ARCH_BOX_WIDTH = 3.0
ARCH_FONT = 9  # points: readable at 100 dpi
ARCH_LINE = 0.19  # a line of box text (9 pt, line spacing 1.3)
ARCH_GAP = 0.34  # between two boxes: an arrow
ARCH_WRAP = 36  # characters a line of box text
ARCH_COLOURS = {"data": "white", "encoder": "#dbe8f6", "decoder": "#dcf0dc"}
TOKEN_COLOUR = (0.3, 0.5, 0.8)  # a token of a visible patch in the token strips
TOKEN_EXAMPLE = (0, 1, 0, 0, 1, 1, 0, 1)  # the 8 tokens a strip shows: 1 = hidden patch


def metric_label(key: str) -> str:
    """``key`` in words (``val_`` -> "validation", ``_mean`` dropped; unknown keys unchanged)."""
    key = str(key)
    label = METRIC_LABELS.get(key.removesuffix("_mean"))
    if label is None and key.startswith("val_") and key[4:] in METRIC_LABELS:
        label = f"validation {METRIC_LABELS[key[4:]]}"
    return label or key


def _curve_label(metric: str, values=None) -> str:
    """The y-label of a curve of ``metric`` (training and validation together)."""
    if metric != "loss":
        return metric_label(metric)
    return "loss (minus the mean PSNR, dB)" if _psnr_loss(values) else "loss (MSE)"


def _psnr_loss(values) -> bool:
    """Whether loss ``values`` are minus a PSNR (all negative), not an MSE."""
    return values is not None and len(values) > 0 and max(values) < 0


def hide_patches(images, mask, patch_size: int) -> np.ndarray:
    """``images`` (N, H, W, C) as RGB, the hidden patches of ``mask`` (N, L) in HIDDEN_COLOUR."""
    images = np.asarray(check_images(images))
    pixels = patch_mask_to_pixels(mask, patch_size, images.shape[1:3])
    rows, n = len(pixels), len(images)
    if rows != n:
        raise SettingError("mask", np.shape(mask), f"has {rows} rows but there are {n} images")
    rgb = np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
    return np.where(pixels, np.asarray(HIDDEN_COLOUR, dtype=rgb.dtype), rgb)


def _swatch_legend(owner, *colours_and_labels, **kwargs):
    """A legend of colour swatches on a figure or axes ``owner``; by default under a figure."""
    handles = [Patch(facecolor=c, edgecolor="0.3", label=label) for c, label in colours_and_labels]
    where = dict(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), fontsize=9)
    owner.legend(handles=handles, frameon=False, **{**where, **kwargs})


def _column_colorbar(fig, im, axes, label: str, **kwargs):
    """A colour bar right of a column of axes (after ``tight_layout``), as tall as the column."""
    top, bottom, inches = axes[0].get_position(), axes[-1].get_position(), fig.get_figwidth()
    cax = fig.add_axes((top.x1 + 0.08 / inches, bottom.y0, 0.12 / inches, top.y1 - bottom.y0))
    fig.colorbar(im, cax=cax, **kwargs).set_label(label, fontsize=8)
    cax.tick_params(labelsize=7)


def _finish(fig, title=None):
    """``fig`` with its suptitle ``title`` (if any), laid out tightly."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def figures_dir() -> Path:
    """The folder :func:`save_fig` writes to: ``$HELPERS_FIGURES_DIR``, else ``figures/``."""
    return Path(os.environ.get("HELPERS_FIGURES_DIR") or FIGURES_DIR).resolve()


def save_fig(fig, name: str, dpi: int = DPI, folder=None) -> Path:
    """Write ``fig`` atomically to ``figures/<name>.png`` (or ``folder``) and close it."""
    if not name or "/" in name or "\\" in name:
        raise SettingError("name", name, "must be a plain file name without folders")
    folder = figures_dir() if folder is None else Path(folder)
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    png = dict(format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, **png)
    finally:
        plt.close(fig)
    return path


def show_and_save(fig, name: str, dpi: int = DPI) -> Path:
    """Show ``fig`` in the notebook (once), then :func:`save_fig` it. Returns the path."""
    with suppress(ImportError):
        from IPython import get_ipython  # optional: notebooks only
        from IPython.display import display

        if get_ipython() is not None:
            display(fig)
    return save_fig(fig, name, dpi=dpi)


def _show(ax, img, title=None):
    cmap = "gray" if img.shape[-1] == 1 else None
    ax.imshow(np.clip(img, 0, 1).squeeze(), cmap=cmap, vmin=0, vmax=1)
    ax.set(xticks=[], yticks=[])
    if title:
        ax.set_title(title, fontsize=9)


def _image_grid(images, cols: int, size, titles=None):
    """``images`` in a grid of ``cols`` columns, each ``size`` (width, height) inches."""
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            _show(ax, images[i], titles[i] if titles else None)
        else:
            ax.axis("off")
    return fig


def plot_images(images, labels=None, class_names=None, n: int = 16, cols: int = 8, title=None):
    """A grid of images with their class names."""
    check_images(images)
    n = min(n, len(images))
    if labels is not None:  # the titles
        labels = [class_names[int(lab)] if class_names else str(lab) for lab in labels[:n]]
    return _finish(_image_grid(images[:n], cols, (1.4, 1.5), labels), title)


def plot_patch_grid(image, patch_size: int, title=None):
    """One image with the patch grid drawn over it and each patch numbered (up to 100)."""
    check_images(image[None])
    gh, gw = grid_shape(image.shape[:2], patch_size)
    fig, ax = plt.subplots(figsize=(5, 5))
    _show(ax, image, title)
    for line, count in ((ax.axhline, gh), (ax.axvline, gw)):
        for i in range(1, count):
            line(i * patch_size - 0.5, color="white", lw=0.8)
    if gh * gw <= 100:  # white numbers with a black outline: readable on any patch
        outline = [patheffects.withStroke(linewidth=1.5, foreground="black")]
        number = dict(ha="center", va="center", fontsize=8, color="white", path_effects=outline)
        half = patch_size / 2 - 0.5
        for r, c in np.ndindex(gh, gw):
            ax.text(c * patch_size + half, r * patch_size + half, str(r * gw + c), **number)
    return fig


def plot_patches(patches, patch_size: int, channels: int = 3, title=None):
    """The patches (L, P) of one image as a sequence of tokens: L tiles in a row-major grid."""
    patches = [p.reshape(patch_size, patch_size, channels) for p in np.asarray(patches)]
    fig = _image_grid(patches, int(np.ceil(np.sqrt(len(patches)))), (0.55, 0.55))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.15, hspace=0.15)
    return fig


def plot_masks(images, masks: dict, patch_size: int, n: int = 1, title=None):
    """Masked versions of ``n`` images, one column per entry of ``masks`` (label -> mask (N, L))."""
    check_images(images)
    n = min(n, len(images))
    cols = len(masks) + 1
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 2.0 * n), squeeze=False)
    for r in range(n):
        _show(axes[r, 0], images[r], "original" if r == 0 else None)
        for c, (label, mask) in enumerate(masks.items(), 1):
            masked = hide_patches(images[r : r + 1], mask[r : r + 1], patch_size)[0]
            _show(axes[r, c], masked, f"{label}\n{mask[r].mean():.0%} hidden" if r == 0 else None)
    _finish(fig, title)
    _swatch_legend(fig, (HIDDEN_COLOUR, "hidden patch"))
    return fig


def plot_mask_patterns(masks: dict, grid, title=None):
    """Mask patterns on the patch ``grid`` (gh, gw): ``masks`` maps a row label to a dict of
    column label -> one mask (L,)."""
    gh, gw = int(grid[0]), int(grid[1])
    rows, cols = list(masks), list(next(iter(masks.values())))
    nrows, ncols = len(rows), len(cols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.8 * ncols, 1.9 * nrows), squeeze=False)
    for (r, c), ax in np.ndenumerate(axes):
        m = np.asarray(masks[rows[r]][cols[c]], dtype=bool).reshape(gh, gw)
        ax.imshow(np.where(m[..., None], np.asarray(HIDDEN_COLOUR), 1.0))  # visible: white
        ax.set_xticks(np.arange(-0.5, gw), minor=True)
        ax.set_yticks(np.arange(-0.5, gh), minor=True)
        ax.grid(which="minor", color="0.8", lw=0.4)
        ax.tick_params(which="minor", length=0)
        ax.set(xticks=[], yticks=[])
        if r == 0:
            ax.set_title(str(cols[c]), fontsize=9)
        if c == 0:
            ax.set_ylabel(str(rows[r]), fontsize=9)
    _finish(fig, title)
    _swatch_legend(fig, (HIDDEN_COLOUR, "hidden patch"), ("white", "visible patch"))
    return fig


def plot_reconstructions(
    original,
    mask,
    reconstructions,
    patch_size: int,
    n: int = 6,
    error_map: bool | str = True,
    title=None,
    composite: bool = True,
    error_max: float | None = None,
):
    """Rows of original | masked | reconstruction(s) | error map(s) for ``n`` images.

    Args:
        mask: bool (N, L), True = hidden; reconstructions: one array or a dict title -> array.
        error_map: True: |original - reconstruction| (channel mean) of the first reconstruction,
            ``"all"``: of each, False: none; one colour scale up to ``error_max`` or error_limit.
        composite: show reconstructions as scored: hidden pixels predicted, others original.
    """
    check_images(original, "original")
    check_mask(mask, n_images=original.shape[0])
    if not isinstance(reconstructions, dict):
        reconstructions = {"reconstructed": reconstructions}
    n = min(n, len(original))
    labels = list(reconstructions)
    shown = {}
    for k, v in reconstructions.items():
        v = np.clip(np.asarray(v[:n], dtype=original.dtype), 0, 1)
        shown[k] = composite_images(original[:n], v, mask[:n], patch_size) if composite else v
    mapped = labels if error_map == "all" else labels[:1] if error_map else []
    errors = {k: np.abs(original[:n] - shown[k]).mean(axis=-1) for k in mapped}
    if errors:
        hidden = patch_mask_to_pixels(mask[:n], patch_size, original.shape[1:3])[..., 0]
        vmax = error_max or error_limit(list(errors.values()), hidden if composite else None)
    ncols = 2 + len(labels) + len(mapped)
    fig, axes = plt.subplots(n, ncols, figsize=(1.7 * ncols, 1.8 * n), squeeze=False)
    masked = hide_patches(original[:n], mask[:n], patch_size)
    for r in range(n):
        _show(axes[r, 0], original[r], "original" if r == 0 else None)
        _show(axes[r, 1], masked[r], f"masked ({mask[r].mean():.0%})" if r == 0 else None)
        for c, label in enumerate(labels, 2):
            _show(axes[r, c], shown[label][r], _wrap(label) if r == 0 else None)
        for c, label in enumerate(mapped, 2 + len(labels)):
            err_im = axes[r, c].imshow(errors[label][r], cmap="magma", vmin=0, vmax=vmax)
            axes[r, c].set(xticks=[], yticks=[])
            if r == 0:
                name = f"|error| {label}" if len(labels) > 1 else "|error|"
                axes[r, c].set_title(_wrap(name), fontsize=9)
    _finish(fig, title)
    if errors:
        _column_colorbar(fig, err_im, axes[:, -1], "absolute error", extend="max")
    _swatch_legend(fig, (HIDDEN_COLOUR, "hidden patch"))
    return fig


def _wrap(text: str, width: int = TITLE_WIDTH) -> str:
    """``text`` with each of its lines wrapped to ``width`` characters (words are not split)."""
    lines = str(text).split("\n")
    return "\n".join(textwrap.fill(line, width, break_long_words=False) or line for line in lines)


def error_limit(errors, where=None, percentile: float = 99.0) -> float:
    """The top of a shared colour scale of error maps (arrays of one shape): the ``percentile`` of
    ``errors`` where ``where`` is True (everywhere if None or nowhere True); at least 1e-3."""
    errors = np.stack([np.asarray(e, dtype=float) for e in errors])
    if where is not None and np.any(where):
        errors = errors[:, np.asarray(where, dtype=bool)]
    return max(float(np.percentile(errors, percentile)), 1e-3)


def _epoch_axis(ax):
    """An x-axis of whole epochs, and a light grid."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def plot_history(history: dict, metrics=("loss",), title=None):
    """Training curves from a Keras ``History.history`` dict (or a CSV log read into a dict)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for key in (metric, f"val_{metric}"):
            if key in history:
                label = metric_label(key)
                if key == metric and not label.startswith("training"):
                    label = f"training {label}"
                ax.plot(np.arange(1, len(history[key]) + 1), history[key], label=label)
        _epoch_axis(ax)
        ax.set_ylabel(_curve_label(metric, history.get(metric)))
        ax.legend()
    return _finish(fig, title)


def plot_metric_vs_ratio(rows, metric="psnr_masked", strategies=None, title=None, names=None):
    """A panel per strategy: ``{metric}_mean`` (``_std`` bars) of the sweep ``rows`` against the
    mask ratio, a line per predictor (labelled ``names[p]`` or :data:`PREDICTOR_STYLE`'s)."""
    strategies = strategies or list(dict.fromkeys(r["strategy"] for r in rows))
    predictors = list(dict.fromkeys(r["predictor"] for r in rows))
    dodge = {p: (i - (len(predictors) - 1) / 2) * RATIO_DODGE for i, p in enumerate(predictors)}
    ncols, keys = len(strategies), ("ratio", f"{metric}_mean", f"{metric}_std")
    fig, axes = plt.subplots(1, ncols, figsize=(3.6 * ncols, 3.3), squeeze=False, sharey=True)
    for ax, strategy in zip(axes.flat, strategies):
        for p in predictors:
            mine = [r for r in rows if r["strategy"] == strategy and r["predictor"] == p]
            pts = sorted(tuple(float(r[k]) for k in keys) for r in mine)
            if not pts:
                continue
            x, y, e = map(np.array, zip(*pts))
            style = dict(PREDICTOR_STYLE.get(p, dict(label=p)))
            style["label"] = (names or {}).get(p, style["label"])
            bars = ax.errorbar(x * 100 + dodge[p], y, yerr=e, capsize=2, elinewidth=0.8, **style)
            plt.setp(bars.lines[1] + bars.lines[2], alpha=0.45)  # caps and bars
        ax.set(title=strategy, xlabel="mask ratio (%)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(metric_label(metric))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    where = dict(loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, -0.08), frameon=False)
    fig.legend(handles, labels, **where)
    return _finish(fig, title)


def plot_matrix(
    table, strategies, title=None, label=None, metric: str = "psnr_masked", min_span=None, fmt=None
):
    """Heat map of a (trained on x evaluated on) strategy table, values written in, NaN grey; the
    colour scale spans at least ``min_span`` (default :data:`MATRIX_MIN_SPAN`) around the mean."""
    table = np.asarray(table, dtype=float)
    label = metric_label(metric) if label is None else label
    min_span = MATRIX_MIN_SPAN.get(metric, 0.0) if min_span is None else float(min_span)
    fmt = fmt or ("{:.1f}" if metric.startswith("psnr") else "{:.3f}")
    finite = table[np.isfinite(table)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high - low >= min_span and high > low:
        vmin, vmax = low, high
    else:  # a window of min_span centred on the mean, moved as little as needed to hold every value
        span = min_span if min_span > 0 else 1.0
        vmin = min(max(float(finite.mean()) - span / 2, high - span), low)
        vmax = vmin + span
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
    fig, ax = plt.subplots(figsize=(1.2 * len(strategies) + 2.4, 1.0 * len(strategies) + 1.5))
    im = ax.imshow(np.ma.masked_invalid(table), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(strategies)), labels=strategies)
    ax.set_yticks(range(len(strategies)), labels=strategies)
    ax.set(xlabel="evaluated on", ylabel="trained on")
    for (i, j), value in np.ndenumerate(table):
        if np.isfinite(value):
            r, g, b, _ = cmap(im.norm(value))  # dark text on light cells, by luminance
            colour = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(j, i, fmt.format(value), ha="center", va="center", color=colour, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8).set_label(label)
    note = "rows: trained on · columns: evaluated on"
    ax.set_title(f"{title}\n{note}" if title else note, fontsize=10)
    return _finish(fig)


def plot_histories(histories: dict, metric: str = "loss", title=None, log_scale: bool = True):
    """Runs (label -> history) on one axis, ``metric`` solid, ``val_{metric}`` dashed; PSNR-loss
    runs (negative) as PSNR in dB, on a second, linear axis when MSE runs share the figure."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    psnr_runs = [k for k, h in histories.items() if metric == "loss" and _psnr_loss(h.get(metric))]
    psnr_ax = None
    if psnr_runs:
        psnr_ax = ax.twinx() if len(psnr_runs) < len(histories) else ax
        psnr_ax.set_ylabel(PSNR_CURVE_LABEL)
    for i, (label, history) in enumerate(histories.items()):
        target, sign = (psnr_ax, -1.0) if label in psnr_runs else (ax, 1.0)
        for key, style, which in ((metric, "-", "training"), (f"val_{metric}", "--", "validation")):
            values = history.get(key)
            if values is not None and len(values):
                values = sign * np.asarray(values, dtype=float)
                _epoch_plot(target, values, style, color=f"C{i}", label=f"{label} ({which})")
    if psnr_ax is not ax:  # the MSE runs on the left axis
        ax.set_ylabel(_curve_label(metric) + (" (log scale)" if log_scale else ""))
        if log_scale:
            ax.set_yscale("log")
    _epoch_axis(ax)
    lines = ax.get_lines() + (psnr_ax.get_lines() if psnr_ax not in (None, ax) else [])
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8)
    if title:
        ax.set_title(title)
    return _finish(fig)


def plot_training_curves(
    histories: dict, losses=None, psnr_key="val_psnr_masked", title=None, log_scale: bool = True
):
    """A panel per model of its own loss (training solid, validation dashed), since the models'
    losses differ, then one panel of the ``psnr_key`` curves of all histories holding it.

    Args:
        histories: label -> history dict (Keras ``History.history``).
        losses: label -> the model's loss in words (its panel's y-label); default: MSE or
            minus the PSNR, told from the values.
        log_scale: draw a positive loss (an MSE) on a log scale.
    """
    if not histories:
        raise SettingError("histories", histories, "is empty: no training curves to plot")
    shared = {k: v for k, h in histories.items() if (v := _curve(h, psnr_key)) is not None}
    ncols = len(histories) + bool(shared)
    fig, axes = plt.subplots(1, ncols, figsize=(3.6 * ncols, 3.4), squeeze=False)
    for i, (label, history) in enumerate(histories.items()):
        ax = axes[0, i]
        curves = {"training": _curve(history, "loss"), "validation": _curve(history, "val_loss")}
        for (name, values), style in zip(curves.items(), ("-", "--")):
            if values is not None:
                _epoch_plot(ax, values, style, color=f"C{i}", label=name)
        drawn = [v for v in curves.values() if v is not None]
        loss = (losses or {}).get(label)
        words = _wrap(f"loss: {loss}", 40) if loss else _curve_label("loss", (drawn or [None])[0])
        ax.set_ylabel(words)
        if drawn:
            _epoch_axis(ax)
            if log_scale and all(np.nanmin(v) > 0 for v in drawn):
                ax.set_yscale("log")
            ax.legend(fontsize=8)
        ax.set_title(_wrap(label, 40), fontsize=10)
    if shared:
        ax = axes[0, -1]
        for i, label in enumerate(histories):
            if label in shared:
                _epoch_plot(ax, shared[label], "-", color=f"C{i}", label=label)
        _epoch_axis(ax)
        ax.set_ylabel(_wrap(metric_label(psnr_key), 40))
        ax.set_title("all models: the same measure", fontsize=10)
        ax.legend(fontsize=8)
    return _finish(fig, title)


def _curve(history: dict, key: str):
    """``history[key]`` as floats, or None when it is missing, empty or all NaN."""
    values = np.asarray(history.get(key, []), dtype=float)
    return None if np.all(np.isnan(values)) else values


def _epoch_plot(ax, values, style: str, **kwargs):
    """``values`` against epochs 1, 2, ..."""
    ax.plot(np.arange(1, len(values) + 1), values, style, marker="o", ms=3, **kwargs)


def plot_patch_scores(
    images, scores, patch_size: int, n: int = 4, title=None, label="gradient importance (relative)"
):
    """Each image over a heat map of its ``scores`` (N, L), one per patch, shown as
    :func:`relative_scores` on one colour bar labelled ``label``."""
    check_images(images)
    scores = np.asarray(scores, dtype=float)
    gh, gw = images.shape[1] // patch_size, images.shape[2] // patch_size
    if scores.shape != (shape := (images.shape[0], gh * gw)):
        raise SettingError("scores", scores.shape, f"must have shape (N, L) = {shape}")
    n = min(n, len(images))
    fig, axes = plt.subplots(2, n, figsize=(1.8 * n, 3.8), squeeze=False)
    for i in range(n):
        _show(axes[0, i], images[i], f"image {i}")
        ax = axes[1, i]
        im = ax.imshow(relative_scores(scores[i]).reshape(gh, gw), cmap="inferno", vmin=0, vmax=1)
        ax.set(xticks=[], yticks=[])
    axes[1, 0].set_ylabel("score per patch", fontsize=9)
    _finish(fig, title)
    _column_colorbar(fig, im, [axes[1, -1]], label)
    return fig


def relative_scores(scores) -> np.ndarray:
    """Scores of one image scaled to [0, 1]: divided by the largest when none is negative (0 stays
    "no importance"), otherwise min-max scaled; all zero when they are all 0 or all equal."""
    scores = np.asarray(scores, dtype=float)
    low, high = float(scores.min()), float(scores.max())
    if low >= 0:
        return scores / high if high > 0 else np.zeros_like(scores)
    return (scores - low) / (high - low) if high > low else np.zeros_like(scores)


def plot_confusion(matrix, class_names, title=None):
    """Confusion matrix (rows true, columns predicted), coloured by row share, counts written in."""
    matrix = np.asarray(matrix, dtype=float)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(0.55 * n + 2.6, 0.5 * n + 1.8))
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set(xlabel="predicted", ylabel="true")
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if shares[i, j] > 0.5 else "black"
        ax.text(j, i, f"{int(count)}", ha="center", va="center", color=colour, fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.8).set_label("share of the true class")
    accuracy = f"accuracy {np.trace(matrix) / max(matrix.sum(), 1):.3f}"
    ax.set_title(f"{title}\n{accuracy}" if title else accuracy, fontsize=10)
    return _finish(fig)


def plot_probe_vs_psnr(cells, baselines=None, chance=None, title=None, reference=None):
    """One point per encoder: its masked-region PSNR (x) against its linear probe's accuracy (y),
    the marker its training strategy, the colour its training ratio.

    Args:
        cells: dicts with ``strategy``, ``ratio``, ``psnr`` and ``accuracy``
            (:func:`helpers.tools.report.probe_cells`).
        baselines: name -> probe accuracy of a baseline (dashed horizontal lines).
        chance: the accuracy of always guessing the most frequent class (a dotted line).
        reference: name -> masked-region PSNR (dB) of a non-learned predictor, drawn as named
            vertical lines that the x-range always holds.
    """
    if not cells:
        raise SettingError("cells", cells, "is empty: no probe results to plot")
    strategies = list(dict.fromkeys(c["strategy"] for c in cells))
    ratios = sorted({float(c["ratio"]) for c in cells})
    colours = plt.cm.viridis(np.linspace(0.1, 0.85, len(ratios)))
    fig, ax = plt.subplots(figsize=(5.8, 4.0))
    point = dict(s=55, edgecolor="black", linewidth=0.5, zorder=3)
    for strategy in strategies:
        for ratio, colour in zip(ratios, colours):
            pts = [c for c in cells if c["strategy"] == strategy and float(c["ratio"]) == ratio]
            xy = ([c["psnr"] for c in pts], [c["accuracy"] for c in pts])
            ax.scatter(*xy, marker=STRATEGY_MARKERS.get(strategy, "o"), color=colour, **point)
    box = dict(facecolor="white", edgecolor="none", alpha=0.7, pad=0.5)
    right = dict(xycoords=("axes fraction", "data"), ha="right", color="dimgrey", bbox=box)
    lines = dict(baselines or {})
    if chance is not None:
        lines["chance"] = chance
    for name, value in lines.items():
        ax.axhline(value, color="grey", linestyle=":" if name == "chance" else "--", lw=1)
        # zorder 2, under the points (zorder 3): a name never hides a measurement
        ax.annotate(name, (1.0, value), va="bottom", fontsize=8, zorder=2, **right)
    keys = [(STRATEGY_MARKERS.get(s, "o"), "grey", s) for s in strategies]
    keys += [("o", c, f"{r:.0%}") for r, c in zip(ratios, colours)]
    handles = [plt.Line2D([], [], marker=m, color=c, ls="", label=t) for m, c, t in keys]
    reference = reference or {}
    above = dict(xycoords=("data", "axes fraction"), xytext=(0, 2), textcoords="offset points")
    above.update(color="tab:red", ha="center", va="bottom", fontsize=8)
    for name, value in reference.items():
        ax.axvline(value, color="tab:red", linestyle="-.", lw=1)
        ax.annotate(name, (value, 1.0), **above)
    if reference:  # an x-range holding the points and the references, with a margin
        values = [float(v) for v in [*(c["psnr"] for c in cells), *reference.values()]]
        pad = max(0.05 * (max(values) - min(values)), 0.3)
        ax.set_xlim(min(values) - pad, max(values) + pad)
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set(xlabel="masked-region PSNR of the model (dB)", ylabel="linear probe accuracy")
    ax.grid(alpha=0.3)
    if title:  # above the reference labels
        ax.set_title(title, fontsize=10, pad=14 if reference else 6)
    return _finish(fig)


def plot_architecture(model, title=None):
    """A diagram of a mask-token or MAE-style ViT from its ``get_config``: boxes with their output
    shapes, strips of example tokens; ``title`` defaults to the name and weight count."""
    if not is_vit(getattr(model, "builder", "")):
        allowed = "must be a mask-token ViT or an MAE-style ViT"
        raise SettingError("model", type(model).__name__, allowed)
    if title is None:
        title = f"{model.label}: {model.count_params():,} weights (N = images in a batch)"
    # two columns (header, [(kind, text, tokens, height), ...]); tokens: None, "all" or "visible"
    s = model.get_config()
    (h, w, c), p = (int(v) for v in s["image_shape"]), int(s["patch_size"])
    n, P, d = int(np.prod(grid_shape((h, w), p))), p * p * 3, s["embed_dim"]
    gray = c == 1  # a gray model works in colour
    harmonic, image = s.get("fill") == "harmonic", f"N × {h} × {w} × {c}"
    started = "as sine-cosine" if s.get("pos_init") == "sincos" else "at random"
    pos = f"+ learned position embedding (started {started})"

    def box(kind, tokens, *lines):  # lines that are None are left out; last: the height (inches)
        text = "\n".join(_wrap(t, ARCH_WRAP) for t in lines if t)
        return kind, text, tokens, 0.16 + ARCH_LINE * (text.count("\n") + 1) + 0.24 * bool(tokens)

    def blocks(kind, tokens, name, prefix, width, shape):
        size = f"{s[prefix + 'num_heads']} heads, width {width}, MLP {s[prefix + 'mlp_dim']}"
        return box(kind, tokens, f"{name} × {s[prefix + 'depth']}", size, "then LayerNorm", shape)

    def head(width, kind):
        linear = f"linear head {width} → {P}" + (": a correction" if harmonic else ", sigmoid")
        guess = "+ the guess, clipped to [0, 1]" if harmonic else None
        return [
            box(kind, None, linear, guess, f"N × {n} × {P} reconstructed patches"),
            box("data", None, "unpatchify: reconstructed image",
                "(a 1 × 1 convolution back to gray)" if gray else None, image),
        ]  # fmt: skip

    patches = [
        box("data", None, "input image", image),
        box("encoder", None, f"patchify: {p} × {p} patches, row by row",
            "(gray: a 1 × 1 convolution to 3 channels)" if gray else None, f"N × {n} × {P}"),
    ]  # fmt: skip
    if not min_hidden_bound(model.builder):  # mask-token ViT: every token through the blocks
        tokens = f"N × {n} × {d}"
        mask = "each hidden token replaced by one learned mask token"
        if harmonic:
            fill = "harmonic fill: a smooth guess at each hidden patch from the visible pixels"
            patches.append(box("encoder", None, fill, f"N × {n} × {P}"))
            mask = "+ a learned mask token on each hidden token"
        down = [
            *patches,
            box("encoder", None, f"patch embedding: linear {P} → {d}", tokens),
            box("encoder", "all", mask, tokens),
            box("encoder", None, pos, tokens),
        ]
        up = [blocks("encoder", "all", "Transformer block", "", d, tokens), *head(d, "encoder")]
        columns = [(f"tokens: all {n} patches", down), ("Transformer and head", up)]
    else:  # MAE-style ViT: the encoder sees the visible tokens only, the decoder all positions
        dd, keep = s["decoder_dim"], n - int(getattr(model, "min_masked", 0))
        kept = f"{keep} of {n} (every mask hides ≥ {n - keep})"
        down = [
            *patches,
            box("encoder", None, f"patch embedding: linear {P} → {d}", pos, f"N × {n} × {d}"),
            box("encoder", "visible", "keep the visible tokens only:", kept, f"N × {keep} × {d}"),
            blocks("encoder", "visible", "Transformer block", "", d, f"N × {keep} × {d}"),
        ]
        restore = "tokens back in place, a learned mask token at each hidden position"
        fill = "+ the embedded harmonic fill (a smooth guess) of every patch" if harmonic else None
        up = [
            box("decoder", "visible", f"linear {d} → {dd}", f"N × {keep} × {dd}"),
            box("decoder", "all", restore, fill, f"N × {n} × {dd}"),
            box("decoder", None, pos, f"N × {n} × {dd}"),
            blocks("decoder", "all", "decoder block", "decoder_", dd, f"N × {n} × {dd}"),
            *head(dd, "decoder"),
        ]
        columns = [("encoder: visible tokens only", down), (f"decoder: all {n} positions", up)]
    return _draw_architecture(columns, title, n)


def _draw_architecture(columns, title: str, n_tokens: int):
    """Two columns of boxes (the first running down, the second up) on axes in inches."""
    heights = [[b[3] for b in boxes] for _, boxes in columns]
    stacks = [sum(h) + ARCH_GAP * (len(h) - 1) for h in heights]
    title = _wrap(title, 80)
    bottom, top = 0.75, 0.45 + 0.2 * (title.count("\n") + 1)
    width, height = 2 * ARCH_BOX_WIDTH + 1.3, bottom + max(stacks) + top
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1), xlim=(0, width), ylim=(0, height))
    ax.axis("off")
    xs = [0.3, 0.3 + ARCH_BOX_WIDTH + 0.7]
    arrow = dict(arrowprops=dict(arrowstyle="-|>", color="0.3", lw=1.2, shrinkA=0, shrinkB=0))
    frame = dict(boxstyle="round,pad=0,rounding_size=0.06", edgecolor="0.35", lw=0.8)
    for i, ((header, boxes), hs, x) in enumerate(zip(columns, heights, xs)):
        centre = x + ARCH_BOX_WIDTH / 2
        order = -1 if i == 0 else 1  # the first column runs down: its first box on top
        ys = [bottom + sum(hs[::order][:j]) + ARCH_GAP * j for j in range(len(hs))][::order]
        for (kind, text, tokens, _), y, h in zip(boxes, ys, hs):
            ax.add_patch(FancyBboxPatch((x, y), ARCH_BOX_WIDTH, h, fc=ARCH_COLOURS[kind], **frame))
            ax.text(centre, y + h - 0.08, text, ha="center", va="top", fontsize=ARCH_FONT,
                    linespacing=1.3)  # fmt: skip
            if tokens:  # TOKEN_EXAMPLE: all (the hidden ones as mask tokens) or the visible ones
                strip = [HIDDEN_COLOUR if t else TOKEN_COLOUR for t in TOKEN_EXAMPLE]
                strip = strip if tokens == "all" else [TOKEN_COLOUR] * TOKEN_EXAMPLE.count(0)
                left = centre - (0.17 * len(strip) - (0.17 - 0.13)) / 2  # 0.13 inch every 0.17
                for k, colour in enumerate(strip):
                    square = (left + k * 0.17, y + 0.08), 0.13, 0.13
                    ax.add_patch(Rectangle(*square, facecolor=colour, edgecolor="0.3", lw=0.5))
        for j in range(len(hs) - 1):
            start, end = (ys[j], ys[j + 1] + hs[j + 1]) if i == 0 else (ys[j] + hs[j], ys[j + 1])
            ax.annotate("", xy=(centre, end), xytext=(centre, start), **arrow)
        ax.text(centre, bottom + stacks[i] + 0.1, header, ha="center", va="bottom",
                fontsize=ARCH_FONT + 1, fontweight="bold")  # fmt: skip
    join = bottom + min(heights[0][-1], heights[1][0]) / 2
    ax.annotate("", xy=(xs[1], join), xytext=(xs[0] + ARCH_BOX_WIDTH, join), **arrow)
    ax.text(width / 2, height - 0.12, title, ha="center", va="top", fontsize=ARCH_FONT + 2)
    keys = (TOKEN_COLOUR, "token of a visible patch"), (HIDDEN_COLOUR, "mask token (hidden patch)")
    where = dict(loc="lower center", bbox_to_anchor=(0.5, 0.01), fontsize=ARCH_FONT)
    strips = f"token strips: 8 of the {n_tokens} tokens"
    _swatch_legend(ax, *keys, **where, title=strips, title_fontsize=ARCH_FONT)
    return fig
