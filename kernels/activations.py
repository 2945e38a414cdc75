"""Numba twins of activations.cu: fused bias + activation forward, activation backward.

Constants are made with ``type(x)(c)`` / ``dtype.type(c)``: a bare ``1 - x`` would promote
float32 to float64 in Numba and halve the vector width. sigmoid and tanh take their exp from
:mod:`.vecmath`, so the loops vectorize; the CUDA kernels use the device's ``exp``, and the two
may differ by a few ulp (both are held to float64 references).
"""

import math

from numba import njit, prange

from . import activation_codes, header_codes
from .config import CACHE, ERROR_MODEL, FASTMATH, block_bounds, n_blocks
from .counter_rng import apply_dropout, apply_dropout_into, dropout_key
from .precision import bf16_store
from .vecmath import exp_nonpositive, expm1_nonpositive

ACTIVATIONS = activation_codes()  # parsed from activations.cuh
IDENTITY, SIGMOID, RELU, TANH, LEAKY_RELU, GELU, GELU_TANH, SILU = (
    ACTIVATIONS[name] for name in ("identity", "sigmoid", "relu", "tanh", "leaky_relu", "gelu",
                                   "gelu_tanh", "silu"))
# Codes from here on take f' from the pre-activation z (activations.cuh's ACT_FROM_Z_BEGIN).
FROM_Z_BEGIN = header_codes("activations.cuh", prefix="ACT_")["from_z_begin"]
# leaky_relu's slope for z < 0, as gpunn_leaky_slope in activations.cuh (PyTorch's default).
LEAKY_SLOPE = 0.01
# The control array's update-count slot (step.cuh), which keys the dropout masks.
CTRL_T = header_codes("step.cuh", "GPUNN_CTRL_")["t"]


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def sigmoid(x):
    """Two-branch stable sigmoid: exp never overflows, finite for any finite x.

    1 / (1 + exp(-x)) for x >= 0, exp(x) / (1 + exp(x)) otherwise, with the one exp(-|x|)
    both need and a select: the same operations on the same values as two branches, without
    a mispredicted branch per element (2x faster on random signs).
    """
    one = type(x)(1)
    e = exp_nonpositive(-abs(x))
    return one / (one + e) if x >= 0 else e / (one + e)


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def tanh(x):
    """tanh(x) = -u / (2 + u) with u = expm1(-2|x|), signed like x: no overflow, and relative
    accuracy near 0 (where 1 - exp(-2|x|) would cancel)."""
    u = expm1_nonpositive(type(x)(-2) * abs(x))
    return math.copysign(-u / (type(x)(2) + u), x)


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def gelu_tanh_2u(z):
    """2u = 2 sqrt(2/pi) (z + 0.044715 z^3): 0.5 (1 + tanh(u)) = sigmoid(2u), no cancellation."""
    t = type(z)
    return t(1.5957691216057308) * (z + t(0.044715) * z * z * z)


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def gelu(z):
    """0.5 z erfc(-z / sqrt 2): the erf form without cancellation for z < 0."""
    t = type(z)
    return t(0.5) * z * t(math.erfc(t(-0.7071067811865476) * z))


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def sigmoid64(x):
    """The two-branch sigmoid with the C library's exp, for the float64 derivatives below
    (vecmath's exp there gave other bits in a cold process than in a cached one)."""
    e = math.exp(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def from_z_grad(z, act):
    """f'(z) of gelu, gelu_tanh, silu from the pre-activation z (float64), as activations.cuh
    (gelu_tanh's is exactly 1 or 0 past |z| = 30, which avoids inf * 0)."""
    t, one = type(z), type(z)(1)
    if act == SILU:
        return sigmoid64(z) * (one + z * sigmoid64(-z))
    if act == GELU:
        return (t(0.5) * t(math.erfc(t(-0.7071067811865476) * z))
                + z * t(0.3989422804014327) * t(math.exp(t(-0.5) * z * z)))
    if abs(z) > t(30):
        return one if z > 0 else t(0)
    u2 = gelu_tanh_2u(z)
    du = t(1.5957691216057308) * (one + t(0.134145) * z * z)
    return sigmoid64(u2) * (one + z * du * sigmoid64(-u2))


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def activate(x, act):
    """f(x) for activation code ``act``."""
    if act == SIGMOID:
        return sigmoid(x)
    if act == RELU:
        return x if x > 0 else type(x)(0)
    if act == TANH:
        return tanh(x)
    if act == LEAKY_RELU:
        return x if x > 0 else type(x)(LEAKY_SLOPE) * x
    if act == GELU:
        return gelu(x)
    if act == GELU_TANH:
        return x * sigmoid(gelu_tanh_2u(x))
    if act == SILU:
        return x * sigmoid(x)
    return x


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def activation_grad(a, act):
    """f'(z) from the output a = f(z); tanh's 1 - a^2 as (1 - a)(1 + a), without cancellation."""
    one = type(a)(1)
    if act == SIGMOID:
        return a * (one - a)
    if act == RELU:
        return one if a > 0 else type(a)(0)
    if act == TANH:
        return (one - a) * (one + a)
    if act == LEAKY_RELU:  # a > 0 exactly when z > 0; z = 0 takes the slope, as torch
        return one if a > 0 else type(a)(LEAKY_SLOPE)
    if act >= FROM_Z_BEGIN:  # from the pre-activation z, in float64 as activations.cuh
        return type(a)(from_z_grad(float(a), act))
    return one


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def bias_act_row(b, act, z):
    """z[j] = f(z[j] + b[j]) over one row: one loop per activation, chosen once, so LLVM
    vectorizes each (a loop over ``activate`` would hold every activation's code)."""
    if act == SIGMOID:
        for j in range(z.size):
            z[j] = sigmoid(z[j] + b[j])
    elif act == TANH:
        for j in range(z.size):
            z[j] = tanh(z[j] + b[j])
    elif act == RELU:
        for j in range(z.size):
            z[j] = activate(z[j] + b[j], RELU)
    elif act == IDENTITY:
        for j in range(z.size):
            z[j] += b[j]
    else:
        for j in range(z.size):
            z[j] = activate(z[j] + b[j], act)


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def bias_act_fwd(b, n_cols, act, Z):
    """Z[i] = f(Z[i] + b[i % n_cols]), in place.

    One row per prange iteration (it writes only its row): the CUDA kernel's i % n_cols is an
    integer division per element, which cost as much as the activation.
    """
    for row in prange(Z.size // n_cols):
        bias_act_row(b, act, Z[row * n_cols:(row + 1) * n_cols])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def bias_act_fwd_keep(b, n_cols, act, Z, A):
    """Z[i] += b[i % n_cols], A[i] = f(Z[i]): the pre-activation stays in Z for the backward."""
    for row in prange(Z.size // n_cols):
        start = row * n_cols
        for j in range(n_cols):
            z = Z[start + j] + b[j]
            Z[start + j] = z
            A[start + j] = activate(z, act)


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def bias_act_fwd_keep_bf16(b, n_cols, act, Z, A, Ah):
    """bias_act_fwd_keep, also writing the bfloat16 bits of A into Ah (float32 only)."""
    for row in prange(Z.size // n_cols):
        start = row * n_cols
        for j in range(n_cols):
            z = Z[start + j] + b[j]
            a = activate(z, act)
            Z[start + j] = z
            A[start + j] = a
            bf16_store(Ah, start + j, a)


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def act_bwd_block(A, act, dZ):
    """dZ[i] *= f'(z_i) over one block, f' from A (act_bwd's loop, shared with norm.py)."""
    for i in range(dZ.size):
        dZ[i] *= activation_grad(A[i], act)


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def act_bwd(A, act, dZ):
    """dZ[i] = dA[i] * f'(z_i), f' from the layer output A; dZ holds dA on entry."""
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        act_bwd_block(A[lo:hi], act, dZ[lo:hi])


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _bf16_row(a, ah):
    for j in range(a.size):
        bf16_store(ah, j, a[j])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def bias_act_fwd_bf16(b, n_cols, act, Z, Zh):
    """bias_act_fwd, also writing the bfloat16 bits of the output into Zh (float32 only).

    Per row, bias_act_fwd's loop for the activation, then the rounding over the row while it
    is in cache: a single loop calling ``activate`` per element did not vectorize.
    """
    for row in prange(Z.size // n_cols):
        start, stop = row * n_cols, (row + 1) * n_cols
        bias_act_row(b, act, Z[start:stop])
        _bf16_row(Z[start:stop], Zh[start:stop])


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _act_bwd_bf16_block(A, act, dZ, dZh):
    for i in range(dZ.size):
        d = dZ[i] * activation_grad(A[i], act)
        dZ[i] = d
        bf16_store(dZh, i, d)


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def act_bwd_bf16(A, act, dZ, dZh):
    """act_bwd, also writing the bfloat16 bits of dZ into dZh (float32 only)."""
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        _act_bwd_bf16_block(A[lo:hi], act, dZ[lo:hi], dZh[lo:hi])


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def drop_fwd_row(b, act, key, first, drop_below, scale, Z, A):
    """One row of bias_act_fwd_drop; returns nothing, writes Z (what backward reads) and A.

    Two loops over the row (in L1), each vectorized: the activation (as bias_act_row, one
    loop per activation), then the mask into A; a * m is one rounding, as in the CUDA kernel.
    """
    if act >= FROM_Z_BEGIN:
        for j in range(Z.size):
            z = Z[j] + b[j]
            Z[j] = z
            A[j] = activate(z, act)
        apply_dropout(key, first, drop_below, scale, A)
    else:
        bias_act_row(b, act, Z)
        apply_dropout_into(key, first, drop_below, scale, Z, A)


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def bias_act_fwd_drop(b, n_cols, act, ctrl, seed, layer, offset, drop_below, scale, Z, A):
    """A[i] = f(Z[i] + b[i % n_cols]) * m_i (m_i = scale where the mask of (seed, layer,
    ctrl[T], offset + i) keeps the element, else 0); Z[i] keeps z for codes from FROM_Z_BEGIN
    on, else f(z): what act_bwd_drop reads."""
    key = dropout_key(seed, layer, ctrl[CTRL_T])
    for row in prange(Z.size // n_cols):
        start = row * n_cols
        drop_fwd_row(b, act, key, offset + start, drop_below, scale,
                      Z[start:start + n_cols], A[start:start + n_cols])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def bias_act_fwd_drop_bf16(b, n_cols, act, ctrl, seed, layer, offset, drop_below, scale, Z, A,
                           Ah):
    """bias_act_fwd_drop, also writing the bfloat16 bits of A into Ah (float32 only)."""
    key = dropout_key(seed, layer, ctrl[CTRL_T])
    for row in prange(Z.size // n_cols):
        start = row * n_cols
        drop_fwd_row(b, act, key, offset + start, drop_below, scale,
                      Z[start:start + n_cols], A[start:start + n_cols])
        _bf16_row(A[start:start + n_cols], Ah[start:start + n_cols])


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _act_bwd_drop_block(S, act, key, first, drop_below, scale, dZ):
    """(dA * m) * f'(z) over one block, in two loops: the mask, then act_bwd's."""
    apply_dropout(key, first, drop_below, scale, dZ)
    act_bwd_block(S, act, dZ)


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def act_bwd_drop(S, act, ctrl, seed, layer, offset, drop_below, scale, dZ):
    """dZ[i] = (dA[i] * m_i) * f'(z_i): the mask of bias_act_fwd_drop recomputed, f' from S
    (what that forward kept); dZ holds dA on entry."""
    key = dropout_key(seed, layer, ctrl[CTRL_T])
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        _act_bwd_drop_block(S[lo:hi], act, key, offset + lo, drop_below, scale, dZ[lo:hi])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def act_bwd_drop_bf16(S, act, ctrl, seed, layer, offset, drop_below, scale, dZ, dZh):
    """act_bwd_drop, also writing the bfloat16 bits of dZ into dZh (float32 only)."""
    key = dropout_key(seed, layer, ctrl[CTRL_T])
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        _act_bwd_drop_block(S[lo:hi], act, key, offset + lo, drop_below, scale, dZ[lo:hi])
        _bf16_row(dZ[lo:hi], dZh[lo:hi])
