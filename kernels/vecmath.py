"""exp and expm1 of non-positive arguments in plain arithmetic, so LLVM vectorizes the loops.

Numba calls the C library's scalar ``exp`` per element (no vector math library without Intel
SVML), which keeps a sigmoid loop scalar. These functions do what a vector ``exp`` does: write
t = k ln2 + r with an integer k and |r| <= ln2 / 2, approximate e^r - 1 by a polynomial
(Cephes ``expf``'s in float32; Taylor to degree 13 in float64, whose truncation error there is
below 1e-17) and build 2^k from its bit pattern. About 1 ulp from the correctly rounded value;
the kernel tests hold the twins to float64 references. Only t <= 0 is needed (sigmoid and tanh
use exp(-|x|)), so nothing overflows; NaN propagates; exp(t) below the smallest normal number
comes out subnormal (2^k is applied in two halves) and 0 where it rounds to 0. expm1 keeps
its relative accuracy near 0 (tanh of small x needs it).

Called from Python (the twins under ``NUMBA_DISABLE_JIT=1``, as the mutation tests run them),
``exp_nonpositive``, ``expm1_nonpositive`` and ``as_float`` run the same arithmetic on NumPy
scalars; compiled code takes their overloads. Numba's disk cache is keyed by the whole
kernels package (config.py), so an edit here reaches every kernel that inlines these.
"""

import warnings

import numpy as np
from numba import njit, types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import intrinsic, overload

from .config import CACHE, ERROR_MODEL, FASTMATH

LOG2E = 1.4426950408889634
# ln2 = HI + LO with HI short enough that k * HI is exact for every k used here.
LN2_HI32, LN2_LO32 = 0.693359375, -2.12194440e-4
LN2_HI64, LN2_LO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10
# Below these exp(t) rounds to 0 (half the smallest subnormal, or less).
T_MIN32, T_MIN64 = -104.0, -746.0
# Below this expm1(t) rounds to -1 in float64 and float32.
T_MIN_EXPM1 = -40.0
JIT_OPTIONS = {"fastmath": FASTMATH, "error_model": ERROR_MODEL}
# Inlining the conditional expressions below into a kernel trips a pedantic check of Numba's
# SSA pass ("variable ... is not in scope"), which printed a page of warnings on a first run;
# the code is right (the kernel tests hold it to float64 references), so only those are hidden.
warnings.filterwarnings("ignore", r".*_(exp|expm1)_nonpositive__locals", NumbaIRAssumptionWarning,
                        r"numba\.core\.ssa")


_FLOAT_OF = {np.dtype(np.int32): np.float32, np.dtype(np.int64): np.float64}


def as_float(bits):
    """The float whose IEEE bit pattern is ``bits``: int32 -> float32, int64 -> float64 (a
    bitcast in compiled code, through the overload below; NumPy's ``view`` from Python)."""
    bits = np.asarray(bits)
    return bits.view(_FLOAT_OF[bits.dtype])[()]


@intrinsic
def _bitcast(typingctx, bits):
    target = {types.int32: types.float32, types.int64: types.float64}.get(bits)
    if target is None:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(target))

    return target(bits), codegen


@overload(as_float, inline="always")
def _as_float(bits):
    if bits in (types.int32, types.int64):
        return lambda bits: _bitcast(bits)
    return None


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _expm1_small32(r):
    """e^r - 1 for |r| <= ln2 / 2, float32 (Cephes expf's polynomial)."""
    f = np.float32
    q = f(1.9875691500e-4) * r + f(1.3981999507e-3)
    q = q * r + f(8.3334519073e-3)
    q = q * r + f(4.1665795894e-2)
    q = q * r + f(1.6666665459e-1)
    q = q * r + f(5.0000001201e-1)
    return r + r * r * q


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _expm1_small64(r):
    """e^r - 1 for |r| <= ln2 / 2, float64 (Taylor series to r^13)."""
    q = 1.0 / 6227020800.0 * r + 1.0 / 479001600.0
    q = q * r + 1.0 / 39916800.0
    q = q * r + 1.0 / 3628800.0
    q = q * r + 1.0 / 362880.0
    q = q * r + 1.0 / 40320.0
    q = q * r + 1.0 / 5040.0
    q = q * r + 1.0 / 720.0
    q = q * r + 1.0 / 120.0
    q = q * r + 1.0 / 24.0
    q = q * r + 1.0 / 6.0
    q = q * r + 0.5
    return r + r * r * q


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _reduce32(t):
    """``(k, r)``: t = k ln2 + r, |r| <= ln2 / 2; k is clamped (NaN and t < T_MIN32 give a
    valid k; r stays NaN for NaN)."""
    f = np.float32
    k = f(int(t * f(LOG2E) - f(0.5))) if t > f(T_MIN32) else f(-151)
    return k, (t - k * f(LN2_HI32)) - k * f(LN2_LO32)


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _reduce64(t):
    """float64 twin of :func:`_reduce32`."""
    k = float(int(t * LOG2E - 0.5)) if t > T_MIN64 else -1076.0
    return k, (t - k * LN2_HI64) - k * LN2_LO64


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _exp32(t):
    f = np.float32
    k, r = _reduce32(t)
    i = np.int32(k)
    half = i >> 1  # 2^k as 2^half 2^(k - half): each factor is a normal number
    # Numba widens int32 arithmetic to int64; the bit patterns fit in int32.
    scale = as_float(np.int32((half + 127) << 23)) * as_float(np.int32((i - half + 127) << 23))
    e = (f(1) + _expm1_small32(r)) * scale
    return f(0) if t <= f(T_MIN32) else e


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _exp64(t):
    k, r = _reduce64(t)
    i = np.int64(k)
    half = i >> 1
    scale = as_float((half + 1023) << 52) * as_float((i - half + 1023) << 52)
    e = (1.0 + _expm1_small64(r)) * scale
    return 0.0 if t <= T_MIN64 else e


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _expm1_32(t):
    f = np.float32
    k, r = _reduce32(f(T_MIN_EXPM1) if t < f(T_MIN_EXPM1) else t)
    scale = as_float(np.int32((np.int32(k) + 127) << 23))
    return scale * _expm1_small32(r) + (scale - f(1))


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _expm1_64(t):
    k, r = _reduce64(T_MIN_EXPM1 if t < T_MIN_EXPM1 else t)
    scale = as_float((np.int64(k) + 1023) << 52)
    return scale * _expm1_small64(r) + (scale - 1.0)


def exp_nonpositive(t):
    """e^t for t <= 0 (or NaN), float32 or float64, in vectorizable arithmetic. Compiled code
    takes the overload below; from Python (the twins under ``NUMBA_DISABLE_JIT=1``) the same
    arithmetic runs on NumPy scalars."""
    return _exp32(t) if isinstance(t, np.float32) else _exp64(t)


@overload(exp_nonpositive, inline="always", jit_options=JIT_OPTIONS)
def _exp_nonpositive(t):
    if t == types.float32:
        return lambda t: _exp32(t)
    if t == types.float64:
        return lambda t: _exp64(t)
    return None


def expm1_nonpositive(t):
    """e^t - 1 for t <= 0 (or NaN), float32 or float64, in vectorizable arithmetic (compiled,
    or on NumPy scalars from Python, as :func:`exp_nonpositive`)."""
    return _expm1_32(t) if isinstance(t, np.float32) else _expm1_64(t)


@overload(expm1_nonpositive, inline="always", jit_options=JIT_OPTIONS)
def _expm1_nonpositive(t):
    if t == types.float32:
        return lambda t: _expm1_32(t)
    if t == types.float64:
        return lambda t: _expm1_64(t)
    return None
