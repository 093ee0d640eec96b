"""Pictures: reconstruction grids, mask patterns, training curves, and one ``save_fig``.

Figures are written as PNG into ``figures/`` at the top of the project (found from this
package's location, not the working directory). ``HELPERS_FIGURES_DIR`` overrides the folder,
which ``python -m helpers run`` uses to keep figures of other profiles apart.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ._checks import check_images, check_mask
from .masking import apply_mask
from .metrics import composite as composite_images
from .patches import grid_shape

FIGURES_DIR = Path(__file__).resolve().parent.parent / "figures"
DPI = 120
MASK_GREY = 0.5


def figures_dir() -> Path:
    """The folder :func:`save_fig` writes to."""
    return Path(os.environ.get("HELPERS_FIGURES_DIR") or FIGURES_DIR).resolve()


def save_fig(fig, name: str, dpi: int = DPI) -> Path:
    """Write ``fig`` to ``figures/<name>.png`` (atomically) and close it. Returns the path."""
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"name must be a plain file name without folders, got {name!r}")
    folder = figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png", metadata={"Software": None})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        plt.close(fig)
    return path


def show_and_save(fig, name: str, dpi: int = DPI) -> Path:
    """Show ``fig`` in the notebook (once), then :func:`save_fig` it. Returns the path."""
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(fig)
    except ImportError:
        pass
    return save_fig(fig, name, dpi=dpi)


def _show(ax, img, title=None):
    ax.imshow(np.clip(img, 0, 1).squeeze(), cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
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
    """One image with the patch grid drawn over it and each patch numbered."""
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
                ax.text(c * patch_size + patch_size / 2 - 0.5, r * patch_size + patch_size / 2 - 0.5, str(r * gw + c),
                        ha="center", va="center", fontsize=6, color="yellow")
    return fig


def plot_patches(patches, patch_size: int, channels: int = 3, title=None):
    """The patches of one image laid out as a sequence of tokens (L small tiles in a row-major grid)."""
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
    fig, axes = plt.subplots(n, len(labels) + 1, figsize=(1.9 * (len(labels) + 1), 2.0 * n), squeeze=False)
    for r in range(n):
        _show(axes[r, 0], images[r], "original" if r == 0 else None)
        for c, label in enumerate(labels):
            masked = apply_mask(images[r : r + 1], masks[label][r : r + 1], patch_size, fill=MASK_GREY)[0]
            frac = f"{label}\n{masks[label][r].mean():.0%} hidden"
            _show(axes[r, c + 1], masked, frac if r == 0 else None)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_mask_patterns(masks: dict, grid, title=None):
    """The mask patterns themselves on the patch grid: rows of labels (e.g. strategies), columns of masks.

    ``masks`` maps a row label to a dict of column label -> one mask (L,).
    """
    gh, gw = int(grid[0]), int(grid[1])
    rows = list(masks)
    cols = list(next(iter(masks.values())))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.8 * len(cols), 1.9 * len(rows)), squeeze=False)
    for r, rl in enumerate(rows):
        for c, cl in enumerate(cols):
            m = np.asarray(masks[rl][cl], dtype=bool).reshape(gh, gw)
            ax = axes[r, c]
            ax.imshow(~m, cmap="gray", vmin=0, vmax=1.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(cl), fontsize=9)
            if c == 0:
                ax.set_ylabel(str(rl), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_reconstructions(
    original, mask, reconstructions, patch_size: int, n: int = 6, error_map: bool = True, title=None,
    composite: bool = True,
):
    """Rows of original | masked | reconstruction(s) | error map for ``n`` images.

    ``reconstructions`` is one array (N, H, W, C) or a dict label -> array, to compare predictors
    side by side. Masked patches are drawn grey. With ``composite`` (the default) each
    reconstruction is shown as it is scored: visible pixels from the original, hidden pixels from
    the prediction. The error map is |original - reconstruction| of the *first* reconstruction,
    averaged over channels (zero on the visible patches of a composite).
    """
    check_images(original, "original")
    check_mask(mask, n_images=original.shape[0])
    if not isinstance(reconstructions, dict):
        reconstructions = {"reconstructed": reconstructions}
    n = min(n, len(original))
    labels = list(reconstructions)
    if composite:
        reconstructions = {k: composite_images(original[:n], np.asarray(v[:n], dtype=original.dtype), mask[:n], patch_size)
                           for k, v in reconstructions.items()}
    ncols = 2 + len(labels) + int(error_map)
    fig, axes = plt.subplots(n, ncols, figsize=(1.7 * ncols, 1.8 * n), squeeze=False)
    masked = apply_mask(original[:n], mask[:n], patch_size, fill=MASK_GREY)
    for r in range(n):
        _show(axes[r, 0], original[r], "original" if r == 0 else None)
        _show(axes[r, 1], masked[r], f"masked ({mask[r].mean():.0%})" if r == 0 else None)
        for c, label in enumerate(labels):
            _show(axes[r, 2 + c], np.asarray(reconstructions[label][r]), label if r == 0 else None)
        if error_map:
            err = np.abs(original[r] - np.clip(reconstructions[labels[0]][r], 0, 1)).mean(axis=-1)
            ax = axes[r, -1]
            ax.imshow(err, cmap="magma", vmin=0, vmax=0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"|error| {labels[0]}" if len(labels) > 1 else "|error|", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: dict, metrics=("loss",), title=None):
    """Training curves from a Keras ``History.history`` dict (or a CSV log read into a dict)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for key in (metric, f"val_{metric}"):
            if key in history:
                ax.plot(np.arange(1, len(history[key]) + 1), history[key], label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


PREDICTOR_STYLE = {
    "vit": dict(color="tab:blue", marker="o", label="ViT (mask token)"),
    "mae": dict(color="tab:green", marker="s", label="ViT (MAE-style)"),
    "cnn": dict(color="tab:orange", marker="^", label="CNN autoencoder"),
    "biharmonic": dict(color="tab:gray", marker="x", label="biharmonic inpainting"),
}


def plot_metric_vs_ratio(rows, metric: str = "psnr_masked", strategies=None, title=None):
    """One panel per strategy: ``metric`` (mean with std bars) against the mask ratio, a line per predictor.

    ``rows`` are sweep rows (``helpers.experiments``) with ``{metric}_mean`` and ``{metric}_std``.
    """
    strategies = strategies or list(dict.fromkeys(r["strategy"] for r in rows))
    predictors = list(dict.fromkeys(r["predictor"] for r in rows))
    fig, axes = plt.subplots(1, len(strategies), figsize=(3.6 * len(strategies), 3.3), squeeze=False, sharey=True)
    for ax, strategy in zip(axes.flat, strategies):
        for p in predictors:
            pts = sorted((float(r["ratio"]), float(r[f"{metric}_mean"]), float(r[f"{metric}_std"]))
                         for r in rows if r["strategy"] == strategy and r["predictor"] == p)
            if not pts:
                continue
            x, y, e = map(np.array, zip(*pts))
            style = PREDICTOR_STYLE.get(p, dict(label=p))
            ax.errorbar(x * 100, y, yerr=e, capsize=3, **style)
        ax.set_title(strategy)
        ax.set_xlabel("mask ratio (%)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(metric.replace("_", " ").replace("psnr", "PSNR (dB)").replace("ssim", "SSIM"))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, -0.08), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_matrix(table, strategies, title=None, label: str = "masked-region PSNR (dB)"):
    """Heat map of a (train strategy x eval strategy) table with the values written in."""
    table = np.asarray(table, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * len(strategies) + 2.2, 1.0 * len(strategies) + 1.2))
    im = ax.imshow(table, cmap="viridis")
    ax.set_xticks(range(len(strategies)), labels=strategies)
    ax.set_yticks(range(len(strategies)), labels=strategies)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    finite = table[np.isfinite(table)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            if np.isfinite(table[i, j]):
                ax.text(j, i, f"{table[i, j]:.1f}", ha="center", va="center",
                        color="black" if table[i, j] > mid else "white", fontsize=9)
    fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_histories(histories: dict, metric: str = "loss", title=None, log_scale: bool = True):
    """Training curves of several runs on one axis: ``histories`` maps a label to a history dict
    (Keras ``History.history`` or :func:`helpers.training.read_history` columns); the training
    ``metric`` is drawn solid and ``val_{metric}`` dashed, in the same colour per run."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for i, (label, history) in enumerate(histories.items()):
        color = f"C{i}"
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = history.get(key)
            if values is not None and len(values):
                ax.plot(np.arange(1, len(values) + 1), values, style, color=color, marker="o", ms=3,
                        label=f"{label} ({'validation' if key.startswith('val_') else 'training'})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    if log_scale:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_patch_scores(images, scores, patch_size: int, n: int = 4, title=None):
    """Each image next to a heat map of one score per patch (e.g. gradient importance)."""
    check_images(images)
    scores = np.asarray(scores, dtype=float)
    gh, gw = images.shape[1] // patch_size, images.shape[2] // patch_size
    if scores.shape != (images.shape[0], gh * gw):
        raise ValueError(f"scores must have shape (N, L) = {(images.shape[0], gh * gw)}, got {scores.shape}")
    n = min(n, len(images))
    fig, axes = plt.subplots(2, n, figsize=(1.8 * n, 3.8), squeeze=False)
    for i in range(n):
        _show(axes[0, i], images[i], f"image {i}")
        ax = axes[1, i]
        ax.imshow(scores[i].reshape(gh, gw), cmap="inferno")
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            ax.set_ylabel("score per patch", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
