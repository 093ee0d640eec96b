"""``refused``: a test of refused input asserts the exception's type, the parameter's name and its
value (:class:`helpers._checks.SettingError`'s ``param`` and ``value``), not the sentence.

    with refused("ratio", 1.5):
        make_mask("random", 1.5, n_images=2, grid=(8, 8))
    with refused("images", "uint8", SettingTypeError):
        check_images(np.zeros((2, 8, 8, 3), np.uint8))

Where a test tells two refusals of the same parameter apart, it may also name a short ``problem``
fragment; ``info.value`` is the exception.
"""

from __future__ import annotations

from contextlib import contextmanager
from numbers import Real
from unittest.mock import ANY

import numpy as np
import pytest

from helpers._checks import SettingError


def same(a, b) -> bool:
    """``a == b``, with arrays, tuples and lists compared element by element (floats to 1e-6)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            return bool(np.allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True))
        return bool(np.array_equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):  # True is not 1 here
        return a is b

    if isinstance(a, Real) and isinstance(b, Real):
        return a == pytest.approx(b, rel=1e-6, nan_ok=True)
    return bool(a == b)


@contextmanager
def refused(param: str, value=ANY, exc=SettingError, problem: str | None = None):
    """Expect ``exc`` (a :class:`SettingError` by default) refusing ``param`` = ``value`` (any
    value when left out); ``problem``: a fragment its ``problem`` must contain."""
    with pytest.raises(exc) as info:
        yield info
    error = info.value
    got = getattr(error, "param", None)
    assert got == param, f"refused {got!r}, not {param!r}: {error!r}"
    if value is not ANY:
        assert same(error.value, value), f"refused {param}={error.value!r}, not {value!r}: {error}"
    if problem is not None:
        assert problem in error.problem, f"{problem!r} not in the problem: {error}"
