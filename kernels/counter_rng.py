"""Numba twin of counter_rng.cuh: splitmix64 outputs by counter, the dropout masks' generator.

Everything is uint64 (Numba would turn a mix of int64 and uint64 into float64): multiplies
wrap modulo 2^64 as in C, so the bits equal the CUDA kernels'. Element e takes its 32 bits from
half (e & 1) of output e >> 1; :func:`apply_dropout` loops over the pairs, one output each, in
SIMD lanes.
"""

import numpy as np
from numba import njit

from .config import CACHE

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_ONE = np.uint64(1)
_LOW32 = np.uint64(0xFFFFFFFF)


@njit(cache=CACHE, inline="always")
def mix64(z):
    """splitmix64's finalizer of a uint64."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=CACHE, inline="always")
def splitmix64(state, index):
    """Output number ``index`` (from 0) of splitmix64 started at ``state`` (uint64s)."""
    return mix64(state + (index + _ONE) * GOLDEN)


@njit(cache=CACHE, inline="always")
def dropout_key(seed, layer, t):
    """The key of one layer's mask at update count ``t`` (integers; seed's 64 bits)."""
    return splitmix64(splitmix64(np.uint64(seed), np.uint64(layer)), np.uint64(t))


@njit(cache=CACHE, inline="always")
def dropout_factor(key, element, drop_below, scale):
    """``scale`` where element ``element`` is kept (its 32 bits >= ``drop_below``), else 0."""
    e = np.uint64(element)
    h = splitmix64(key, e >> _ONE)
    u = (h >> _S32) if e & _ONE else (h & _LOW32)
    return scale if u >= np.uint64(drop_below) else type(scale)(0)


@njit(cache=CACHE, inline="always")
def _pair_factors(state, below, scale):
    """The factors of the two elements of splitmix64 output mix64(state): low half, high half."""
    h = mix64(state)
    zero = type(scale)(0)
    return (scale if (h & _LOW32) >= below else zero,
            scale if (h >> _S32) >= below else zero)


# Two loops, in place and into another array: one loop over X and Y that are the same array
# would not vectorize (LLVM's overlap check fails and it runs the scalar loop).

@njit(cache=CACHE, inline="always")
def _drop_pairs(key, first_pair, drop_below, scale, X):
    """X[2k], X[2k + 1] *= the factors from output first_pair + k. The state advances by
    GOLDEN per output (splitmix64 itself), sparing (index + 1) * GOLDEN's multiply."""
    below, state = np.uint64(drop_below), key + np.uint64(first_pair) * GOLDEN
    for k in range(X.size // 2):
        state += GOLDEN
        f0, f1 = _pair_factors(state, below, scale)
        X[2 * k] *= f0
        X[2 * k + 1] *= f1


@njit(cache=CACHE, inline="always")
def _drop_pairs_into(key, first_pair, drop_below, scale, X, Y):
    """Y[2k], Y[2k + 1] = X[2k], X[2k + 1] times the factors from output first_pair + k."""
    below, state = np.uint64(drop_below), key + np.uint64(first_pair) * GOLDEN
    for k in range(X.size // 2):
        state += GOLDEN
        f0, f1 = _pair_factors(state, below, scale)
        Y[2 * k] = X[2 * k] * f0
        Y[2 * k + 1] = X[2 * k + 1] * f1


@njit(cache=CACHE, inline="always")
def _pairs_span(first, n):
    """Where the whole pairs of elements first .. first + n - 1 start and stop in them."""
    lead = first & 1 if n > 0 else 0
    return lead, lead + (n - lead) // 2 * 2


@njit(cache=CACHE, inline="always")
def apply_dropout(key, first, drop_below, scale, X):
    """X[j] *= dropout_factor(key, first + j, ...) for the elements first .. first + size - 1:
    a lone element at each end, the pairs between with one output each, in SIMD lanes.
    Multiplied, as the CUDA kernels do, so NaN and inf propagate."""
    n = X.size
    lead, stop = _pairs_span(first, n)
    if lead:
        X[0] *= dropout_factor(key, first, drop_below, scale)
    _drop_pairs(key, (first + lead) >> 1, drop_below, scale, X[lead:stop])
    if stop < n:
        X[n - 1] *= dropout_factor(key, first + n - 1, drop_below, scale)


@njit(cache=CACHE, inline="always")
def apply_dropout_into(key, first, drop_below, scale, X, Y):
    """Y[j] = X[j] * dropout_factor(key, first + j, ...), as :func:`apply_dropout`."""
    n = X.size
    lead, stop = _pairs_span(first, n)
    if lead:
        Y[0] = X[0] * dropout_factor(key, first, drop_below, scale)
    _drop_pairs_into(key, (first + lead) >> 1, drop_below, scale, X[lead:stop], Y[lead:stop])
    if stop < n:
        Y[n - 1] = X[n - 1] * dropout_factor(key, first + n - 1, drop_below, scale)
