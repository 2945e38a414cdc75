"""Numba twins of norm.cu: LayerNorm forward/backward/parameter gradients and the residual
connection of a Dense layer (``A = [A_prev +] f(LN(A_prev) @ W + b)``).

Row kernels take one row per prange iteration (each writes only its row), the parameter
gradients a block of columns per iteration; sums run in the order the CUDA kernels use (row
sums in 8 interleaved lanes, norm.cuh's gpunn_lane_sum; column sums over the rows in order), so
the host build and these twins give the same bits.
"""

import math

from numba import njit, prange

from .activations import (
    CTRL_T,
    FROM_Z_BEGIN,
    act_bwd_block,
    activate,
    activation_grad,
    bias_act_row,
    drop_fwd_row,
)
from .config import CACHE, ERROR_MODEL, FASTMATH, block_bounds, n_blocks
from .counter_rng import apply_dropout_into, dropout_key
from .precision import bf16_store


@njit(cache=CACHE, fastmath=FASTMATH - {"arcp"}, error_model=ERROR_MODEL)
def rsqrt(x):
    """1 / sqrt(x), rounded twice as written: under 'arcp' LLVM rewrites it as sqrt(1 / x),
    one float32 ulp off NVRTC and the host build for some x (1e-5 among them). Not inlined
    by Numba, so its instructions keep their own flags."""
    return type(x)(1) / math.sqrt(x)


@njit(cache=CACHE, fastmath=FASTMATH - {"arcp"}, error_model=ERROR_MODEL)
def divide(a, b):
    """a / b rounded once: under 'arcp' LLVM turns a loop-invariant divisor into a multiply
    by its reciprocal (two roundings), which NVRTC and the host build do not."""
    return a / b


# The terms lane_sum adds over a row: x, (x - mu)^2, dy * gamma, dy * gamma * xhat.
SUM_X, SUM_SQ_DEV, SUM_GRAD, SUM_GRAD_XHAT = 0, 1, 2, 3


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _term(kind, j, x, gamma, dy, mu, r):
    """Term ``j`` of a row sum of ``kind`` (a constant where inlined: the branch folds)."""
    if kind == SUM_X:
        return x[j]
    if kind == SUM_SQ_DEV:
        d = x[j] - mu
        return d * d
    if kind == SUM_GRAD:
        return dy[j] * gamma[j]
    return dy[j] * gamma[j] * ((x[j] - mu) * r)


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def lane_sum(kind, x, gamma, dy, mu, r):
    """The row sum of ``kind``'s terms in norm.cuh's gpunn_lane_sum order: lane k adds terms
    k, k + 8, ... in order, then ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7))."""
    t = x.dtype.type
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = t(0)
    n = x.size
    whole = n - n % 8
    for j in range(0, whole, 8):
        s0 += _term(kind, j, x, gamma, dy, mu, r)
        s1 += _term(kind, j + 1, x, gamma, dy, mu, r)
        s2 += _term(kind, j + 2, x, gamma, dy, mu, r)
        s3 += _term(kind, j + 3, x, gamma, dy, mu, r)
        s4 += _term(kind, j + 4, x, gamma, dy, mu, r)
        s5 += _term(kind, j + 5, x, gamma, dy, mu, r)
        s6 += _term(kind, j + 6, x, gamma, dy, mu, r)
        s7 += _term(kind, j + 7, x, gamma, dy, mu, r)
    left = n - whole
    if left > 0:
        s0 += _term(kind, whole, x, gamma, dy, mu, r)
    if left > 1:
        s1 += _term(kind, whole + 1, x, gamma, dy, mu, r)
    if left > 2:
        s2 += _term(kind, whole + 2, x, gamma, dy, mu, r)
    if left > 3:
        s3 += _term(kind, whole + 3, x, gamma, dy, mu, r)
    if left > 4:
        s4 += _term(kind, whole + 4, x, gamma, dy, mu, r)
    if left > 5:
        s5 += _term(kind, whole + 5, x, gamma, dy, mu, r)
    if left > 6:
        s6 += _term(kind, whole + 6, x, gamma, dy, mu, r)
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def row_stats(x, eps):
    """Mean and rstd = 1 / sqrt(var + eps) of the row x, two passes (lane_sum's order)."""
    t = x.dtype.type
    m = divide(lane_sum(SUM_X, x, x, x, t(0), t(0)), t(x.size))
    q = lane_sum(SUM_SQ_DEV, x, x, x, m, t(0))
    return m, rsqrt(divide(q, t(x.size)) + eps)


# Each row kernel's loops live in an inlined function of the row: written in the prange body,
# with the dtype's constructor taken outside it (t = X.dtype.type), they ran about 10x slower
# (the parallel body did not compile to the plain loops that a function of its own does).

