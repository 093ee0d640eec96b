import math

import numpy as np
import pytest
from _refused import refused

from helpers import masking
from helpers._checks import SettingTypeError

GRID = (8, 8)


@pytest.fixture(scope="module")
def sample_images():
    from helpers.data import make_sample_dataset

    (x, _), _, _ = make_sample_dataset(n_train=12, n_test=6, seed=0)
    return x


@pytest.mark.parametrize("strategy", ["random", "rows", "columns"])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7, 0.01, 0.99, 0.13])
def test_every_strategy_masks_k_patches(strategy, ratio):
    m = masking.make_mask(strategy, ratio, n_images=50, grid=GRID, seed=3)
    assert m.dtype == bool and m.shape == (50, 64)
    k = masking.n_masked(ratio, 64)
    assert (m.sum(axis=1) == k).all()


def test_n_masked_rounds_and_keeps_one_visible_and_one_hidden():
    assert masking.n_masked(0.3, 64) == 19
    assert masking.n_masked(0.5, 64) == 32
    assert masking.n_masked(0.7, 64) == 45
    assert masking.n_masked(0.001, 64) == 1
    assert masking.n_masked(0.999, 64) == 63


def test_importance_masks_k_highest_scores(sample_images):
    scores = masking.variance_score(sample_images, 4)
    m = masking.make_mask("importance", 0.3, images=sample_images, patch_size=4, seed=0)
    k = masking.n_masked(0.3, 64)
    assert (m.sum(axis=1) == k).all()
    for s, row in zip(scores, m):
        assert s[row].min() >= s[~row].max()


def test_importance_with_custom_score_function(sample_images):
    def left_first(images, patch_size):
        return np.tile(-np.arange(64, dtype=float), (len(images), 1))

    m = masking.make_mask(
        "importance", 0.25, images=sample_images, patch_size=4, score_fn=left_first
    )
    assert m[:, :16].all() and not m[:, 16:].any()


def test_importance_ties_are_broken_at_random_but_seeded():
    flat = np.full((4, 32, 32, 3), 0.5, dtype=np.float32)
    a = masking.make_mask("importance", 0.5, images=flat, patch_size=4, seed=1)
    b = masking.make_mask("importance", 0.5, images=flat, patch_size=4, seed=1)
    c = masking.make_mask("importance", 0.5, images=flat, patch_size=4, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert (a.sum(1) == 32).all()


def test_edge_score_prefers_edges():
    img = np.zeros((1, 32, 32, 3), dtype=np.float32)
    img[:, :, 18:] = 1.0  # a vertical edge between patch columns 4 and 5
    s = masking.edge_score(img, 4).reshape(8, 8)
    assert s[:, 4].min() > 0 and s[:, 0].max() == 0
    m = masking.make_mask("importance", 0.25, images=img, patch_size=4, score_fn="edge").reshape(
        8, 8
    )
    assert m[:, 4].all()


def test_rows_mask_whole_rows_then_a_contiguous_run():
    m = masking.make_mask("rows", 0.3, n_images=200, grid=GRID, seed=0).reshape(-1, 8, 8)
    k = masking.n_masked(0.3, 64)  # 19 = 2 full rows + a run of 3
    for g in m:
        per_row = g.sum(axis=1)
        assert sorted(per_row.tolist())[-3:] == [3, 8, 8]
        partial = g[per_row == 3][0]
        idx = np.flatnonzero(partial)
        assert idx.max() - idx.min() == 2  # contiguous
    assert (m.sum(axis=(1, 2)) == k).all()


def test_columns_mask_whole_columns():
    m = masking.make_mask("columns", 0.5, n_images=100, grid=GRID, seed=0).reshape(-1, 8, 8)
    per_col = m.sum(axis=1)
    assert ((per_col == 8) | (per_col == 0)).all()
    assert (per_col.sum(axis=1) == 32).all()


def test_non_square_grid():
    m = masking.make_mask("columns", 0.4, n_images=10, grid=(4, 6), seed=0).reshape(-1, 4, 6)
    k = masking.n_masked(0.4, 24)  # 10 = 2 full columns of 4 + a run of 2
    assert (m.sum(axis=(1, 2)) == k).all()
    assert ((m.sum(axis=1) == 4).sum(axis=1) == 2).all()


@pytest.mark.parametrize("strategy", ["random", "rows", "columns"])
def test_seeded_and_redrawable(strategy):
    a = masking.make_mask(strategy, 0.5, n_images=20, grid=GRID, seed=7)
    b = masking.make_mask(strategy, 0.5, n_images=20, grid=GRID, seed=7)
    assert np.array_equal(a, b)
    rng = np.random.default_rng(7)
    e1 = masking.make_mask(strategy, 0.5, n_images=20, grid=GRID, seed=rng)
    e2 = masking.make_mask(strategy, 0.5, n_images=20, grid=GRID, seed=rng)
    assert not np.array_equal(e1, e2)  # a Generator gives fresh masks at every call (every epoch)


@pytest.mark.parametrize("strategy", ["random", "rows", "columns"])
def test_masks_cover_the_grid_uniformly(strategy):
    m = masking.make_mask(strategy, 0.5, n_images=20000, grid=GRID, seed=0)
    freq = m.mean(axis=0)
    assert np.allclose(freq, 0.5, atol=0.03)


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, math.nan, 0.0, 1.0])
def test_bad_ratio_is_rejected(ratio):
    with refused("ratio", ratio) as info:
        masking.make_mask("random", ratio, n_images=2, grid=GRID)
    assert isinstance(info.value, ValueError) and not isinstance(info.value, TypeError)


