"""Numba twins of clip.cu: the global norm's partial sums, clipping by norm and by value.

``sum_partials`` adds each partial's terms in the order the CUDA thread does (x[j], x[j + n],
..., in double) and stores it in the dtype, so the host build of clip.cu and these twins give
the same bits whatever the thread count; the element-wise twins run over the fixed blocks of
config.py.
"""

import math

import numpy as np
from numba import njit, prange

from .config import CACHE, ERROR_MODEL, FASTMATH, block_bounds, n_blocks
from .step import CTRL_BAD

# Partial sums per prange iteration of sum_partials: a double accumulator of this many (8 KiB).
PARTIALS_PER_BLOCK = 1024


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def sum_partials(x, n_x, square, out):
    """out[j] = sum over k of x[j + k n]^2 (``square``) or x[j + k n], n = out.size; in
    double, k in order.

    Each iteration owns a block of consecutive partial sums and walks x row by row (rows of
    n): the same additions in the same order as the CUDA thread per sum, but over contiguous
    slices that vectorize, not one strided walk per sum (25 times slower at 2**20 entries).
    The block's double accumulator is allocated by Numba's runtime, outside Python's heap."""
    n = out.size
    for block in prange((n + PARTIALS_PER_BLOCK - 1) // PARTIALS_PER_BLOCK):
        lo = block * PARTIALS_PER_BLOCK
        hi = min(n, lo + PARTIALS_PER_BLOCK)
        acc = np.zeros(hi - lo)
        for row in range(0, n_x, n):
            if square:
                _add_squares(x[row + lo:min(row + hi, n_x)], acc)
            else:
                _add_values(x[row + lo:min(row + hi, n_x)], acc)
        for j in range(hi - lo):
            out[lo + j] = acc[j]


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _add_squares(x, acc):
    for i in range(x.size):
        v = np.float64(x[i])
        acc[i] += v * v


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _add_values(x, acc):
    for i in range(x.size):
        acc[i] += np.float64(x[i])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def clip_by_norm(sumsq, max_norm, ctrl, g):
    """g *= min(1, max_norm / (sqrt(sumsq[0]) + 1e-6)); a non-finite norm sets ctrl[BAD]."""
    factor = _factor(sumsq, max_norm)
    if not math.isfinite(factor):
        ctrl[CTRL_BAD] = 1
        return
    if factor >= 1.0:
        return
    for block in prange(n_blocks(g.size)):
        lo, hi = block_bounds(block, g.size)
        _scale_block(factor, g[lo:hi])


@njit(cache=CACHE, error_model=ERROR_MODEL)
def _factor(sumsq, max_norm):
    """max_norm / (sqrt(sumsq[0]) + 1e-6) in double, NaN when sumsq[0] is not finite.
    np.float64, not float(): Numba's float() and math.sqrt keep float32. Without fast-math
    ('arcp' may take a reciprocal for the division)."""
    norm = math.sqrt(np.float64(sumsq[0]))
    return max_norm / (norm + 1e-6) if math.isfinite(norm) else math.nan


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _scale_block(factor, g):
    s = g.dtype.type(factor)  # rounded to the dtype first, as the CUDA kernel's (real)factor
    for i in range(g.size):
        g[i] = g[i] * s


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def clip_by_value(max_value, g):
    """g = clamp(g, -max_value, max_value); NaN stays NaN."""
    for block in prange(n_blocks(g.size)):
        lo, hi = block_bounds(block, g.size)
        _clamp_block(max_value, g[lo:hi])


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _clamp_block(m, g):
    low = -m
    for i in range(g.size):
        x = g[i]
        g[i] = m if x > m else (low if x < low else x)
