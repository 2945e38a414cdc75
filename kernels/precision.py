"""Numba twins of precision.cu: bfloat16 / TF32 rounding on the float32 bit pattern.

The arithmetic is on the bits (scalar ``view(np.uint32)``; array views inside a parallel loop
are copies in Numba, so writes through them are lost), as in precision.cuh, so the twins agree
with the CUDA kernels bit for bit. bfloat16 values are stored as their 16 bits (``uint16``),
the layout cuBLAS reads as ``CUDA_R_16BF``, or, where the CPU backend keeps a bfloat16 operand
in float32 storage for NumPy's BLAS (``CpuBackend.bf16_zeros``), as their float32 values: the
same bits in the upper half, zeros below (:func:`bf16_store` writes either, by the array's
dtype). Float32 arrays only: the backend refuses float64 for kernels with bfloat16 arguments.
"""

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .config import CACHE, block_bounds, n_blocks

_SIGN_CLEARED = np.uint32(0x7FFFFFFF)
_INF_BITS = np.uint32(0x7F800000)


@njit(cache=CACHE, inline="always")
def is_nan_bits(u):
    """Whether the float32 bit pattern ``u`` is a NaN."""
    return (u & _SIGN_CLEARED) > _INF_BITS


@njit(cache=CACHE, inline="always")
def round_bits(u, shift):
    """``u`` rounded to nearest even at bit ``shift``, the bits below cleared (a carry out of
    the mantissa raises the exponent; out of the largest finite one it gives inf)."""
    half = (np.uint32(1) << np.uint32(shift - 1)) - np.uint32(1)
    lsb = (u >> np.uint32(shift)) & np.uint32(1)
    return ((u + half + lsb) >> np.uint32(shift)) << np.uint32(shift)


@njit(cache=CACHE, inline="always")
def bf16_bits(x):
    """bfloat16 bits of the float32 ``x``; NaN stays NaN, with the quiet bit set."""
    u = np.float32(x).view(np.uint32)
    if is_nan_bits(u):
        return np.uint16((u >> np.uint32(16)) | np.uint32(0x40))
    return np.uint16(round_bits(u, 16) >> np.uint32(16))


@njit(cache=CACHE, inline="always")
def tf32(x):
    """The float32 ``x`` rounded to TF32 (10 mantissa bits); NaN stays a quiet NaN."""
    u = np.float32(x).view(np.uint32)
    if is_nan_bits(u):
        return np.uint32(u | np.uint32(0x00400000)).view(np.float32)
    return np.uint32(round_bits(u, 13)).view(np.float32)


@njit(cache=CACHE, inline="always")
def bf16_value(h):
    """The float32 of the bfloat16 bits ``h`` (exact)."""
    return np.uint32(np.uint32(h) << np.uint32(16)).view(np.float32)


def bf16_store(out, i, x):
    """``out[i]`` = the float32 ``x`` rounded to bfloat16: its bits in a ``uint16`` array, its
    value (the same bits, zeros below) in a float32 one. Compiled code takes the overload
    below; this body runs only where the twins run as Python (``NUMBA_DISABLE_JIT=1``)."""
    bits = bf16_bits(x)
    out[i] = bits if out.dtype == np.uint16 else bf16_value(bits)


@overload(bf16_store)
def _bf16_store(out, i, x):
    if not isinstance(out, types.Array):
        return None
    if out.dtype == types.uint16:
        def store_bits(out, i, x):
            out[i] = bf16_bits(x)
        return store_bits
    if out.dtype == types.float32:
        def store_value(out, i, x):
            out[i] = bf16_value(bf16_bits(x))
        return store_value
    return None


@njit(cache=CACHE, inline="always")
def _round_bf16_block(x, out):
    for i in range(out.size):
        bf16_store(out, i, x[i])


@njit(parallel=True, cache=CACHE)
def round_bf16(x, out):
    """out[i] = bfloat16 bits of x[i], rounded to nearest even (or their value, for float32
    ``out``: see :func:`bf16_store`)."""
    for block in prange(n_blocks(out.size)):
        lo, hi = block_bounds(block, out.size)
        _round_bf16_block(x[lo:hi], out[lo:hi])


@njit(cache=CACHE, inline="always")
def _bf16_to_f32_block(h, out):
    for i in range(out.size):
        out[i] = bf16_value(h[i])


@njit(parallel=True, cache=CACHE)
def bf16_to_f32(h, out):
    """out[i] = the value of the bfloat16 bits h[i] (exact)."""
    for block in prange(n_blocks(out.size)):
        lo, hi = block_bounds(block, out.size)
        _bf16_to_f32_block(h[lo:hi], out[lo:hi])


@njit(cache=CACHE, inline="always")
def _round_tf32_block(x):
    for i in range(x.size):
        x[i] = tf32(x[i])


@njit(parallel=True, cache=CACHE)
def round_tf32(x):
    """x[i] rounded to TF32 in place."""
    for block in prange(n_blocks(x.size)):
        lo, hi = block_bounds(block, x.size)
        _round_tf32_block(x[lo:hi])
