"""Numba twins of losses.cu: per-element loss terms and dL/dZ in one pass."""

import math

from numba import njit, prange

from .activations import sigmoid
from .config import CACHE, FASTMATH, block_bounds, n_blocks


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _bce_block(Z, Y, scale, loss, dZ):
    zero, one = Z.dtype.type(0), Z.dtype.type(1)
    for i in range(dZ.size):
        z = Z[i]
        linear = z * (one - Y[i]) if z > zero else -z * Y[i]
        loss[i] = linear + math.log1p(math.exp(-abs(z)))
        dZ[i] = (sigmoid(z) - Y[i]) * scale


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def bce_logits(Z, Y, scale, loss, dZ):
    """loss = max(z, 0) - z y + log1p(exp(-|z|)); dZ = (sigmoid(z) - y) * scale.

    max(z, 0) - z y is taken as z (1 - y) or -z y: no cancellation (see losses.cuh).
    """
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        _bce_block(Z[lo:hi], Y[lo:hi], scale, loss[lo:hi], dZ[lo:hi])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def softmax_xent(Z, labels, n_cols, scale, loss, dZ):
    """One row per iteration: loss[row] = log(rowsum) - (z_y - rowmax);
    dZ = (softmax(z) - [j == y]) * scale (see losses.cu)."""
    one, zero = Z.dtype.type(1), Z.dtype.type(0)
    for row in prange(dZ.size // n_cols):
        start = row * n_cols
        rowmax = Z[start]
        for j in range(1, n_cols):
            rowmax = max(rowmax, Z[start + j])
        rowsum = zero
        for j in range(n_cols):
            e = math.exp(Z[start + j] - rowmax)
            dZ[start + j] = e
            rowsum += e
        label = int(labels[row])
        inv = one / rowsum
        for j in range(n_cols):
            dZ[start + j] = (dZ[start + j] * inv - (one if j == label else zero)) * scale
        z_label = Z[start + label] if 0 <= label < n_cols else rowmax
        loss[row] = math.log(rowsum) - (z_label - rowmax)


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _mse_block(Z, Y, scale, loss, dZ):
    for i in range(dZ.size):
        d = Z[i] - Y[i]
        loss[i] = d * d
        dZ[i] = (d + d) * scale


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def mse(Z, Y, scale, loss, dZ):
    """loss = (z - y)^2; dZ = 2 (z - y) scale."""
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        _mse_block(Z[lo:hi], Y[lo:hi], scale, loss[lo:hi], dZ[lo:hi])
