import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from _refused import refused
from matplotlib import patheffects
from matplotlib.patches import FancyBboxPatch

from helpers import masking, plots


@pytest.fixture
def images():
    return np.random.default_rng(0).random((5, 32, 32, 3), dtype=np.float32)


def test_figures_folder_comes_from_the_package_not_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("HELPERS_FIGURES_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert plots.figures_dir() == plots.FIGURES_DIR
    assert (plots.FIGURES_DIR.parent / "helpers" / "plots.py").exists()


def test_save_fig_writes_png_closes_and_leaves_no_temp(monkeypatch, tmp_path):
    monkeypatch.setenv("HELPERS_FIGURES_DIR", str(tmp_path / "figs"))
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    path = plots.save_fig(fig, "line")
    assert path == tmp_path / "figs" / "line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in path.parent.iterdir()] == ["line.png"]
    # fixed dpi: a 2x1 inch figure at 120 dpi is about 240 pixels wide (tight bbox trims a little)
    width = int.from_bytes(path.read_bytes()[16:20], "big")
    assert 150 <= width <= 260


def test_save_fig_rejects_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("HELPERS_FIGURES_DIR", str(tmp_path))
    fig = plt.figure()
    with refused("name", "../escape"):
        plots.save_fig(fig, "../escape")
    plt.close(fig)


def test_reconstruction_grid_layout(images):
    m = masking.make_mask("random", 0.5, n_images=5, grid=(8, 8), seed=0)
    fig = plots.plot_reconstructions(images, m, {"vit": images, "cnn": images}, 4, n=3)
    *panels, cbar_ax = fig.axes  # the last axes is the colour bar of the error maps
    axes = np.array(panels).reshape(3, -1)
    assert axes.shape == (3, 5)  # original | masked | vit | cnn | error
    assert [a.get_title() for a in axes[0]] == [
        "original",
        "masked (50%)",
        "vit",
        "cnn",
        "|error| vit",
    ]
    # the masked panel shows hidden patches in HIDDEN_COLOUR, visible ones unchanged
    shown = np.asarray(axes[0, 1].images[0].get_array())
    pix = np.repeat(np.repeat(m[0].reshape(8, 8), 4, 0), 4, 1)
    np.testing.assert_array_equal(
        shown[pix], np.broadcast_to(np.float32(plots.HIDDEN_COLOUR), shown[pix].shape)
    )
    np.testing.assert_array_equal(shown[~pix], images[0][~pix])
    # and the legend names the colour
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["hidden patch"]
    assert tuple(legend.get_patches()[0].get_facecolor()[:3]) == plots.HIDDEN_COLOUR
    plt.close(fig)


def test_error_maps_have_a_labelled_colour_bar(images):
    m = masking.make_mask("random", 0.5, n_images=5, grid=(8, 8), seed=0)
    fig = plots.plot_reconstructions(images, m, np.zeros_like(images), 4, n=2)
    cbar_ax = fig.axes[-1]
    assert cbar_ax.get_ylabel() == "absolute error"
    error_images = [fig.axes[3].images[0], fig.axes[7].images[0]]  # last column of rows 0 and 1
    assert error_images[-1].colorbar is not None and error_images[-1].colorbar.ax is cbar_ax
    assert error_images[0].get_clim() == error_images[1].get_clim()  # one scale for the column
    # it stands right of the error column, as tall as the rows
    err0, err1, cb = fig.axes[3].get_position(), fig.axes[7].get_position(), cbar_ax.get_position()
    assert cb.x0 > err0.x1 and np.isclose(cb.y1, err0.y1) and np.isclose(cb.y0, err1.y0)
    plt.close(fig)
    no_map = plots.plot_reconstructions(images, m, images, 4, n=2, error_map=False)
    assert len(no_map.axes) == 2 * 3 and all(a.images[0].colorbar is None for a in no_map.axes)
    plt.close(no_map)


def test_hidden_patches_have_one_colour_in_every_picture(images):
    m = masking.make_mask("rows", 0.5, n_images=5, grid=(8, 8), seed=0)
    pix = np.repeat(np.repeat(m[:2].reshape(2, 8, 8), 4, 1), 4, 2)
    colour = np.float32(plots.HIDDEN_COLOUR)
    fig = plots.plot_masks(images, {"rows": m}, 4, n=2)
    for r in range(2):
        shown = np.asarray(fig.axes[2 * r + 1].images[0].get_array())
        assert np.all(shown[pix[r]] == colour) and np.all(shown[~pix[r]] == images[r][~pix[r]])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["hidden patch"]
    plt.close(fig)
    fig = plots.plot_mask_patterns({"rows": {"50%": m[0]}}, (8, 8))
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert np.all(shown[m[0].reshape(8, 8)] == colour) and np.all(shown[~m[0].reshape(8, 8)] == 1.0)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["hidden patch", "visible patch"]
    plt.close(fig)
    # grey-scale images become RGB so that the colour shows
    grey = images[:2, ..., :1]
    out = plots.hide_patches(grey, m[:2], 4)
    assert out.shape == (2, 32, 32, 3) and np.all(out[pix] == colour)
    np.testing.assert_array_equal(out[~pix], np.repeat(grey, 3, -1)[~pix])


def test_reconstructions_are_shown_as_composites(images):
    m = masking.make_mask("random", 0.5, n_images=5, grid=(8, 8), seed=0)
    zeros = np.zeros_like(images)
    pix = np.repeat(np.repeat(m[0].reshape(8, 8), 4, 0), 4, 1)
    fig = plots.plot_reconstructions(images, m, zeros, 4, n=2)
    shown = np.asarray(fig.axes[2].images[0].get_array())
    np.testing.assert_array_equal(shown[~pix], images[0][~pix])  # visible pixels from the original
    assert np.all(shown[pix] == 0)  # hidden pixels from the prediction
    err = np.asarray(fig.axes[3].images[0].get_array())
    assert np.all(err[~pix] == 0) and np.allclose(err[pix], images[0][pix].mean(axis=-1))
    plt.close(fig)
    raw = plots.plot_reconstructions(images, m, zeros, 4, n=2, composite=False)
    assert np.all(np.asarray(raw.axes[2].images[0].get_array()) == 0)
    plt.close(raw)


def test_mask_pictures(images):
    masks = {
        s: masking.make_mask(s, 0.5, images=images, patch_size=4, seed=0)
        for s in masking.STRATEGIES
    }
    fig = plots.plot_masks(images, masks, 4, n=2)
    assert len(fig.axes) == 2 * 5
    plt.close(fig)
    pattern = {
        s: {r: masking.make_mask(s, r, images=images, patch_size=4)[0] for r in (0.3, 0.7)}
        for s in masks
    }
    fig = plots.plot_mask_patterns(pattern, (8, 8))
    assert len(fig.axes) == 8 and fig.axes[0].get_ylabel() == "random"
    plt.close(fig)


def test_other_pictures(images):
    for fig in (
        plots.plot_images(images, labels=[0, 1, 0, 1, 0], class_names=["a", "b"], n=5, cols=3),
        plots.plot_patch_grid(images[0], 4),
        plots.plot_patches(np.zeros((64, 48), np.float32), 4),
    ):
        assert fig.axes
        plt.close(fig)


def test_plots_check_their_inputs(images):
    with refused("images", images[0].shape):
        plots.plot_images(images[0])
    with refused("mask", (2, 64)):
        plots.plot_reconstructions(images, np.zeros((2, 64), bool), images, 4)


def test_histories_draw_training_and_validation_per_run():
    fig = plots.plot_histories(
        {
            "vit": {"loss": [0.3, 0.2, 0.1], "val_loss": [0.35, 0.25, 0.2]},
            "mae": {"loss": [0.4, 0.3]},
        }
    )
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["vit (training)", "vit (validation)", "mae (training)"]
    assert list(ax.get_lines()[1].get_ydata()) == [0.35, 0.25, 0.2]
    assert (
        ax.get_lines()[0].get_color()
        == ax.get_lines()[1].get_color()
        != ax.get_lines()[2].get_color()
    )
    assert ax.get_ylabel() == "loss (MSE) (log scale)"
    plt.close(fig)


def test_histories_draw_psnr_loss_runs_as_psnr_on_their_own_axis():
    mse = {"loss": [0.03, 0.02], "val_loss": [0.025, 0.02]}
    psnr = {"loss": [-17.0, -18.5], "val_loss": [-17.5, -19.0]}  # minus the mean PSNR, dB
    fig = plots.plot_histories({"mae": mse, "vit": psnr})
    left, right = fig.axes
    assert left.get_yscale() == "log" and left.get_ylabel() == "loss (MSE) (log scale)"
    assert right.get_yscale() == "linear" and "PSNR" in right.get_ylabel()
    assert list(right.get_lines()[1].get_ydata()) == [17.5, 19.0]
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    assert legend == ["mae (training)", "mae (validation)", "vit (training)", "vit (validation)"]
    plt.close(fig)
    fig = plots.plot_histories({"vit": psnr})  # PSNR runs alone: one linear axis
    assert len(fig.axes) == 1 and fig.axes[0].get_yscale() == "linear"
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == [17.0, 18.5]
    plt.close(fig)
    fig = plots.plot_history(psnr)
    assert fig.axes[0].get_ylabel() == "loss (minus the mean PSNR, dB)"
    plt.close(fig)


def _epoch_ticks(ax):
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


@pytest.mark.parametrize("epochs", [2, 3, 7, 40])
def test_training_curves_count_whole_epochs_from_one(epochs):
    history = {
        "loss": list(np.linspace(1, 0.1, epochs)),
        "val_loss": list(np.linspace(1.2, 0.3, epochs)),
    }
    for fig in (plots.plot_history(history), plots.plot_histories({"vit": history})):
        ax = fig.axes[0]
        assert ax.get_xlabel() == "epoch"
        assert list(ax.get_lines()[0].get_xdata()) == list(range(1, epochs + 1))
        ticks = _epoch_ticks(ax)
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
        assert all(
            lab.get_text().lstrip("−-").isdigit() for lab in ax.get_xticklabels() if lab.get_text()
        )
        plt.close(fig)


def test_history_labels_in_words():
    fig = plots.plot_history(
        {"loss": [3, 2, 1], "val_loss": [3, 2.5, 2], "psnr": [10, 11, 12], "val_psnr": [9, 10, 11]},
        metrics=("loss", "psnr"),
    )
    loss_ax, psnr_ax = fig.axes
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == [
        "training loss",
        "validation loss",
    ]
    assert loss_ax.get_ylabel() == "loss (MSE)"
    assert [t.get_text() for t in psnr_ax.get_legend().get_texts()] == [
        "training whole-image PSNR (dB)",
        "validation whole-image PSNR (dB)",
    ]
    assert psnr_ax.get_ylabel() == "whole-image PSNR (dB)"
    plt.close(fig)


def test_metric_label_maps_keys_and_passes_unknown_ones_through():
    assert plots.metric_label("psnr_masked") == "masked-region PSNR (dB)"
    assert plots.metric_label("psnr") == "whole-image PSNR (dB)"
    assert plots.metric_label("ssim") == "SSIM (whole image)"
    assert plots.metric_label("mse_masked") == "masked-region MSE"
    assert plots.metric_label("loss") == "training loss"
    assert plots.metric_label("val_loss") == "validation loss"
    assert plots.metric_label("psnr_masked_mean") == "masked-region PSNR (dB)"
    assert plots.metric_label("val_ssim") == "validation SSIM (whole image)"
    for unknown in ("accuracy", "val_accuracy", "psnr_masked_std", ""):
        assert plots.metric_label(unknown) == unknown
    assert all(plots.metric_label(k) == v for k, v in plots.METRIC_LABELS.items())


def test_metric_vs_ratio_names_the_metric_in_words():
    rows = [
        dict(strategy="random", predictor="vit", ratio=r, ssim_mean=0.9 - r / 2, ssim_std=0.01)
        for r in (0.3, 0.7)
    ]
    fig = plots.plot_metric_vs_ratio(rows, "ssim")
    assert fig.axes[0].get_ylabel() == "SSIM (whole image)"
    plt.close(fig)


def test_metric_vs_ratio_keeps_predictors_with_equal_scores_apart():
    rows = [
        dict(strategy="random", predictor=p, ratio=r, psnr_masked_mean=20 - r, psnr_masked_std=3)
        for p in ("vit", "mae", "cnn")
        for r in (0.3, 0.5)
    ]
    fig = plots.plot_metric_vs_ratio(rows)
    bars = fig.axes[0].containers  # one errorbar container per predictor
    assert [b.get_label() for b in bars] == ["mask-token ViT", "MAE-style ViT", "CNN autoencoder"]
    xs = [tuple(b.lines[0].get_xdata()) for b in bars]
    d = plots.RATIO_DODGE
    assert d > 0 and np.allclose(xs, [(30 - d, 50 - d), (30, 50), (30 + d, 50 + d)])
    assert [tuple(b.lines[0].get_ydata()) for b in bars] == [(19.7, 19.5)] * 3
    plt.close(fig)


def test_metric_vs_ratio_labels_lines_with_the_runs_names():
    rows = [
        dict(strategy="random", predictor=p, ratio=r, psnr_masked_mean=20 - r, psnr_masked_std=3)
        for p in ("vit", "biharmonic")
        for r in (0.3, 0.5)
    ]
    fig = plots.plot_metric_vs_ratio(rows, names={"vit": "mask-token ViT (course checkpoint)"})
    labels = [b.get_label() for b in fig.axes[0].containers]
    assert labels == ["mask-token ViT (course checkpoint)", "biharmonic inpainting"]
    plt.close(fig)


def test_matrix_axes_and_title_say_which_way_round():
    fig = plots.plot_matrix(
        np.array([[20.0, 12.0], [15.0, 18.0]]), ["random", "rows"], title="ViT at 50%"
    )
    ax, cbar_ax = fig.axes
    assert ax.get_ylabel() == "trained on" and ax.get_xlabel() == "evaluated on"
    assert ax.get_title() == "ViT at 50%\nrows: trained on · columns: evaluated on"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["random", "rows"]
    assert cbar_ax.get_ylabel() == "masked-region PSNR (dB)"
    # every cell carries its value, at its place
    assert [(t.get_text(), t.get_position()) for t in ax.texts] == [
        ("20.0", (0, 0)),
        ("12.0", (1, 0)),
        ("15.0", (0, 1)),
        ("18.0", (1, 1)),
    ]
    # a wide table keeps its own range
    assert ax.images[0].get_clim() == (12.0, 20.0)
    plt.close(fig)


def test_matrix_colours_do_not_blow_up_noise():
    table = 22.0 + np.array([[0.05, -0.05, 0.0], [0.02, 0.08, -0.1], [0.0, 0.01, -0.01]])
    fig = plots.plot_matrix(table, ["random", "rows", "columns"])
    vmin, vmax = fig.axes[0].images[0].get_clim()
    assert np.isclose(vmax - vmin, 3.0) and np.isclose((vmin + vmax) / 2, table.mean())
    # so the cells are nearly one colour and their text one colour
    rgba = fig.axes[0].images[0].to_rgba(table)
    assert np.ptp(rgba[..., :3].reshape(-1, 3), axis=0).max() < 0.1
    assert len({t.get_color() for t in fig.axes[0].texts}) == 1
    plt.close(fig)
    # SSIM has its own minimum span and format; a custom span is honoured
    fig = plots.plot_matrix(np.full((2, 2), 0.8), ["a", "b"], metric="ssim")
    assert np.isclose(np.subtract(*fig.axes[0].images[0].get_clim()[::-1]), 0.05)
    assert (
        fig.axes[0].texts[0].get_text() == "0.800"
        and fig.axes[1].get_ylabel() == "SSIM (whole image)"
    )
    plt.close(fig)
    fig = plots.plot_matrix(table, ["random", "rows", "columns"], min_span=1.0)
    assert np.isclose(np.subtract(*fig.axes[0].images[0].get_clim()[::-1]), 1.0)
    plt.close(fig)
    # one value far from the mean: the window moves to hold every value, and stays 3 dB wide
    lopsided = np.array([[20.0, 20.0], [20.0, 22.9]])
    fig = plots.plot_matrix(lopsided, ["a", "b"])
    vmin, vmax = fig.axes[0].images[0].get_clim()
    assert np.isclose(vmax - vmin, 3.0) and vmin <= 20.0 and vmax >= 22.9
    plt.close(fig)


def test_patch_scores_picture(images):
    scores = np.arange(len(images) * 64, dtype=float).reshape(len(images), 64)
    scores[1] *= 1000.0  # another image, another scale: each is shown relative to its largest score
    fig = plots.plot_patch_scores(images, scores, 4, n=3)
    *panels, cbar_ax = fig.axes
    assert len(panels) == 6
    np.testing.assert_allclose(
        panels[3].images[0].get_array(), scores[0].reshape(8, 8) / scores[0].max()
    )
    np.testing.assert_allclose(
        panels[4].images[0].get_array(), scores[1].reshape(8, 8) / scores[1].max()
    )
    assert all(p.images[0].get_clim() == (0, 1) for p in panels[3:])
    assert cbar_ax.get_ylabel() == "gradient importance (relative)"
    assert panels[5].images[0].colorbar.ax is cbar_ax
    plt.close(fig)
    np.testing.assert_allclose(plots.relative_scores([-1.0, 0.0, 3.0]), [0.0, 0.25, 1.0])
    np.testing.assert_array_equal(plots.relative_scores(np.zeros(4)), np.zeros(4))
    with refused("scores", (images.shape[0], 10)):
        plots.plot_patch_scores(images, scores[:, :10], 4)


def test_every_predictor_of_the_sweep_has_its_own_colour_and_a_label_in_words():
    from helpers.tools.experiments import PREDICTORS

    styles = [plots.PREDICTOR_STYLE[p] for p in PREDICTORS]
    assert len({s["color"] for s in styles}) == len(PREDICTORS)
    assert all("_" not in s["label"] for s in styles)


def _overlaps(fig, texts) -> list:
    """The pairs of non-empty ``texts`` whose boxes on the drawn ``fig`` overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_text()]
    return [
        (a, b)
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if box_a.overlaps(box_b)
    ]


def test_error_colour_scale_follows_the_shown_errors(images):
    m = masking.make_mask("random", 0.5, n_images=5, grid=(8, 8), seed=0)
    hidden = np.repeat(np.repeat(m[:2].reshape(2, 8, 8), 4, 1), 4, 2)
    close, far = images * 0.9, images * 0.5  # errors 0.1 and 0.5 of each pixel value
    fig = plots.plot_reconstructions(
        images, m, {"close": close, "far": far}, 4, n=2, error_map="all"
    )
    *panels, cbar_ax = fig.axes
    maps = [a.images[0] for a in np.array(panels).reshape(2, -1)[:, -2:].flat]
    errors = np.abs(images[:2] - np.stack([close[:2], far[:2]])).mean(-1)
    vmax = np.percentile(errors[:, hidden], 99)  # over both predictors, hidden pixels only
    assert all(np.allclose(im.get_clim(), (0, vmax)) for im in maps)  # one scale for every map
    assert vmax < 0.5 and cbar_ax.get_ylabel() == "absolute error"
    titles = [a.get_title() for a in np.array(panels).reshape(2, -1)[0, -2:]]
    assert titles == ["|error| close", "|error| far"]
    plt.close(fig)
    # a predictor ten times closer gets a scale ten times finer, so its errors still show
    fig = plots.plot_reconstructions(images, m, images * 0.99, 4, n=2)
    top = fig.axes[3].images[0].get_clim()[1]
    assert (
        np.isclose(top, np.percentile(0.01 * images[:2].mean(-1)[hidden], 99)) and top < vmax / 10
    )
    plt.close(fig)
    fig = plots.plot_reconstructions(images, m, far, 4, n=2, error_max=0.25)
    assert fig.axes[3].images[0].get_clim() == (0, 0.25)
    plt.close(fig)
    assert plots.error_limit([np.zeros((2, 2))]) == 1e-3  # a perfect prediction still has a scale


def test_long_column_titles_do_not_overlap(images):
    m = masking.make_mask("random", 0.5, n_images=5, grid=(8, 8), seed=0)
    names = [
        "ViT refining biharmonic (25.31 dB)",
        "CNN autoencoder (24.02 dB)",
        "adversarial autoencoder (23.50 dB)",
        "mean colour (learned nothing)",
        "MAE-style ViT, 75% hidden",
        "biharmonic inpainting\n22.60 dB",
    ]
    fig = plots.plot_reconstructions(images, m, {k: images for k in names}, 4, n=2, title="t")
    top = fig.axes[: 2 + len(names) + 1]  # the first row
    assert len(fig.axes) == 2 * 9 + 1
    assert _overlaps(fig, [a.title for a in top] + [fig._suptitle]) == []
    assert top[2].get_title() == "ViT refining\nbiharmonic\n(25.31 dB)"  # wrapped, words whole
    assert top[7].get_title() == "biharmonic\ninpainting\n22.60 dB"  # its own breaks kept
    plt.close(fig)


def test_patch_numbers_have_a_dark_outline(images):
    light = np.full((32, 32, 3), 0.95, np.float32)
    fig = plots.plot_patch_grid(light, 4)
    texts = fig.axes[0].texts
    assert [t.get_text() for t in texts] == [str(i) for i in range(64)]
    for t in texts:
        assert t.get_color() == "white" and t.get_fontsize() >= 7
        (stroke,) = t.get_path_effects()
        assert isinstance(stroke, patheffects.withStroke)
        assert stroke._gc["foreground"] == "black" and stroke._gc["linewidth"] >= 1
    plt.close(fig)


def test_training_curves_give_each_loss_its_own_axis():
    histories = {
        "mask-token ViT": {
            "loss": [0.04, 0.03],
            "val_loss": [0.05, 0.04],
            "val_psnr_masked": [18, 19],
        },
        "MAE-style ViT": {
            "loss": [-15.0, -16.0],
            "val_loss": [-14.5, -15.5],
            "val_psnr_masked": [17, 19.5],
        },
    }
    losses = {
        "mask-token ViT": "MSE on the hidden patches",
        "MAE-style ViT": "minus the PSNR on every patch",
    }
    fig = plots.plot_training_curves(histories, losses, title="training")
    vit, mae, shared = fig.axes
    assert [vit.get_title(), mae.get_title(), shared.get_title()] == [
        "mask-token ViT",
        "MAE-style ViT",
        "all models: the same measure",
    ]
    assert vit.get_ylabel() == "loss: MSE on the hidden patches" and vit.get_yscale() == "log"
    assert mae.get_ylabel().replace("\n", " ") == "loss: minus the PSNR on every patch"
    assert mae.get_yscale() == "linear"
    for ax, colour in ((vit, "C0"), (mae, "C1")):  # one model a panel: training and validation
        assert [line.get_label() for line in ax.get_lines()] == ["training", "validation"]
        assert {line.get_color() for line in ax.get_lines()} == {colour}
    assert list(mae.get_lines()[1].get_ydata()) == [-14.5, -15.5]
    assert shared.get_ylabel() == "validation masked-region PSNR (dB)"
    assert [line.get_label() for line in shared.get_lines()] == list(histories)
    assert [line.get_color() for line in shared.get_lines()] == ["C0", "C1"]
    texts = [t for ax in fig.axes for t in (ax.title, ax.yaxis.label, *ax.get_yticklabels())]
    assert _overlaps(fig, texts) == []
    plt.close(fig)
    # no common measure in the histories (as train() writes them): the loss panels alone
    fig = plots.plot_training_curves({k: {"loss": h["loss"]} for k, h in histories.items()})
    assert len(fig.axes) == 2 and fig.axes[0].get_ylabel() == "loss (MSE)"
    assert fig.axes[1].get_ylabel() == "loss (minus the mean PSNR, dB)"
    plt.close(fig)
    fig = plots.plot_training_curves(histories, psnr_key="val_psnr")
    assert len(fig.axes) == 2
    plt.close(fig)
    with refused("histories", {}):
        plots.plot_training_curves({})


def test_probe_axis_holds_the_reference_predictors():
    cells = [
        dict(strategy="random", ratio=0.5, psnr=23.0, accuracy=0.40),
        dict(strategy="rows", ratio=0.75, psnr=22.8, accuracy=0.35),
    ]
    reference = {"mean colour": 22.3, "biharmonic": 28.0}
    fig = plots.plot_probe_vs_psnr(cells, {"pixels": 0.38}, 0.1, "t", reference=reference)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert lo < 22.3 and hi > 28.0
    vertical = [
        line.get_xdata()[0] for line in ax.lines if line.get_xdata()[0] == line.get_xdata()[1]
    ]
    assert vertical == [22.3, 28.0]
    labels = [t for t in ax.texts if t.get_text() in reference]
    assert [t.get_text() for t in labels] == ["mean colour", "biharmonic"]
    assert _overlaps(fig, [*ax.texts, ax.title]) == []
    plt.close(fig)
    fig = plots.plot_probe_vs_psnr(cells)  # without references: the points' own range
    assert fig.axes[0].get_xlim()[0] > 22.3
    plt.close(fig)


@pytest.fixture(scope="module")
def transformers():
    from helpers import models

    small = dict(embed_dim=16, depth=1, num_heads=2, mlp_dim=32)
    decoder = dict(decoder_dim=8, decoder_depth=2, decoder_num_heads=2, decoder_mlp_dim=16)
    return {
        "vit": models.build_model("vit", **small),
        "mae": models.build_model("mae", min_mask_ratio=0.75, **small, **decoder),
    }


@pytest.mark.parametrize("kind", ["vit", "mae"])
def test_architecture_figure_is_drawn_from_the_model(transformers, kind):
    model = transformers[kind]
    fig = plots.plot_architecture(model)
    (ax,) = fig.axes
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    texts = [t for t in ax.texts if t.get_text()]
    legend = ax.get_legend()
    words = " ".join(t.get_text().replace("\n", " ") for t in texts)
    assert "N × 32 × 32 × 3" in words and "N × 64 × 48" in words and "4 × 4 patches" in words
    assert "Transformer block × 1" in words and "2 heads, width 16, MLP 32" in words
    assert f"{model.count_params():,} weights" in words
    if kind == "vit":
        assert len(boxes) == 8 and "N × 64 × 16" in words and "mask token" in words
        assert "linear head 16 → 48" in words
    else:  # the encoder sees 16 of 64 tokens, the decoder all 64 at its own width
        assert len(boxes) == 11 and "N × 16 × 16" in words and "16 of 64" in words
        assert "linear 16 → 8" in words and "decoder block × 2" in words and "N × 64 × 8" in words
        assert "linear head 8 → 48" in words
    assert [t.get_text() for t in legend.get_texts()] == [
        "token of a visible patch",
        "mask token (hidden patch)",
    ]
    assert tuple(legend.get_patches()[1].get_facecolor()[:3]) == plots.HIDDEN_COLOUR
    # readable at 100 dpi: at least 8 pt, no text over another, each box's text inside its box
    fig.set_dpi(100)
    all_texts = [*texts, *legend.get_texts(), legend.get_title()]
    assert min(t.get_fontsize() for t in all_texts) >= 8
    assert _overlaps(fig, all_texts) == []
    renderer = fig.canvas.get_renderer()
    for box in boxes:
        (text,) = [t for t in texts if box.contains_point(ax.transData.transform(t.get_position()))]
        outer, inner = box.get_window_extent(renderer), text.get_window_extent(renderer)
        assert outer.x0 < inner.x0 < inner.x1 < outer.x1
        assert outer.y0 < inner.y0 < inner.y1 < outer.y1
    plt.close(fig)


def test_architecture_figure_refuses_other_models():
    with refused("model", "object"):
        plots.plot_architecture(object())
