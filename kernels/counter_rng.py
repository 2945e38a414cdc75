"""Numba twin of counter_rng.cuh: splitmix64 outputs by counter, the dropout masks' generator.

Everything is uint64 (Numba would turn a mix of int64 and uint64 into float64): multiplies
wrap modulo 2^64 as in C, so the bits equal the CUDA kernels'.
"""

import numpy as np
from numba import njit

from .config import CACHE

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_ONE = np.uint64(1)


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
    u = splitmix64(key, np.uint64(element)) >> _S32
    return scale if u >= np.uint64(drop_below) else type(scale)(0)
