"""Pictures: reconstruction grids, mask patterns, training curves, and one ``save_fig``.

Hidden patches are drawn in one colour, :data:`HIDDEN_COLOUR`, in every figure; metric keys
reach labels and titles in words through :func:`metric_label` (:data:`METRIC_LABELS`).

Figures are written as PNG into ``figures/`` at the top of the project (found from this
package's location, not the working directory). ``HELPERS_FIGURES_DIR`` overrides the folder,
which ``python -m helpers run`` uses to keep figures of other profiles apart.
"""

from __future__ import annotations

import os
import textwrap
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

# The one colour of a hidden (masked) patch in every figure, RGB in [0, 1].
HIDDEN_COLOUR = (1.0, 0.0, 1.0)

# Metric keys (as in results, histories and sweep rows) in words, for axis labels, legends and
# titles.
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

# Smallest colour range of plot_matrix per metric, in the metric's units: differences well inside
# it (noise between runs) stay one colour instead of spanning the whole colour map.
MATRIX_MIN_SPAN = {"psnr_masked": 3.0, "psnr": 3.0, "ssim": 0.05}


def metric_label(key: str) -> str:
    """``key`` in words (``psnr_masked`` -> ``masked-region PSNR (dB)``); ``val_`` prefixes become
    "validation", a ``_mean`` suffix is dropped, and unknown keys come back unchanged."""
    key = str(key)
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    if key.endswith("_mean") and key.removesuffix("_mean") in METRIC_LABELS:
        return metric_label(key.removesuffix("_mean"))
    if key.startswith("val_") and key.removeprefix("val_") in METRIC_LABELS:
        return f"validation {METRIC_LABELS[key.removeprefix('val_')]}"
    return key


def _curve_label(metric: str, values=None) -> str:
    """The y-axis label of a training curve that shows training and validation values together;
    a loss whose ``values`` are all negative is the PSNR loss (minus the mean PSNR)."""
    if metric != "loss":
        return metric_label(metric)
    return "loss (minus the mean PSNR, dB)" if _psnr_loss(values) else "loss (MSE)"


PSNR_CURVE_LABEL = "PSNR (dB): minus the PSNR loss"


def _psnr_loss(values) -> bool:
    """Whether a loss curve is :class:`helpers.training.NegativePSNR`'s (minus a PSNR in dB:
    negative), not an MSE (positive)."""
    return values is not None and len(values) > 0 and max(values) < 0


def hide_patches(images, mask, patch_size: int) -> np.ndarray:
    """``images`` (N, H, W, C) as RGB with the hidden patches of ``mask`` (N, L) painted
    :data:`HIDDEN_COLOUR`."""
    check_images(images)
    images = np.asarray(images)
    pixels = patch_mask_to_pixels(mask, patch_size, images.shape[1:3])
    if pixels.shape[0] != images.shape[0]:
        raise SettingError(
            "mask",
            np.shape(mask),
            f"has {pixels.shape[0]} rows but there are {images.shape[0]} images",
        )
    rgb = np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
    return np.where(pixels, np.asarray(HIDDEN_COLOUR, dtype=rgb.dtype), rgb)


def _hidden_legend(fig, label: str = "hidden patch"):
    """A swatch of :data:`HIDDEN_COLOUR` under the figure."""
    fig.legend(
        handles=[Patch(facecolor=HIDDEN_COLOUR, edgecolor="0.3", label=label)],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        frameon=False,
        fontsize=9,
    )


