"""Float64 references of bfloat16 and TF32 rounding, written on values, not bits.

The kernels round the float32 bit pattern (kernels/precision.cuh); these round the value: a
float32 x is scaled by a power of two to an integer grid of ``bits`` mantissa bits and rounded
with ``np.rint`` (ties to even), with float32's exponent range (subnormal spacing
``2^(-126 - bits)``), overflow past the largest finite value to inf. So a bit-trick bug in a
kernel cannot hide in a shared helper.
"""

import numpy as np

BF16_BITS, TF32_BITS = 7, 10
# Unit roundoff (half an ulp at 1) of bfloat16, the bound of one relative rounding error.
BF16_UNIT_ROUNDOFF = 2.0 ** -(BF16_BITS + 1)
MIN_NORMAL_EXPONENT, MAX_EXPONENT = -126, 127


def round_to_mantissa(x, bits):
    """Float32 values ``x`` rounded to nearest even with ``bits`` mantissa bits, as float64.

    Finite values beyond the largest finite of the format become inf; inf and NaN pass through.
    """
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    out = x.copy()
    finite = np.isfinite(x)
    a = np.abs(x[finite])
    _, exponent = np.frexp(np.where(a > 0, a, 1.0))  # a = f * 2^exponent, f in [0.5, 1)
    exponent = np.maximum(exponent - 1, MIN_NORMAL_EXPONENT)
    quantum = np.ldexp(1.0, exponent - bits)
    rounded = np.rint(a / quantum) * quantum
    largest = (2.0 - 2.0 ** -bits) * 2.0 ** MAX_EXPONENT
    rounded[rounded > largest] = np.inf
    out[finite] = np.copysign(rounded, x[finite])
    return out


def bf16_value(bits):
    """The float64 value of bfloat16 bit patterns: sign, 8 exponent bits, 7 mantissa bits."""
    bits = np.asarray(bits, dtype=np.int64)
    sign = np.where(bits >> 15, -1.0, 1.0)
    exponent, mantissa = (bits >> 7) & 0xFF, (bits & 0x7F).astype(np.float64)
    normal = np.ldexp(1.0 + mantissa / 128.0, np.maximum(exponent, 1) - 127)
    value = np.where(exponent == 0, np.ldexp(mantissa / 128.0, -126), normal)
    value = np.where(exponent == 0xFF, np.where(mantissa == 0, np.inf, np.nan), value)
    return np.copysign(value, sign)


def round_bf16(x, out=None):
    """out = x rounded to bfloat16 (as values; the kernel writes the bits)."""
    return {"out": round_to_mantissa(x, BF16_BITS)}


def bf16_to_f32(h, out=None):
    """out = the value of the bfloat16 bits h."""
    return {"out": bf16_value(h)}


def round_tf32(x):
    """x rounded to TF32 (from its float32 value, also in the float64 build)."""
    return {"x": round_to_mantissa(x, TF32_BITS)}


def assert_bf16_equal(bits, expected, err_msg=""):
    """bfloat16 ``bits`` decode to exactly ``expected`` (NaN where NaN, signs of zeros too)."""
    actual = bf16_value(bits)
    expected = np.asarray(expected, dtype=np.float64)
    np.testing.assert_array_equal(actual, expected, err_msg=err_msg)
    assert np.array_equal(np.signbit(actual), np.signbit(expected)), err_msg


def bf16_ulp(x):
    """The spacing of bfloat16 numbers at the float64 values ``x`` (their binade's ulp; the
    subnormal spacing ``2^-133`` below the smallest normal, 0 included)."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    _, exponent = np.frexp(np.where(a > 0, a, 1.0))  # a = f * 2^exponent, f in [0.5, 1)
    exponent = np.where(a > 0, np.maximum(exponent - 1, MIN_NORMAL_EXPONENT), MIN_NORMAL_EXPONENT)
    return np.ldexp(1.0, exponent - BF16_BITS)


def assert_bf16_close(bits, expected, err_msg=""):
    """bfloat16 ``bits`` within one bfloat16 ulp (the spacing at ``expected``) of the float64
    ``expected``; inf and NaN where ``expected`` has them.

    One ulp, not half: the kernel rounds its float32 result, a few float32 ulps from the exact
    value, and a rounding boundary may lie between the two.
    """
    actual = bf16_value(bits)
    expected = np.broadcast_to(np.asarray(expected, dtype=np.float64), actual.shape)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite], expected[~finite], err_msg=err_msg)
    error = np.abs(actual[finite] - expected[finite])
    ulps = error / bf16_ulp(expected[finite])
    far = ~(ulps <= 1.0)
    assert not far.any(), (
        f"{err_msg}: {int(far.sum())} of {ulps.size} bfloat16 values more than one ulp from the "
        f"float64 reference (worst {np.nanmax(ulps):.3g} ulp): actual "
        f"{actual[finite][far][:5]}, expected {expected[finite][far][:5]}")
