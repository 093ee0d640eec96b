import numpy as np
import pytest
from _refused import refused

from helpers import patches
from helpers._checks import SettingTypeError


@pytest.mark.parametrize(
    "shape, p, expected",
    [
        ((2, 32, 32, 3), 4, (2, 64, 48)),
        ((1, 224, 224, 3), 16, (1, 196, 768)),
        ((3, 32, 32, 1), 8, (3, 16, 64)),
    ],
)
def test_patchify_shapes_and_round_trip(shape, p, expected):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    P = patches.patchify(x, p)
    assert P.shape == expected
    assert np.array_equal(patches.unpatchify(P, p, shape[1:]), x)


def test_patch_content_is_the_image_block():
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    P = patches.patchify(x, 4)
    # patch 9 is grid row 1, column 1 -> pixels 4:8, 4:8, flattened (row, column, channel)
    assert np.array_equal(P[1, 9], x[1, 4:8, 4:8, :].reshape(-1))
    assert np.array_equal(P[0, 7], x[0, 0:4, 28:32, :].reshape(-1))


def test_ops_version_matches_numpy():
    from keras import ops

    x = np.random.default_rng(2).random((3, 32, 32, 3), dtype=np.float32)
    P = patches.patchify(x, 4)
    P_ops = ops.convert_to_numpy(patches.patchify_ops(ops.convert_to_tensor(x), 4))
    assert np.array_equal(P, P_ops)
    back = ops.convert_to_numpy(patches.unpatchify_ops(ops.convert_to_tensor(P), 4, (32, 32, 3)))
    assert np.array_equal(back, x)


def test_pixel_mask_expands_patches():
    mask = np.zeros((1, 64), dtype=bool)
    mask[0, 9] = True
    pix = patches.patch_mask_to_pixels(mask, 4, (32, 32))
    assert pix.shape == (1, 32, 32, 1)
    assert pix.sum() == 16 and pix[0, 4:8, 4:8, 0].all()


@pytest.mark.parametrize("p", [5, 3, 0, -4])
def test_patch_size_must_divide_the_image(p):
    x = np.zeros((1, 32, 32, 3), dtype=np.float32)
    with refused("patch_size", p):
        patches.patchify(x, p)


def test_patch_size_must_be_int():
    with refused("patch_size", 4.0, SettingTypeError):
        patches.patchify(np.zeros((1, 32, 32, 3), dtype=np.float32), 4.0)


def test_wrong_rank_is_rejected():
    with refused("images", (32, 32, 3)):
        patches.patchify(np.zeros((32, 32, 3), dtype=np.float32), 4)


def test_unpatchify_checks_the_layout():
    with refused("patches", (1, 63, 48)):
        patches.unpatchify(np.zeros((1, 63, 48), dtype=np.float32), 4, (32, 32, 3))


def test_grid_shape():
    assert patches.grid_shape((32, 32, 3), 4) == (8, 8)
    assert patches.grid_shape((224, 224), 16) == (14, 14)