def _column_colorbar(fig, im, axes, label: str, **kwargs):
    """A colour bar right of a column of axes (after ``tight_layout``), as tall as the column."""
    top, bottom = axes[0].get_position(), axes[-1].get_position()
    width = 0.12 / fig.get_figwidth()  # about 0.12 inch
    cax = fig.add_axes((top.x1 + 0.08 / fig.get_figwidth(), bottom.y0, width, top.y1 - bottom.y0))
    cbar = fig.colorbar(im, cax=cax, **kwargs)
    cbar.set_label(label, fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    return cbar


def figures_dir() -> Path:
    """The folder :func:`save_fig` writes to."""
    return Path(os.environ.get("HELPERS_FIGURES_DIR") or FIGURES_DIR).resolve()


def save_fig(fig, name: str, dpi: int = DPI, folder=None) -> Path:
    """Write ``fig`` to ``figures/<name>.png`` (or ``folder/<name>.png``) atomically and close
    it. Returns the path."""
    if not name or "/" in name or "\\" in name:
        raise SettingError("name", name, "must be a plain file name without folders")
    folder = figures_dir() if folder is None else Path(folder)
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    try:
        with atomic_path(path) as tmp:
            fig.savefig(
                tmp, dpi=dpi, bbox_inches="tight", format="png", metadata={"Software": None}
            )
    finally:
        plt.close(fig)
    return path


def show_and_save(fig, name: str, dpi: int = DPI) -> Path:
    """Show ``fig`` in the notebook (once), then :func:`save_fig` it. Returns the path."""
    try:
        from IPython import get_ipython  # optional: notebooks only
        from IPython.display import display  # optional: notebooks only

        if get_ipython() is not None:
            display(fig)
    except ImportError:
        pass
    return save_fig(fig, name, dpi=dpi)


def _show(ax, img, title=None):
    ax.imshow(
        np.clip(img, 0, 1).squeeze(), cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def plot_images(images, labels=None, class_names=None, n: int = 16, cols: int = 8, title=None):
    """A grid of images with their class names."""
    check_images(images)
    n = min(n, len(images))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.5 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            label = None
            if labels is not None:
                label = class_names[int(labels[i])] if class_names else str(labels[i])
            _show(ax, images[i], label)
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_patch_grid(image, patch_size: int, title=None):
    """One image with the patch grid drawn over it and each patch numbered (white numbers with a
    black outline, readable on light and dark patches alike)."""
    check_images(image[None])
    gh, gw = grid_shape(image.shape[:2], patch_size)
    fig, ax = plt.subplots(figsize=(5, 5))
    _show(ax, image, title)
    for i in range(1, gh):
        ax.axhline(i * patch_size - 0.5, color="white", lw=0.8)
    for j in range(1, gw):
        ax.axvline(j * patch_size - 0.5, color="white", lw=0.8)
    if gh * gw <= 100:
        for r in range(gh):
            for c in range(gw):
                ax.text(
                    c * patch_size + patch_size / 2 - 0.5,
                    r * patch_size + patch_size / 2 - 0.5,
                    str(r * gw + c),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white",
                    path_effects=[patheffects.withStroke(linewidth=1.5, foreground="black")],
                )
    return fig


def plot_patches(patches, patch_size: int, channels: int = 3, title=None):
    """The patches of one image laid out as a sequence of tokens (L small tiles in a row-major
    grid)."""
    patches = np.asarray(patches)
    n = patches.shape[0]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(0.55 * cols, 0.55 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            _show(ax, patches[i].reshape(patch_size, patch_size, channels))
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.15, hspace=0.15)
    return fig


def plot_masks(images, masks: dict, patch_size: int, n: int = 1, title=None):
    """Masked versions of ``n`` images, one column per entry of ``masks`` (label -> mask (N, L))."""
    check_images(images)
    labels = list(masks)
    n = min(n, len(images))
    fig, axes = plt.subplots(
        n, len(labels) + 1, figsize=(1.9 * (len(labels) + 1), 2.0 * n), squeeze=False
    )
    for r in range(n):
        _show(axes[r, 0], images[r], "original" if r == 0 else None)
        for c, label in enumerate(labels):
            masked = hide_patches(images[r : r + 1], masks[label][r : r + 1], patch_size)[0]
            frac = f"{label}\n{masks[label][r].mean():.0%} hidden"
            _show(axes[r, c + 1], masked, frac if r == 0 else None)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _hidden_legend(fig)
    return fig


def plot_mask_patterns(masks: dict, grid, title=None):
    """The mask patterns themselves on the patch grid: rows of labels (e.g. strategies), columns of
    masks.

    ``masks`` maps a row label to a dict of column label -> one mask (L,).
    """
    gh, gw = int(grid[0]), int(grid[1])
    rows = list(masks)
    cols = list(next(iter(masks.values())))
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(1.8 * len(cols), 1.9 * len(rows)), squeeze=False
    )
    for r, rl in enumerate(rows):
        for c, cl in enumerate(cols):
            m = np.asarray(masks[rl][cl], dtype=bool).reshape(gh, gw)
            ax = axes[r, c]
            ax.imshow(
                np.where(m[..., None], np.asarray(HIDDEN_COLOUR), 1.0)
            )  # visible patches white
            ax.set_xticks(np.arange(-0.5, gw), minor=True)
            ax.set_yticks(np.arange(-0.5, gh), minor=True)
            ax.grid(which="minor", color="0.8", lw=0.4)
            ax.tick_params(which="minor", length=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(cl), fontsize=9)
            if c == 0:
                ax.set_ylabel(str(rl), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.legend(
        handles=[
            Patch(facecolor=HIDDEN_COLOUR, edgecolor="0.3", label="hidden patch"),
            Patch(facecolor="white", edgecolor="0.3", label="visible patch"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=2,
        frameon=False,
        fontsize=9,
    )
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

    Hidden patches are drawn in :data:`HIDDEN_COLOUR`. An error map is |original -
    reconstruction| averaged over channels (zero on the visible patches of a composite). All error
    maps share one colour scale (a colour bar "absolute error"), from 0 to the 99th percentile of
    the errors shown (:func:`error_limit`), so that the gap between two predictors shows.
    Column titles are wrapped (:data:`TITLE_WIDTH` characters a line) so that long predictor
    names do not run into each other.

    Args:
        original: images (N, H, W, C) in [0, 1].
        mask: patch mask (N, L), 1 = hidden.
        reconstructions: one array (N, H, W, C) or a dict label -> array, to compare predictors
            side by side (the labels are the column titles; they may hold line breaks).
        patch_size: side of a patch in pixels.
        n: how many images (rows).
        error_map: True: the error map of the *first* reconstruction; ``"all"``: one per
            reconstruction, in the same order; False: none.
        title: the figure's title.
        composite: show each reconstruction as it is scored: visible pixels from the original,
            hidden pixels from the prediction.
        error_max: the top of the error colour scale; None: :func:`error_limit` of the maps shown.
    """
    check_images(original, "original")
    check_mask(mask, n_images=original.shape[0])
    if not isinstance(reconstructions, dict):
        reconstructions = {"reconstructed": reconstructions}
    n = min(n, len(original))
    labels = list(reconstructions)
    shown = {
        k: np.clip(np.asarray(v[:n], dtype=original.dtype), 0, 1)
        for k, v in reconstructions.items()
    }
    if composite:
        shown = {
            k: composite_images(original[:n], v, mask[:n], patch_size) for k, v in shown.items()
        }
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
        for c, label in enumerate(labels):
            _show(axes[r, 2 + c], shown[label][r], _wrap(label) if r == 0 else None)
        for c, label in enumerate(mapped):
            ax = axes[r, 2 + len(labels) + c]
            err_im = ax.imshow(errors[label][r], cmap="magma", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                name = f"|error| {label}" if len(labels) > 1 else "|error|"
                ax.set_title(_wrap(name), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if errors:
        _column_colorbar(fig, err_im, axes[:, -1], "absolute error", extend="max")
    _hidden_legend(fig)
    return fig


# characters a line of a column title of plot_reconstructions (about 1.3 inch at 9 pt)
TITLE_WIDTH = 16


def _wrap(text: str, width: int = TITLE_WIDTH) -> str:
    """``text`` with each of its lines wrapped to ``width`` characters (words are not split)."""
    return "\n".join(
        textwrap.fill(line, width, break_long_words=False) or line for line in str(text).split("\n")
    )


def error_limit(errors, where=None, percentile: float = 99.0) -> float:
    """The top of a shared colour scale of error maps: the ``percentile`` of all the ``errors``
    (a list of arrays of one shape) at the pixels ``where`` is True (default, or where it holds
    none: every pixel); at least 1e-3, so that perfect predictions still get a scale."""
    errors = np.stack([np.asarray(e, dtype=float) for e in errors])
    if where is not None and np.any(where):
        errors = errors[:, np.asarray(where, dtype=bool)]
    return max(float(np.percentile(errors, percentile)), 1e-3)


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
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(_curve_label(metric, history.get(metric)))
        ax.legend()
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


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


# percentage points between neighbouring predictors' points in plot_metric_vs_ratio
RATIO_DODGE = 0.8


def plot_metric_vs_ratio(
    rows, metric: str = "psnr_masked", strategies=None, title=None, names=None
):
    """One panel per strategy: ``metric`` (mean with std bars) against the mask ratio, a line per
    predictor, labelled with ``names[predictor]`` where given (for example "mask-token ViT (course
    checkpoint)"), else the predictor's usual label.

    ``rows`` are sweep rows (``helpers.tools.experiments``) with ``{metric}_mean`` and
    ``{metric}_std``. The predictors' points sit side by side around each ratio
    (:data:`RATIO_DODGE` percentage points apart), so that two predictors with the same scores (the
    two ViTs in the quick profile) both stay visible; the std bars (the spread over images, not an
    uncertainty of the mean) are drawn light.
    """
    strategies = strategies or list(dict.fromkeys(r["strategy"] for r in rows))
    predictors = list(dict.fromkeys(r["predictor"] for r in rows))
    dodge = {p: (i - (len(predictors) - 1) / 2) * RATIO_DODGE for i, p in enumerate(predictors)}
    fig, axes = plt.subplots(
        1, len(strategies), figsize=(3.6 * len(strategies), 3.3), squeeze=False, sharey=True
    )
    for ax, strategy in zip(axes.flat, strategies):
        for p in predictors:
            pts = sorted(
                (float(r["ratio"]), float(r[f"{metric}_mean"]), float(r[f"{metric}_std"]))
                for r in rows
                if r["strategy"] == strategy and r["predictor"] == p
            )
            if not pts:
                continue
            x, y, e = map(np.array, zip(*pts))
            style = dict(PREDICTOR_STYLE.get(p, dict(label=p)))
            if names and p in names:
                style["label"] = names[p]
            bars = ax.errorbar(x * 100 + dodge[p], y, yerr=e, capsize=2, elinewidth=0.8, **style)
            for line in bars.lines[1] + bars.lines[2]:  # caps and bars
                line.set_alpha(0.45)
        ax.set_title(strategy)
        ax.set_xlabel("mask ratio (%)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(metric_label(metric))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=len(labels),
        bbox_to_anchor=(0.5, -0.08),
        frameon=False,
    )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_matrix(
    table,
    strategies,
    title=None,
    label=None,
    metric: str = "psnr_masked",
    min_span=None,
    fmt: str | None = None,
):
    """Heat map of a (train strategy x eval strategy) table with the values written in.

    Rows are the strategy a model was trained on, columns the one it was evaluated on. ``metric``
    names what the table holds (colour bar label ``label``, default :func:`metric_label`). The
    colour
    scale spans at least ``min_span`` (default :data:`MATRIX_MIN_SPAN` of the metric, 3 dB for
    PSNR), centred on the mean of the table when the values lie closer together than that, so that
    differences of a few tenths of a dB do not look like a pattern; wider tables use their own
    range. Missing (NaN) cells are grey and left blank.
    """
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
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            if np.isfinite(table[i, j]):
                r, g, b, _ = cmap(
                    im.norm(table[i, j])
                )  # dark text on light cells, by the cell's luminance
                ax.text(
                    j,
                    i,
                    fmt.format(table[i, j]),
                    ha="center",
                    va="center",
                    color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white",
                    fontsize=9,
                )
    cbar = fig.colorbar(im, ax=ax, shrink=0.8)
    cbar.set_label(label)
    ax.set_title(
        "\n".join([*([title] if title else []), "rows: trained on · columns: evaluated on"]),
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_histories(histories: dict, metric: str = "loss", title=None, log_scale: bool = True):
    """Training curves of several runs on one axis: ``histories`` maps a label to a history dict
    (Keras ``History.history`` or :func:`helpers.training.read_history` columns); the training
    ``metric`` is drawn solid and ``val_{metric}`` dashed, in the same colour per run. Runs trained
    on the PSNR loss (a negative loss) are drawn as PSNR in dB, on a second, linear axis on the
    right when MSE runs share the figure."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    psnr_runs = [k for k, h in histories.items() if metric == "loss" and _psnr_loss(h.get(metric))]
    psnr_ax = None
    if psnr_runs:
        psnr_ax = ax.twinx() if len(psnr_runs) < len(histories) else ax
        psnr_ax.set_ylabel(PSNR_CURVE_LABEL)
    for i, (label, history) in enumerate(histories.items()):
        target, sign = (psnr_ax, -1.0) if label in psnr_runs else (ax, 1.0)
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = history.get(key)
            if values is not None and len(values):
                target.plot(
                    np.arange(1, len(values) + 1),
                    sign * np.asarray(values, dtype=float),
                    style,
                    color=f"C{i}",
                    marker="o",
                    ms=3,
                    label=f"{label} ({'validation' if key.startswith('val_') else 'training'})",
                )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if psnr_ax is not ax:  # the MSE runs on the left axis
        ax.set_ylabel(_curve_label(metric) + (" (log scale)" if log_scale else ""))
        if log_scale:
            ax.set_yscale("log")
    ax.grid(alpha=0.3)
    lines = ax.get_lines() + (psnr_ax.get_lines() if psnr_ax not in (None, ax) else [])
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_training_curves(
    histories: dict,
    losses=None,
    psnr_key: str = "val_psnr_masked",
    title=None,
    log_scale: bool = True,
):
    """Each model's training curves on an axis of its own, and one shared axis for a measure that
    all the models have in common.

    The models' losses differ (the mask-token ViT's MSE on the hidden patches, the MAE's on every
    patch, a PSNR loss), so one number of two losses says nothing about which model is better:
    each model gets a panel of its loss (training solid, validation dashed), its y-label saying
    which loss it is. The last panel draws the ``psnr_key`` curve of every history that holds it
    (the masked-region PSNR of the validation images), in the models' colours; it is left out when
    no history holds that key.

    Args:
        histories: label -> history dict (Keras ``History.history``, or the ``history`` of
            :func:`helpers.training.train`'s result).
        losses: label -> the loss of that model in words (e.g.
            :func:`helpers.training.describe_loss`), the y-label of its panel; default: MSE or
            minus the PSNR, told from the values.
        psnr_key: the history key of the measure the models share.
        title: the figure's title.
        log_scale: draw a positive loss (an MSE) on a log scale.
    """
    if not histories:
        raise SettingError("histories", histories, "is empty: no training curves to plot")
    losses = dict(losses or {})
    shared = {k: _curve(h, psnr_key) for k, h in histories.items()}
    shared = {k: v for k, v in shared.items() if v is not None}
    ncols = len(histories) + bool(shared)
    fig, axes = plt.subplots(1, ncols, figsize=(3.6 * ncols, 3.4), squeeze=False)
    for i, (label, history) in enumerate(histories.items()):
        _loss_panel(axes[0, i], history, f"C{i}", losses.get(label), log_scale)
        axes[0, i].set_title(_wrap(label, 40), fontsize=10)
    if shared:
        ax = axes[0, -1]
        for i, label in enumerate(histories):
            if label in shared:
                _epoch_plot(ax, shared[label], "-", color=f"C{i}", label=label)
        ax.set_ylabel(_wrap(metric_label(psnr_key), 40))
        ax.set_title("all models: the same measure", fontsize=10)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _curve(history: dict, key: str):
    """``history[key]`` as floats, or None when it is missing, empty or all NaN."""
    values = history.get(key)
    if values is None or len(values) == 0:
        return None
    values = np.asarray(values, dtype=float)
    return None if np.all(np.isnan(values)) else values


def _epoch_plot(ax, values, style: str, **kwargs):
    """``values`` against epochs 1, 2, ... (whole-number ticks)."""
    ax.plot(np.arange(1, len(values) + 1), values, style, marker="o", ms=3, **kwargs)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _loss_panel(ax, history: dict, colour, description, log_scale: bool):
    """One model's ``loss`` (solid) and ``val_loss`` (dashed) in ``colour``; the y-label says
    which loss (``description``, or :func:`_curve_label`), log-scaled for a positive loss."""
    curves = {"training": _curve(history, "loss"), "validation": _curve(history, "val_loss")}
    for (name, values), style in zip(curves.items(), ("-", "--")):
        if values is not None:
            _epoch_plot(ax, values, style, color=colour, label=name)
    shown = [v for v in curves.values() if v is not None]
    ax.set_ylabel(
        _wrap(f"loss: {description}", 40)
        if description
        else _curve_label("loss", shown[0] if shown else None)
    )
    if log_scale and shown and all(np.nanmin(v) > 0 for v in shown):
        ax.set_yscale("log")
    if shown:
        ax.legend(fontsize=8)


def plot_patch_scores(
    images,
    scores,
    patch_size: int,
    n: int = 4,
    title=None,
    label: str = "gradient importance (relative)",
):
    """Each image over a heat map of one score per patch (e.g. gradient importance).

    Scores are shown relative to each image's largest score (non-negative scores are divided by it;
    others are scaled to [0, 1] between the image's smallest and largest), on one colour bar
    labelled ``label``: brighter = a larger score.
    """
    check_images(images)
    scores = np.asarray(scores, dtype=float)
    gh, gw = images.shape[1] // patch_size, images.shape[2] // patch_size
    if scores.shape != (images.shape[0], gh * gw):
        raise SettingError(
            "scores", scores.shape, f"must have shape (N, L) = {(images.shape[0], gh * gw)}"
        )
    n = min(n, len(images))
    fig, axes = plt.subplots(2, n, figsize=(1.8 * n, 3.8), squeeze=False)
    for i in range(n):
        _show(axes[0, i], images[i], f"image {i}")
        ax = axes[1, i]
        im = ax.imshow(relative_scores(scores[i]).reshape(gh, gw), cmap="inferno", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            ax.set_ylabel("score per patch", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _column_colorbar(fig, im, [axes[1, -1]], label)
    return fig


def relative_scores(scores) -> np.ndarray:
    """Scores of one image scaled to [0, 1]: divided by the largest when none is negative (0 stays
    "no importance"), otherwise min-max scaled; all zero when they are all equal to 0 or each
    other."""
    scores = np.asarray(scores, dtype=float)
    low, high = float(scores.min()), float(scores.max())
    if low >= 0:
        return scores / high if high > 0 else np.zeros_like(scores)
    return (scores - low) / (high - low) if high > low else np.zeros_like(scores)


def plot_confusion(matrix, class_names, title=None):
    """Confusion matrix of a classifier: rows the true class, columns the predicted one, colour the
    share of each true class (a row sums to 1), the counts written in."""
    matrix = np.asarray(matrix, dtype=float)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(0.55 * n + 2.6, 0.5 * n + 1.8))
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            color = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", color=color, fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.8).set_label("share of the true class")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title("\n".join([*([title] if title else []), f"accuracy {accuracy:.3f}"]), fontsize=10)
    fig.tight_layout()
    return fig


STRATEGY_MARKERS = {"random": "o", "rows": "s", "columns": "D", "importance": "^"}


def plot_probe_vs_psnr(cells, baselines=None, chance=None, title=None, reference=None):
    """Does better reconstruction mean better features? One point per encoder: its masked-region
    PSNR (x) against its linear probe's accuracy (y), the marker its training strategy, the colour
    its training ratio; dashed lines for the ``baselines`` (name -> accuracy) and a dotted one for
    ``chance``; vertical dash-dotted lines for the ``reference`` PSNRs, named above the axes,
    which the x-range always includes, so that the axis shows how far the encoders are from,
    e.g., the mean-colour guess.

    Args:
        cells: dicts with ``strategy``, ``ratio``, ``psnr`` and ``accuracy``
            (:func:`helpers.tools.report.probe_cells`).
        baselines: name -> probe accuracy of a baseline (horizontal lines).
        chance: the accuracy of always guessing the most frequent class.
        title: the figure's title.
        reference: name -> masked-region PSNR (dB) of a non-learned predictor (e.g.
            ``{"mean colour": 22.3, "biharmonic": 28.0}``), drawn as labelled vertical lines.
    """
    if not cells:
        raise SettingError("cells", cells, "is empty: no probe results to plot")
    ratios = sorted({float(c["ratio"]) for c in cells})
    colours = plt.cm.viridis(np.linspace(0.1, 0.85, len(ratios)))
    fig, ax = plt.subplots(figsize=(5.8, 4.0))
    for strategy in dict.fromkeys(c["strategy"] for c in cells):
        for ratio, colour in zip(ratios, colours):
            pts = [c for c in cells if c["strategy"] == strategy and float(c["ratio"]) == ratio]
            ax.scatter(
                [c["psnr"] for c in pts],
                [c["accuracy"] for c in pts],
                marker=STRATEGY_MARKERS.get(strategy, "o"),
                color=colour,
                s=55,
                edgecolor="black",
                linewidth=0.5,
                zorder=3,
            )
    lines = dict(baselines or {})
    if chance is not None:
        lines["chance"] = chance
    for name, value in lines.items():
        ax.axhline(value, color="grey", linestyle=":" if name == "chance" else "--", lw=1)
        ax.annotate(
            name,
            (1.0, value),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            fontsize=8,
            color="dimgrey",
            bbox=dict(facecolor="white", edgecolor="none", alpha=0.7, pad=0.5),
            zorder=2,  # under the points (zorder 3): a name never hides a measurement
        )
    handles = [
        plt.Line2D([], [], marker=STRATEGY_MARKERS.get(s, "o"), color="grey", ls="", label=s)
        for s in dict.fromkeys(c["strategy"] for c in cells)
    ] + [
        plt.Line2D([], [], marker="o", color=c, ls="", label=f"{r:.0%}")
        for r, c in zip(ratios, colours)
    ]
    _psnr_references(ax, [c["psnr"] for c in cells], reference or {})
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_xlabel("masked-region PSNR of the model (dB)")
    ax.set_ylabel("linear probe accuracy")
    ax.grid(alpha=0.3)
    if title:  # above the reference labels
        ax.set_title(title, fontsize=10, pad=14 if reference else 6)
    fig.tight_layout()
    return fig


def _psnr_references(ax, psnrs, reference: dict):
    """Vertical lines at the ``reference`` PSNRs (name -> dB), labelled above the axes, and an
    x-range that holds them and the points' ``psnrs``, with a margin of 5% of the range (at least
    0.3 dB)."""
    for name, value in reference.items():
        ax.axvline(value, color="tab:red", linestyle="-.", lw=1)
        ax.annotate(
            name,
            (value, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            color="tab:red",
        )
    if reference:
        values = [float(v) for v in [*psnrs, *reference.values()]]
        pad = max(0.05 * (max(values) - min(values)), 0.3)
        ax.set_xlim(min(values) - pad, max(values) + pad)


# --------------------------------------------------------------------------------------------
# Architecture diagrams of the two Transformers, drawn from a model's own settings
# --------------------------------------------------------------------------------------------
ARCH_BOX_WIDTH = 3.0  # inches, one box of plot_architecture
ARCH_FONT = 9  # points: readable at 100 dpi
ARCH_LINE = 0.19  # inches a line of box text takes (9 pt, line spacing 1.3)
ARCH_GAP = 0.34  # inches between two boxes: an arrow
ARCH_WRAP = 36  # characters a line of box text
ARCH_COLOURS = {"data": "white", "encoder": "#dbe8f6", "decoder": "#dcf0dc"}
TOKEN_COLOUR = (0.3, 0.5, 0.8)  # a token of a visible patch in the token strips
TOKEN_EXAMPLE = (0, 1, 0, 0, 1, 1, 0, 1)  # the 8 tokens a strip shows: 1 = hidden patch


def plot_architecture(model, title=None):
    """A diagram of one of the course's Transformers, from its own settings (``get_config``).

    Boxes from the input image through the patches, the tokens and the Transformer blocks to the
    reconstructed patches and image, each with the shape of what it puts out (N images); the
    left column runs down, the right one up. Strips of 8 example tokens show which tokens are
    hidden: the mask-token ViT keeps all its tokens and replaces the hidden ones by a learned
    mask token; the MAE's encoder sees the visible tokens only and its decoder gets mask tokens
    at the hidden positions. A legend names the colours.

    Args:
        model: a mask-token ViT (``build_model("vit")``, also ``"vit_biharmonic"``) or an
            MAE-style ViT (``build_model("mae")``).
        title: the figure's title; default: the model's name and its number of weights.
    """
    builder = getattr(model, "builder", "")
    if not is_vit(builder):
        raise SettingError(
            "model", type(model).__name__, "must be a mask-token ViT or an MAE-style ViT"
        )
    s = _architecture_numbers(model)
    columns = _mae_columns(s) if min_hidden_bound(builder) else _vit_columns(s)
    if title is None:
        title = f"{model.label}: {model.count_params():,} weights (N = images in a batch)"
    return _draw_architecture(columns, title, s["L"])


def _architecture_numbers(model) -> dict:
    """The model's settings plus what follows from them: the patch grid's ``L`` patches of
    ``P`` values (3 channels: a gray model works in colour), ``keep`` tokens in the MAE's
    encoder, ``pos`` (how the position embedding starts)."""
    s = dict(model.get_config())
    h, w, c = (int(v) for v in s["image_shape"])
    p = int(s["patch_size"])
    gh, gw = grid_shape((h, w), p)
    s.update(h=h, w=w, c=c, p=p, L=gh * gw, P=p * p * 3, image=f"N × {h} × {w} × {c}")
    s["keep"] = gh * gw - int(getattr(model, "min_masked", 0))
    s["pos"] = "started as sine-cosine" if s.get("pos_init") == "sincos" else "started at random"
    return s


def _patch_boxes(s) -> list:
    """The input image and its patches, as boxes ``(kind, lines, tokens)``."""
    patchify = [f"patchify: {s['p']} × {s['p']} patches, row by row", f"N × {s['L']} × {s['P']}"]
    if s["c"] == 1:
        patchify.insert(1, "(gray: a 1 × 1 convolution to 3 channels)")
    return [("data", ["input image", s["image"]], None), ("encoder", patchify, None)]


def _head_boxes(s, width: int, kind: str) -> list:
    """The linear head to ``P`` values a patch and the reconstructed image."""
    if s.get("fill") == "harmonic":
        head = [f"linear head {width} → {s['P']}: a correction", "+ the guess, clipped to [0, 1]"]
    else:
        head = [f"linear head {width} → {s['P']}, sigmoid"]
    out = ["unpatchify: reconstructed image", s["image"]]
    if s["c"] == 1:
        out.insert(1, "(a 1 × 1 convolution back to gray)")
    return [
        (kind, [*head, f"N × {s['L']} × {s['P']} reconstructed patches"], None),
        ("data", out, None),
    ]


def _blocks(name: str, depth, heads, width, mlp) -> list:
    return [f"{name} × {depth}", f"{heads} heads, width {width}, MLP {mlp}"]


def _vit_columns(s) -> list:
    """The mask-token ViT: every token goes through the Transformer."""
    d, tokens = s["embed_dim"], f"N × {s['L']} × {s['embed_dim']}"
    harmonic = s.get("fill") == "harmonic"
    down = _patch_boxes(s)
    if harmonic:
        guess = ["harmonic fill: a smooth guess at each hidden patch from the visible pixels"]
        down.append(("encoder", [*guess, f"N × {s['L']} × {s['P']}"], None))
    token = (
        "+ a learned mask token on each hidden token"
        if harmonic
        else ("each hidden token replaced by one learned mask token")
    )
    down += [
        ("encoder", [f"patch embedding: linear {s['P']} → {d}", tokens], None),
        ("encoder", [token, tokens], "all"),
        ("encoder", [f"+ learned position embedding ({s['pos']})", tokens], None),
    ]
    blocks = _blocks("Transformer block", s["depth"], s["num_heads"], d, s["mlp_dim"])
    up = [("encoder", [*blocks, "then LayerNorm", tokens], "all"), *_head_boxes(s, d, "encoder")]
    return [(f"tokens: all {s['L']} patches", down), ("Transformer and head", up)]


def _mae_columns(s) -> list:
    """The MAE-style ViT: the encoder sees the visible tokens only, the decoder all positions."""
    d, dd, n, keep = s["embed_dim"], s["decoder_dim"], s["L"], s["keep"]
    embed = [
        f"patch embedding: linear {s['P']} → {d}",
        f"+ learned position embedding ({s['pos']})",
    ]
    selected = ["keep the visible tokens only:", f"{keep} of {n} (every mask hides ≥ {n - keep})"]
    blocks = _blocks("Transformer block", s["depth"], s["num_heads"], d, s["mlp_dim"])
    down = [
        *_patch_boxes(s),
        ("encoder", [*embed, f"N × {n} × {d}"], None),
        ("encoder", [*selected, f"N × {keep} × {d}"], "visible"),
        ("encoder", [*blocks, "then LayerNorm", f"N × {keep} × {d}"], "visible"),
    ]
    restore = ["tokens back in place, a learned mask token at each hidden position"]
    if s.get("fill") == "harmonic":
        restore.append("+ the embedded harmonic fill (a smooth guess) of every patch")
    decoder = _blocks(
        "decoder block", s["decoder_depth"], s["decoder_num_heads"], dd, s["decoder_mlp_dim"]
    )
    up = [
        ("decoder", [f"linear {d} → {dd}", f"N × {keep} × {dd}"], "visible"),
        ("decoder", [*restore, f"N × {n} × {dd}"], "all"),
        ("decoder", [f"+ learned position embedding ({s['pos']})", f"N × {n} × {dd}"], None),
        ("decoder", [*decoder, "then LayerNorm", f"N × {n} × {dd}"], "all"),
        *_head_boxes(s, dd, "decoder"),
    ]
    return [("encoder: visible tokens only", down), (f"decoder: all {n} positions", up)]


def _box_height(lines, tokens) -> float:
    return 0.16 + ARCH_LINE * len(lines) + (0.24 if tokens else 0.0)


def _token_strip(ax, x_centre: float, y: float, tokens: str):
    """A row of :data:`TOKEN_EXAMPLE`'s tokens: ``all`` with the hidden ones as mask tokens
    (:data:`HIDDEN_COLOUR`), ``visible`` the visible ones alone."""
    colours = [HIDDEN_COLOUR if hidden else TOKEN_COLOUR for hidden in TOKEN_EXAMPLE]
    if tokens == "visible":
        colours = [c for c in colours if c == TOKEN_COLOUR]
    size, step = 0.13, 0.17
    left = x_centre - (step * len(colours) - (step - size)) / 2
    for i, colour in enumerate(colours):
        ax.add_patch(
            Rectangle((left + i * step, y), size, size, facecolor=colour, edgecolor="0.3", lw=0.5)
        )


def _draw_box(ax, x: float, y: float, height: float, kind: str, lines, tokens):
    ax.add_patch(
        FancyBboxPatch(
            (x, y), ARCH_BOX_WIDTH, height, boxstyle="round,pad=0,rounding_size=0.06",
            facecolor=ARCH_COLOURS[kind], edgecolor="0.35", lw=0.8,
        )
    )  # fmt: skip
    ax.text(
        x + ARCH_BOX_WIDTH / 2, y + height - 0.08, "\n".join(lines),
        ha="center", va="top", fontsize=ARCH_FONT, linespacing=1.3,
    )  # fmt: skip
    if tokens:
        _token_strip(ax, x + ARCH_BOX_WIDTH / 2, y + 0.08, tokens)


def _arrow(ax, start, end):
    ax.annotate(
        "", xy=end, xytext=start,
        arrowprops=dict(arrowstyle="-|>", color="0.3", lw=1.2, shrinkA=0, shrinkB=0),
    )  # fmt: skip


def _draw_architecture(columns, title: str, n_tokens: int):
    """Two columns of boxes ``(header, [(kind, lines, tokens), ...])`` on a figure whose data
    units are inches: the first runs down, the second up, their bottom boxes side by side and
    joined by an arrow."""
    columns = [
        (head, [(k, [_wrap(t, ARCH_WRAP) for t in lines], tok) for k, lines, tok in boxes])
        for head, boxes in columns
    ]
    heights = [
        [_box_height("\n".join(b[1]).split("\n"), b[2]) for b in boxes] for _, boxes in columns
    ]
    stacks = [sum(h) + ARCH_GAP * (len(h) - 1) for h in heights]
    title = _wrap(title, 80)
    bottom, top = 0.75, 0.45 + 0.2 * (title.count("\n") + 1)
    width, height = 2 * ARCH_BOX_WIDTH + 1.3, bottom + max(stacks) + top
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    ends = []
    for i, ((header, boxes), hs) in enumerate(zip(columns, heights)):
        x = 0.3 + i * (ARCH_BOX_WIDTH + 0.7)
        centre = x + ARCH_BOX_WIDTH / 2
        ys = [bottom + sum(hs[:j]) + ARCH_GAP * j for j in range(len(hs))]  # upwards
        if i == 0:  # the first column runs down: its first box on top
            ys = [bottom + sum(hs[j + 1 :]) + ARCH_GAP * (len(hs) - 1 - j) for j in range(len(hs))]
        for (kind, lines, tokens), y, h in zip(boxes, ys, hs):
            _draw_box(ax, x, y, h, kind, "\n".join(lines).split("\n"), tokens)
        for j in range(len(hs) - 1):
            start = (centre, ys[j]) if i == 0 else (centre, ys[j] + hs[j])
            end = (centre, ys[j + 1] + hs[j + 1]) if i == 0 else (centre, ys[j + 1])
            _arrow(ax, start, end)
        ax.text(centre, bottom + stacks[i] + 0.1, header, ha="center", va="bottom",
                fontsize=ARCH_FONT + 1, fontweight="bold")  # fmt: skip
        ends.append((x, hs[-1] if i == 0 else hs[0]))
    join = bottom + min(h for _, h in ends) / 2
    _arrow(ax, (ends[0][0] + ARCH_BOX_WIDTH, join), (ends[1][0], join))
    ax.text(width / 2, height - 0.12, title, ha="center", va="top", fontsize=ARCH_FONT + 2)
    ax.legend(
        handles=[
            Patch(facecolor=TOKEN_COLOUR, edgecolor="0.3", label="token of a visible patch"),
            Patch(facecolor=HIDDEN_COLOUR, edgecolor="0.3", label="mask token (hidden patch)"),
        ],
        loc="lower center",
        bbox_to_anchor=(0.5, 0.01),
        ncol=2,
        frameon=False,
        fontsize=ARCH_FONT,
        title=f"token strips: 8 of the {n_tokens} tokens",
        title_fontsize=ARCH_FONT,
    )
    return fig
