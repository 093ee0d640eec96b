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
    assert [a.get_title() for a in axes[0]] == ["original", "masked (50%)", "vit", "cnn", "|error|"]
    # the masked panel shows hidden patches in grey
    shown = axes[0, 1].images[0].get_array()
    pix = np.repeat(np.repeat(m[0].reshape(8, 8), 4, 0), 4, 1)
    assert np.all(np.asarray(shown)[pix] == plots.MASK_GREY)
    plt.close(fig)


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
