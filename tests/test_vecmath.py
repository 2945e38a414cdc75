"""The CPU twins' vectorizable sigmoid and tanh (kernels/vecmath.py) against long-double math.

The kernel tests hold every backend to float64 references within dtype-keyed tolerances; these
check the twins more tightly, in ulps, over dense grids that cross every branch of the range
reduction: the subnormal results, the points where exp and expm1 round to 0 and -1, the
extremes of each dtype, and NaN.
"""

import numpy as np
import pytest
import reference

from gpunn.backends.cpu import CpuBackend

CPU = CpuBackend()
MAX_ULPS = 4


def _grid(dtype):
    rng = np.random.default_rng(7)
    big = np.finfo(dtype).max
    parts = [rng.normal(0.0, 4.0, 20000), rng.normal(0.0, 1e-4, 2000),
             np.linspace(-800.0, 800.0, 20001), np.geomspace(1e-300, 1e4, 4000),
             [0.0, -0.0, np.finfo(dtype).tiny, np.finfo(dtype).smallest_subnormal, big, -big]]
    x = np.concatenate([np.asarray(p, np.float64) for p in parts])
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    return np.concatenate([x, -x])


def _activate(name, x):
    z = x.copy()
    CPU.kernel("bias_act_fwd", np.zeros(1, x.dtype), 1, reference.ACTIVATION_CODES[name], z)
    return z


def _exact(name, x):
    z = x.astype(np.longdouble)
    if name == "tanh":
        return np.tanh(z)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _ulps(got, exact, dtype):
    spacing = np.spacing(np.abs(exact.astype(dtype))).astype(np.longdouble)
    spacing = np.maximum(spacing, np.finfo(dtype).smallest_subnormal)
    return np.abs(got.astype(np.longdouble) - exact) / spacing


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_within_a_few_ulps_over_the_whole_range(dtype, name):
    x = _grid(dtype)
    got = _activate(name, x)
    assert got.dtype == dtype and np.isfinite(got).all()
    ulps = _ulps(got, _exact(name, x), dtype)
    assert ulps.max() <= MAX_ULPS, (name, x[np.argmax(ulps)], ulps.max())


def test_sigmoid_keeps_subnormal_results(dtype):
    """sigmoid(x) ~ exp(x) far left: subnormal there, as the CUDA kernels (-ftz=false) give."""
    tiny = np.finfo(dtype).tiny
    x = np.array([np.log(tiny) - 3.0, np.log(tiny) - 10.0], dtype)
    got = _activate("sigmoid", x)
    assert ((got > 0) & (got < tiny)).all(), got
    assert _ulps(got, _exact("sigmoid", x), dtype).max() <= 1


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_nan_stays_nan_and_infinities_saturate(dtype, name):
    got = _activate(name, np.array([np.nan, np.inf, -np.inf], dtype))
    low = 0.0 if name == "sigmoid" else -1.0
    assert np.isnan(got[0]) and got[1] == 1.0 and got[2] == low


def test_tanh_is_odd_and_exact_near_zero(dtype):
    x = np.geomspace(np.finfo(dtype).tiny, 1e-3, 500).astype(dtype)
    positive, negative = _activate("tanh", x), _activate("tanh", -x)
    np.testing.assert_array_equal(negative, -positive)
    assert _ulps(positive, _exact("tanh", x), dtype).max() <= 2
