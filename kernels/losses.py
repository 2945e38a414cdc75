"""Numba twins of losses.cu: per-element loss terms and dL/dZ in one pass."""

import math

from numba import njit, prange

from .activations import sigmoid
from .config import CACHE, FASTMATH


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def bce_logits(Z, Y, scale, loss, dZ):
    """loss = max(z, 0) - z y + log1p(exp(-|z|)); dZ = (sigmoid(z) - y) * scale.

    max(z, 0) - z y is taken as z (1 - y) or -z y: no cancellation (see losses.cuh).
    """
    zero, one = Z.dtype.type(0), Z.dtype.type(1)
    for i in prange(dZ.size):
        z = Z[i]
        linear = z * (one - Y[i]) if z > zero else -z * Y[i]
        loss[i] = linear + math.log1p(math.exp(-abs(z)))
        dZ[i] = (sigmoid(z) - Y[i]) * scale


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def softmax_shift_exp(Z, rowmax, n_cols, E):
    """E[i] = exp(Z[i] - rowmax[row])."""
    for i in prange(E.size):
        E[i] = math.exp(Z[i] - rowmax[i // n_cols])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def softmax_xent(Z, rowmax, rowsum, labels, n_cols, scale, loss, dZ):
    """loss = [j == y](lse - z); dZ = (exp(z - lse) - [j == y]) scale; lse = rowmax + log(rowsum).

    z - lse is taken as (z - rowmax) - log(rowsum), which does not round lse (see losses.cu).
    """
    one, zero = Z.dtype.type(1), Z.dtype.type(0)
    for i in prange(dZ.size):
        row = i // n_cols
        shifted = (Z[i] - rowmax[row]) - math.log(rowsum[row])
        hit = one if i % n_cols == labels[row] else zero
        loss[i] = -hit * shifted
        dZ[i] = (math.exp(shifted) - hit) * scale


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def mse(Z, Y, scale, loss, dZ):
    """loss = (z - y)^2; dZ = 2 (z - y) scale."""
    for i in prange(dZ.size):
        d = Z[i] - Y[i]
        loss[i] = d * d
        dZ[i] = (d + d) * scale