@pytest.mark.parametrize("ratio", ["0.5", None, True])
def test_ratio_must_be_a_number(ratio):
    with refused("ratio", ratio, SettingTypeError):
        masking.make_mask("random", ratio, n_images=2, grid=GRID)


def test_unknown_strategy_is_rejected():
    with refused("strategy", "diagonal"):
        masking.make_mask("diagonal", 0.5, n_images=2, grid=GRID)


def test_importance_needs_images():
    with refused("images", None):
        masking.make_mask("importance", 0.5, n_images=2, grid=GRID)


def test_bad_score_function_output_is_rejected(sample_images):
    def flat(x, p):
        return np.zeros((2, 3))

    with refused("score_fn", "flat", problem="must return shape"):
        masking.make_mask("importance", 0.5, images=sample_images, patch_size=4, score_fn=flat)
    with refused("score_fn", "gradient"):
        masking.make_mask(
            "importance", 0.5, images=sample_images, patch_size=4, score_fn="gradient"
        )


def test_patch_size_must_divide_for_masks(sample_images):
    with refused("patch_size", 5):
        masking.make_mask("random", 0.5, images=sample_images, patch_size=5)


def test_images_are_checked():
    with refused("images", "uint8", SettingTypeError):
        masking.make_mask(
            "importance", 0.5, images=np.zeros((2, 32, 32, 3), np.uint8), patch_size=4
        )
    with refused("images", (255.0, 255.0)):  # (min, max)
        masking.make_mask(
            "importance", 0.5, images=np.full((2, 32, 32, 3), 255.0, np.float32), patch_size=4
        )
    with refused("images", (32, 32, 3)):
        masking.make_mask("importance", 0.5, images=np.zeros((32, 32, 3), np.float32), patch_size=4)


def test_apply_mask_greys_out_hidden_patches(sample_images):
    m = masking.make_mask("random", 0.5, images=sample_images, patch_size=4, seed=0)
    out = masking.apply_mask(sample_images, m, 4)
    from helpers.patches import patchify

    P, Q = patchify(sample_images, 4), patchify(out, 4)
    assert np.all(Q[m] == 0.5)
    assert np.array_equal(Q[~m], P[~m])
    assert masking.masked_fraction(m) == 0.5


def test_every_cell_has_masks_of_its_own_and_the_notebooks_share_them():
    from helpers.models import MeanColourInpainter
    from helpers.tools import evaluation

    cells = [(s, r) for s in masking.STRATEGIES for r in (0.3, 0.5, 0.7)]
    assert len({masking.cell_seed(0, s, r) for s, r in cells}) == len(cells)
    assert masking.cell_seed(1, "rows", 0.5) == masking.cell_seed(0, "rows", 0.5) + 1
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    _, _, mask = evaluation.compare_predictors(
        {"guess": MeanColourInpainter()}, images, strategy="rows", ratio=0.5, mask_seed=2
    )  # notebooks 03 and 04
    seed = masking.cell_seed(2, "rows", 0.5)  # notebook 05's sweep (experiments.eval_masks)
    np.testing.assert_array_equal(
        mask, masking.make_mask("rows", 0.5, images=images, patch_size=4, seed=seed)
    )
