"""Input checks: a bad value raises :class:`SettingError` (a ``ValueError``), one of the wrong
type :class:`SettingTypeError` (also a ``TypeError``), e.g. ``ratio=1.5: must be strictly between
0 and 1``; for an array, the value is its shape, dtype or type."""

from __future__ import annotations

from numbers import Real

import numpy as np

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")  # dtype policies (helpers.devices)


class SettingError(ValueError):
    """A bad setting: ``param`` (its name), ``value`` and ``problem`` (what is wrong; allowed)."""

    def __init__(self, param: str, value, problem: str):
        self.param, self.value, self.problem = param, value, problem
        super().__init__(f"{param}={value!r}: {problem}")

    def cli_message(self) -> str:
        """The message with the command-line spelling of the parameter (``--n-test``)."""
        return f"--{self.param.replace('_', '-')} {self.value!r}: {self.problem}"


class SettingTypeError(SettingError, TypeError):
    """A value of the wrong type (a string for a number, a list for an array)."""


def check_hidden(hidden: int, need: int, n_patches: int, param: str, value, **words) -> None:
    """Refuse (``param``, ``value``) masks hiding ``hidden`` of ``n_patches`` patches for a model
    built for masks hiding ``need`` or more (its ``min_masked``); ``words``: model=, allowed=."""
    if hidden < need:
        least = f"{need / n_patches:.2f}"
        allowed = f"ratio >= {least}, or build it with a smaller min_mask_ratio"
        words = {"model": "the model", "allowed": allowed, **words}
        problem = "hides {} of {} patches, but {model} needs at least {} hidden (min_mask_ratio ~ "
        problem += "{}); allowed: {allowed}"
        raise SettingError(param, value, problem.format(hidden, n_patches, need, least, **words))


def _check_real(value, name, allowed, ok, problem=None, kinds=Real, cast=float):
    """``cast(value)`` if ``value`` is of ``kinds`` (not a bool) and ``ok(value)`` holds."""
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise SettingTypeError(name, value, f"must be {allowed}, not a {type(value).__name__}")
    if not ok(value):  # NaN fails every comparison
        raise SettingError(name, value, problem or f"must be {allowed}")
    return cast(value)


def check_ratio(ratio, name: str = "ratio") -> float:
    """Return ``ratio`` as a float if it lies strictly between 0 and 1."""
    allowed, problem = "a number strictly between 0 and 1", "must be strictly between 0 and 1"
    return _check_real(ratio, name, allowed, lambda v: 0.0 < float(v) < 1.0, problem)


def check_ratio_spec(ratio) -> tuple[float, float]:
    """A ratio, or a (low, high) range with 0 < low <= high < 1."""
    if isinstance(ratio, (tuple, list)):
        if len(ratio) != 2:
            raise SettingError("ratio", ratio, "must be a number or a (low, high) pair")
        low, high = check_ratio(ratio[0]), check_ratio(ratio[1])
        if low > high:
            raise SettingError("ratio", ratio, "a (low, high) range must have low <= high")
        return low, high
    return (check_ratio(ratio),) * 2


def check_positive_number(value, name: str) -> float:
    """Return ``value`` as a float if it is a number > 0 (a learning rate, minutes)."""
    return _check_real(value, name, "a positive number", lambda v: v > 0)


def check_nonnegative_number(value, name: str) -> float:
    """Return ``value`` as a float if it is a number >= 0 (a loss weight; 0 turns a term off)."""
    return _check_real(value, name, "a number >= 0", lambda v: v >= 0)


def check_fraction(value, name: str) -> float:
    """Return ``value`` as a float if it lies in [0, 1) (a dropout rate, a validation share)."""
    return _check_real(value, name, "a number in [0, 1)", lambda v: 0.0 <= v < 1.0)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``."""
    allowed = f"an integer >= {minimum}"
    return _check_real(value, name, allowed, lambda v: v >= minimum, None, (int, np.integer), int)


def check_choice(value, name: str, allowed) -> str:
    """Return ``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise SettingError(name, value, f"must be one of {sorted(allowed)}")
    return value


def check_images(images, name: str = "images", *, value_range: bool = True) -> np.ndarray:
    """Return ``images`` unchanged if it is a float array (N, H, W, C), C in {1, 3}, in [0, 1]."""
    if not isinstance(images, np.ndarray):
        raise SettingTypeError(
            name, type(images).__name__, "must be a NumPy array of shape (N, H, W, C)"
        )
    if images.ndim != 4:
        raise SettingError(
            name, images.shape, f"must have rank 4 (N, H, W, C), channels last; rank {images.ndim}"
        )
    if images.shape[-1] not in (1, 3):
        raise SettingError(name, images.shape, "must be channels last with 1 or 3 channels")
    if images.dtype not in (np.float32, np.float64, np.float16):
        problem = "must be a float array with values in [0, 1] (float16/32/64); divide uint8"
        raise SettingTypeError(name, str(images.dtype), f"{problem} images by 255")
    if value_range and images.size:
        lo, hi = float(np.min(images)), float(np.max(images))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise SettingError(name, (lo, hi), "values (min, max) must lie in [0, 1]")
    return images


def check_patch_size(patch_size, image_shape) -> int:
    """Check that ``patch_size`` is a positive int that divides the image height and width."""
    p = check_positive_int(patch_size, "patch_size")
    h, w = int(image_shape[0]), int(image_shape[1])
    if h % p or w % p:
        divisors = [d for d in range(1, min(h, w) + 1) if h % d == 0 and w % d == 0]
        raise SettingError(
            "patch_size", p, f"must divide the image size {h}x{w}; allowed: {divisors}"
        )
    return p


def check_mask(
    mask, name: str = "mask", n_images: int | None = None, n_patches: int | None = None
) -> np.ndarray:
    """Check a boolean patch mask of shape (N, L); True marks a masked (hidden) patch."""
    if not isinstance(mask, np.ndarray):
        raise SettingTypeError(
            name, type(mask).__name__, "must be a boolean NumPy array of shape (N, L)"
        )
    if mask.dtype != bool:
        raise SettingTypeError(name, str(mask.dtype), "must have dtype bool (True = masked patch)")
    if mask.ndim != 2:
        raise SettingError(name, mask.shape, "must have shape (N, L) (images, patches)")
    if n_images is not None and mask.shape[0] != n_images:
        raise SettingError(
            name, mask.shape, f"has {mask.shape[0]} rows but there are {n_images} images"
        )
    if n_patches is not None and mask.shape[1] != n_patches:
        raise SettingError(
            name, mask.shape, f"has {mask.shape[1]} patches per image, expected {n_patches}"
        )
    return mask
