"""Numba twins of losses.cu: per-element loss terms and dL/dZ in one pass, each row weighted
by ``W`` (one weight per row: ones, or weights the host rescaled to mean 1 per batch)."""

import math

from numba import njit, prange

from .activations import sigmoid
from .config import CACHE, FASTMATH, block_bounds, n_blocks


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _bce_block(Z, Y, W, first, n_cols, scale, loss, dZ):
    zero, one = Z.dtype.type(0), Z.dtype.type(1)
    for i in range(dZ.size):
        z = Z[i]
        w = W[(first + i) // n_cols]
        linear = z * (one - Y[i]) if z > zero else -z * Y[i]
        loss[i] = w * (linear + math.log1p(math.exp(-abs(z))))
        dZ[i] = w * (sigmoid(z) - Y[i]) * scale


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def bce_logits(Z, Y, W, n_cols, scale, loss, dZ):
    """loss = w (max(z, 0) - z y + log1p(exp(-|z|))); dZ = w (sigmoid(z) - y) * scale, w the
    weight of the element's row (``n_cols`` elements a row).

    max(z, 0) - z y is taken as z (1 - y) or -z y: no cancellation (see losses.cuh).
    """
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        _bce_block(Z[lo:hi], Y[lo:hi], W, lo, n_cols, scale, loss[lo:hi], dZ[lo:hi])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def softmax_xent(Z, labels, W, n_cols, scale, loss, dZ):
    """One row per iteration: loss[row] = w (log(rowsum) - (z_y - rowmax));
    dZ = w (softmax(z) - [j == y]) * scale, w = W[row] (see losses.cu)."""
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
        w = W[row]
        for j in range(n_cols):
            dZ[start + j] = w * (dZ[start + j] * inv - (one if j == label else zero)) * scale
        z_label = Z[start + label] if 0 <= label < n_cols else rowmax
        loss[row] = w * (math.log(rowsum) - (z_label - rowmax))


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _mse_block(Z, Y, W, first, n_cols, scale, loss, dZ):
    for i in range(dZ.size):
        d = Z[i] - Y[i]
        w = W[(first + i) // n_cols]
        loss[i] = w * (d * d)
        dZ[i] = w * (d + d) * scale


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def mse(Z, Y, W, n_cols, scale, loss, dZ):
    """loss = w (z - y)^2; dZ = w 2 (z - y) scale, w the weight of the element's row."""
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        _mse_block(Z[lo:hi], Y[lo:hi], W, lo, n_cols, scale, loss[lo:hi], dZ[lo:hi])
