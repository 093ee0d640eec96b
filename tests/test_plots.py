import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

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
    with pytest.raises(ValueError, match="name must be a plain file name"):
        plots.save_fig(fig, "../escape")
    plt.close(fig)


def test_reconstruction_grid_layout(images):
    m = masking.make_mask("random", 0.5, n_images=5, grid=(8, 8), seed=0)
    fig = plots.plot_reconstructions(images, m, {"vit": images, "cnn": images}, 4, n=3)
    axes = np.array(fig.axes).reshape(3, -1)
    assert axes.shape == (3, 5)  # original | masked | vit | cnn | error
    assert [a.get_title() for a in axes[0]] == ["original", "masked (50%)", "vit", "cnn", "|error| vit"]
    # the masked panel shows hidden patches in grey
    shown = axes[0, 1].images[0].get_array()
    pix = np.repeat(np.repeat(m[0].reshape(8, 8), 4, 0), 4, 1)
    assert np.all(np.asarray(shown)[pix] == plots.MASK_GREY)
    plt.close(fig)


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
    masks = {s: masking.make_mask(s, 0.5, images=images, patch_size=4, seed=0) for s in masking.STRATEGIES}
    fig = plots.plot_masks(images, masks, 4, n=2)
    assert len(fig.axes) == 2 * 5
    plt.close(fig)
    pattern = {s: {r: masking.make_mask(s, r, images=images, patch_size=4)[0] for r in (0.3, 0.7)} for s in masks}
    fig = plots.plot_mask_patterns(pattern, (8, 8))
    assert len(fig.axes) == 8 and fig.axes[0].get_ylabel() == "random"
    plt.close(fig)


def test_other_pictures(images):
    for fig in (
        plots.plot_images(images, labels=[0, 1, 0, 1, 0], class_names=["a", "b"], n=5, cols=3),
        plots.plot_patch_grid(images[0], 4),
        plots.plot_patches(np.zeros((64, 48), np.float32), 4),
        plots.plot_history({"loss": [3, 2, 1], "val_loss": [3, 2.5, 2]}),
    ):
        assert fig.axes
        plt.close(fig)


def test_plots_check_their_inputs(images):
    with pytest.raises(ValueError, match="rank 4"):
        plots.plot_images(images[0])
    with pytest.raises(ValueError, match="mask has 2 rows but there are 5 images"):
        plots.plot_reconstructions(images, np.zeros((2, 64), bool), images, 4)


def test_histories_draw_training_and_validation_per_run():
    fig = plots.plot_histories({"vit": {"loss": [0.3, 0.2, 0.1], "val_loss": [0.35, 0.25, 0.2]},
                                "mae": {"loss": [0.4, 0.3]}})
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["vit (training)", "vit (validation)", "mae (training)"]
    assert list(ax.get_lines()[1].get_ydata()) == [0.35, 0.25, 0.2]
    assert ax.get_lines()[0].get_color() == ax.get_lines()[1].get_color() != ax.get_lines()[2].get_color()
    plt.close(fig)


def test_patch_scores_picture(images):
    scores = np.arange(len(images) * 64, dtype=float).reshape(len(images), 64)
    fig = plots.plot_patch_scores(images, scores, 4, n=3)
    assert len(fig.axes) == 6
    np.testing.assert_array_equal(fig.axes[3].images[0].get_array(), scores[0].reshape(8, 8))
    plt.close(fig)
    with pytest.raises(ValueError, match=r"scores must have shape \(N, L\)"):
        plots.plot_patch_scores(images, scores[:, :10], 4)
