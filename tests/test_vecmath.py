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


def _nonpositive_grid(dtype):
    """Non-positive arguments across every branch of exp's and expm1's range reduction: near 0
    (expm1's relative accuracy), the cut-offs where expm1 rounds to -1 (-40) and exp to 0
    (-104 / -746), the subnormal results just above them, and -0, -inf and NaN."""
    tiny = np.finfo(dtype).tiny
    parts = [-np.geomspace(1e-12, 900.0, 1500), np.linspace(-41.0, -39.0, 101),
             np.linspace(-106.0, -86.0, 201), np.linspace(-748.0, -706.0, 201),
             [0.0, -0.0, -np.inf, np.nan, np.log(tiny) - 1.0]]
    return np.concatenate([np.asarray(p, np.float64) for p in parts]).astype(dtype)


@pytest.mark.parametrize("name", ["exp", "expm1"])
def test_exp_and_expm1_of_nonpositive_arguments_within_two_ulps(dtype, name):
    """vecmath's own functions (what the kernels inline), one element at a time: compiled here,
    as Python under NUMBA_DISABLE_JIT=1 (the twins' mutation set, benchmarks/MUTATION.md)."""
    from gpunn.kernels import vecmath

    function = {"exp": vecmath.exp_nonpositive, "expm1": vecmath.expm1_nonpositive}[name]
    exact_of = {"exp": np.exp, "expm1": np.expm1}[name]
    t = _nonpositive_grid(dtype)
    got = np.array([function(x) for x in t], dtype)  # compiled float32 returns as a float
    assert np.isnan(got[np.isnan(t)]).all()
    finite = ~np.isnan(t)
    assert _ulps(got[finite], exact_of(t[finite].astype(np.longdouble)), dtype).max() <= 2
    # subnormal results are kept (the CUDA kernels' -ftz=false); 0 and -1 exactly at the ends
    tiny = np.finfo(dtype).tiny
    if name == "exp":
        assert ((got > 0) & (got < tiny)).any() and got[t == -np.inf] == 0.0
    else:
        assert got[t == -np.inf] == -1.0 and got[t == -900.0].item() == -1.0