@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _fwd_row(x, gamma, beta, eps, y):
    """y = (x - mean) * rstd * gamma + beta over one row; returns mean and rstd."""
    mu, r = row_stats(x, eps)
    for j in range(x.size):
        y[j] = (x[j] - mu) * r * gamma[j] + beta[j]
    return mu, r


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def layernorm_fwd(X, gamma, beta, n_cols, eps, mean, rstd, Y):
    """Y = (x - mean) * rstd * gamma + beta per row; mean and rstd kept."""
    for row in prange(Y.size // n_cols):
        start = row * n_cols
        mean[row], rstd[row] = _fwd_row(X[start:start + n_cols], gamma, beta, eps,
                                        Y[start:start + n_cols])


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _fwd_bf16_row(x, gamma, beta, eps, yh):
    """_fwd_row writing the bfloat16 bits of y."""
    mu, r = row_stats(x, eps)
    for j in range(x.size):
        bf16_store(yh, j, (x[j] - mu) * r * gamma[j] + beta[j])
    return mu, r


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def layernorm_fwd_bf16(X, gamma, beta, n_cols, eps, mean, rstd, Yh):
    """layernorm_fwd writing the bfloat16 bits of Y only; float32 statistics."""
    for row in prange(Yh.size // n_cols):
        start = row * n_cols
        mean[row], rstd[row] = _fwd_bf16_row(X[start:start + n_cols], gamma, beta, eps,
                                             Yh[start:start + n_cols])


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _bwd_row(x, gamma, mu, r, dy, dr, residual, dx):
    """dx = r (g - mean(g) - xhat mean(g xhat)) [+ dr] over one row (lane_sum's order)."""
    t = x.dtype.type
    a = divide(lane_sum(SUM_GRAD, x, gamma, dy, mu, r), t(x.size))
    c = divide(lane_sum(SUM_GRAD_XHAT, x, gamma, dy, mu, r), t(x.size))
    if residual:
        for j in range(x.size):
            dx[j] = r * (dy[j] * gamma[j] - a - ((x[j] - mu) * r) * c) + dr[j]
    else:
        for j in range(x.size):
            dx[j] = r * (dy[j] * gamma[j] - a - ((x[j] - mu) * r) * c)


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def layernorm_bwd(X, gamma, mean, rstd, dY, dR, n_cols, residual, dX):
    """dX = rstd (g - mean(g) - xhat mean(g xhat)), g = dY gamma; plus dR if residual."""
    for row in prange(dX.size // n_cols):
        lo, hi = row * n_cols, (row + 1) * n_cols
        _bwd_row(X[lo:hi], gamma, mean[row], rstd[row], dY[lo:hi], dR[lo:hi], residual,
                 dX[lo:hi])


# Columns per prange iteration of layernorm_bwd_params: each iteration walks the rows in order
# and adds a row's slice of the block in one vectorized loop (a column per iteration read
# one float per cache line); each column's sums still run over the rows in order.
PARAM_COLUMNS = 64


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _params_block(X, mean, rstd, dY, n_rows, n, lo, dgamma, dbeta):
    """dgamma, dbeta (columns lo .. lo + size - 1) summed over the rows, in order."""
    t = X.dtype.type
    for j in range(dgamma.size):
        dgamma[j] = t(0)
        dbeta[j] = t(0)
    for row in range(n_rows):
        mu, r = mean[row], rstd[row]
        x = X[row * n + lo:row * n + lo + dgamma.size]
        d = dY[row * n + lo:row * n + lo + dgamma.size]
        for j in range(dgamma.size):
            dgamma[j] += d[j] * ((x[j] - mu) * r)
            dbeta[j] += d[j]


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def layernorm_bwd_params(X, mean, rstd, dY, n_rows, dgamma, dbeta):
    """dgamma[j] = sum over rows of dY xhat, dbeta[j] = sum of dY; rows in order."""
    n = dbeta.size
    for block in prange((n + PARAM_COLUMNS - 1) // PARAM_COLUMNS):
        lo, hi = block * PARAM_COLUMNS, min(n, (block + 1) * PARAM_COLUMNS)
        _params_block(X, mean, rstd, dY, n_rows, n, lo, dgamma[lo:hi], dbeta[lo:hi])


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _residual_row(b, R, act, Z, A):
    """One row of bias_act_residual: f(z) as bias_act_row (one vectorized loop per
    activation; the generic activate per element did not vectorize), then A = R + f."""
    if act >= FROM_Z_BEGIN:
        for j in range(Z.size):
            z = Z[j] + b[j]
            Z[j] = z
            A[j] = R[j] + activate(z, act)
    else:
        bias_act_row(b, act, Z)
        for j in range(Z.size):
            A[j] = R[j] + Z[j]


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def bias_act_residual(b, R, n_cols, act, Z, A):
    """A = R + f(Z + b); Z keeps z (codes from FROM_Z_BEGIN on) or f(z), as act_bwd reads."""
    for row in prange(Z.size // n_cols):
        lo, hi = row * n_cols, (row + 1) * n_cols
        _residual_row(b, R[lo:hi], act, Z[lo:hi], A[lo:hi])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def bias_act_residual_bf16(b, R, n_cols, act, Z, A, Ah):
    """bias_act_residual, also writing the bfloat16 bits of A into Ah (float32 only)."""
    for row in prange(Z.size // n_cols):
        lo, hi = row * n_cols, (row + 1) * n_cols
        _residual_row(b, R[lo:hi], act, Z[lo:hi], A[lo:hi])
        for j in range(lo, hi):
            bf16_store(Ah, j, A[j])


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _residual_drop_row(b, R, act, key, first, drop_below, scale, Z, A):
    """One row of bias_act_residual_drop: f(z) * m into A (as bias_act_fwd_drop's row), then
    A += R; R + (f m) rounds as the CUDA kernel's R[i] + f * m."""
    drop_fwd_row(b, act, key, first, drop_below, scale, Z, A)
    for j in range(A.size):
        A[j] = R[j] + A[j]


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def bias_act_residual_drop(b, R, n_cols, act, ctrl, seed, layer, offset, drop_below, scale, Z,
                           A):
    """A = R + f(Z + b) * m (dropout on the residual branch, the mask of bias_act_fwd_drop);
    Z keeps z (codes from FROM_Z_BEGIN on) or f(z), as residual_act_bwd_drop reads."""
    key = dropout_key(seed, layer, ctrl[CTRL_T])
    for row in prange(Z.size // n_cols):
        lo, hi = row * n_cols, (row + 1) * n_cols
        _residual_drop_row(b, R[lo:hi], act, key, offset + lo, drop_below, scale, Z[lo:hi],
                           A[lo:hi])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def bias_act_residual_drop_bf16(b, R, n_cols, act, ctrl, seed, layer, offset, drop_below, scale,
                                Z, A, Ah):
    """bias_act_residual_drop, also writing the bfloat16 bits of A into Ah (float32 only)."""
    key = dropout_key(seed, layer, ctrl[CTRL_T])
    for row in prange(Z.size // n_cols):
        lo, hi = row * n_cols, (row + 1) * n_cols
        _residual_drop_row(b, R[lo:hi], act, key, offset + lo, drop_below, scale, Z[lo:hi],
                           A[lo:hi])
        for j in range(lo, hi):
            bf16_store(Ah, j, A[j])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def residual_act_bwd_drop(S, dA, act, ctrl, seed, layer, offset, drop_below, scale, dZ):
    """dZ = (dA * m) * f'(S), the mask of bias_act_residual_drop recomputed; dA kept."""
    key = dropout_key(seed, layer, ctrl[CTRL_T])
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        apply_dropout_into(key, offset + lo, drop_below, scale, dA[lo:hi], dZ[lo:hi])
        act_bwd_block(S[lo:hi], act, dZ[lo:hi])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def residual_act_bwd_drop_bf16(S, dA, act, ctrl, seed, layer, offset, drop_below, scale, dZ,
                               dZh):
    """residual_act_bwd_drop, also writing the bfloat16 bits of dZ into dZh (float32 only)."""
    key = dropout_key(seed, layer, ctrl[CTRL_T])
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        apply_dropout_into(key, offset + lo, drop_below, scale, dA[lo:hi], dZ[lo:hi])
        act_bwd_block(S[lo:hi], act, dZ[lo:hi])
        for i in range(lo, hi):
            bf16_store(dZh, i, dZ[i])


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _residual_act_bwd_block(S, dA, act, dZ):
    for i in range(dZ.size):
        dZ[i] = dA[i] * activation_grad(S[i], act)


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def residual_act_bwd(S, dA, act, dZ):
    """dZ = dA * f'(S), dA kept (the residual connection passes it on)."""
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        _residual_act_bwd_block(S[lo:hi], dA[lo:hi], act, dZ[lo:hi])


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _residual_act_bwd_bf16_block(S, dA, act, dZ, dZh):
    for i in range(dZ.size):
        d = dA[i] * activation_grad(S[i], act)
        dZ[i] = d
        bf16_store(dZh, i, d)


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def residual_act_bwd_bf16(S, dA, act, dZ, dZh):
    """residual_act_bwd, also writing the bfloat16 bits of dZ into dZh (float32 only)."""
    for block in prange(n_blocks(dZ.size)):
        lo, hi = block_bounds(block, dZ.size)
        _residual_act_bwd_bf16_block(S[lo:hi], dA[lo:hi], act, dZ[lo:hi], dZh[lo:hi])


@njit(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always")
def _add_block(A, B, C):
    for i in range(C.size):
        C[i] = A[i] + B[i]


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
def residual_add(A, B, C):
    """C = A + B."""
    for block in prange(n_blocks(C.size)):
        lo, hi = block_bounds(block, C.size)
        _add_block(A[lo:hi], B[lo:hi], C[lo:hi])
