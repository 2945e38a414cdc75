"""Numba twins of optimizers.cu: one fused update over the flat parameter buffer.

Scalars arrive in the arrays' dtype (``double`` ones as float64; the backend converts them);
constants are made with ``p.dtype.type`` so float32 math stays float32 and vectorizes at full
width. Per-step values come from the device arrays as in the CUDA kernels: ``lr = lrs[k]``,
``t = ctrl[T] + 1``; nothing is updated when ``ctrl[BAD]`` or ``ctrl[HALT]`` is set. As in
optimizers.cu, an element whose new parameter or state would be NaN/inf keeps its previous
values and sets ``ctrl[BAD_UPDATE]``, and state below the dtype's smallest normal number is
stored as 0 (``_flush``: the same select as ``gpunn_flush``). Both are selects, not branches, so
the loops stay vectorized.

Each update runs over the fixed blocks of config.py (``BLOCK`` elements per prange iteration),
so its bits do not depend on the thread count.
"""

import math

import numpy as np
from numba import njit, prange

from .config import CACHE, FASTMATH, block_bounds, n_blocks
from .precision import bf16_store
from .step import CTRL_BAD, CTRL_BAD_UPDATE, CTRL_HALT, CTRL_K, CTRL_T


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _skipped(ctrl):
    return ctrl[CTRL_BAD] != 0 or ctrl[CTRL_HALT] != 0


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _step_lr(lrs, n_lrs, ctrl, zero):
    k = ctrl[CTRL_K]
    return lrs[k] if 0 <= k < n_lrs else zero


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _flush(x, tiny, zero):
    """x, or 0 where x is subnormal (``tiny``: the dtype's smallest normal); NaN/inf stay."""
    return zero if abs(x) < tiny else x


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _tiny_zero(p):
    """The smallest normal number of ``p``'s dtype, and 0 in it."""
    return p.dtype.type(np.finfo(p.dtype).tiny), p.dtype.type(0)


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _sgd_block(g, p, buf, w, lr, momentum, keep, weight_decay, nesterov, first, working):
    tiny, zero = _tiny_zero(p)
    bad = 0
    for i in range(p.size):
        d = g[i] + weight_decay * p[i]
        if momentum != 0:
            b = _flush(d if first else momentum * buf[i] + keep * d, tiny, zero)
            d = d + momentum * b if nesterov else b
            pi = p[i] - lr * d
            ok = math.isfinite(pi) & math.isfinite(b)
            buf[i] = b if ok else buf[i]
        else:
            pi = p[i] - lr * d
            ok = math.isfinite(pi)
        pi = pi if ok else p[i]
        p[i] = pi
        if working:
            bf16_store(w, i, pi)
        bad += 0 if ok else 1
    return bad


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def sgd_step(g, lrs, n_lrs, momentum, dampening, weight_decay, nesterov, working, ctrl, p,
             buf, w):
    """PyTorch SGD with momentum, dampening, nesterov and L2 weight decay."""
    if _skipped(ctrl):
        return
    lr = _step_lr(lrs, n_lrs, ctrl, p.dtype.type(0))
    keep = p.dtype.type(1) - dampening
    first = ctrl[CTRL_T] == 0
    bad = 0
    for block in prange(n_blocks(p.size)):
        a, z = block_bounds(block, p.size)
        if working:  # a constant flag per call: LLVM drops the branch from each loop
            bad += _sgd_block(g[a:z], p[a:z], buf[a:z], w[a:z], lr, momentum, keep,
                              weight_decay, nesterov, first, True)
        else:
            bad += _sgd_block(g[a:z], p[a:z], buf[a:z], w, lr, momentum, keep, weight_decay,
                              nesterov, first, False)
    if bad:
        ctrl[CTRL_BAD_UPDATE] = 1


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _momentum_block(g, p, v, w, b, keep, scale, working):
    tiny, zero = _tiny_zero(p)
    bad = 0
    for i in range(p.size):
        vi = _flush(b * v[i] + keep * g[i], tiny, zero)
        pi = p[i] - scale * vi
        ok = math.isfinite(pi) & math.isfinite(vi)
        v[i] = vi if ok else v[i]
        pi = pi if ok else p[i]
        p[i] = pi
        if working:
            bf16_store(w, i, pi)
        bad += 0 if ok else 1
    return bad


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def momentum_step(g, lrs, n_lrs, beta, bias_correction, working, ctrl, p, v, w):
    """v = beta v + (1 - beta) g; p -= lr v correction."""
    if _skipped(ctrl):
        return
    t = float(ctrl[CTRL_T] + 1)
    lr = float(_step_lr(lrs, n_lrs, ctrl, p.dtype.type(0)))
    scale = p.dtype.type(lr / (1.0 - beta ** t) if bias_correction else lr)
    b = p.dtype.type(beta)
    keep = p.dtype.type(1) - b
    bad = 0
    for block in prange(n_blocks(p.size)):
        a, z = block_bounds(block, p.size)
        if working:  # a constant flag per call: LLVM drops the branch from each loop
            bad += _momentum_block(g[a:z], p[a:z], v[a:z], w[a:z], b, keep, scale, True)
        else:
            bad += _momentum_block(g[a:z], p[a:z], v[a:z], w, b, keep, scale, False)
    if bad:
        ctrl[CTRL_BAD_UPDATE] = 1


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _rmsprop_block(g, p, v, w, lr, alpha, keep, eps, weight_decay, eps_in_sqrt, working):
    tiny, zero = _tiny_zero(p)
    bad = 0
    for i in range(p.size):
        d = g[i] + weight_decay * p[i]
        vi = _flush(alpha * v[i] + keep * d * d, tiny, zero)
        denom = math.sqrt(vi + eps) if eps_in_sqrt else math.sqrt(vi) + eps
        pi = p[i] - lr * (d / denom)
        ok = math.isfinite(pi) & math.isfinite(vi)
        v[i] = vi if ok else v[i]
        pi = pi if ok else p[i]
        p[i] = pi
        if working:
            bf16_store(w, i, pi)
        bad += 0 if ok else 1
    return bad


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def rmsprop_step(g, lrs, n_lrs, alpha, eps, weight_decay, eps_in_sqrt, working, ctrl, p, v,
                 w):
    """v = alpha v + (1 - alpha) d^2; p -= lr d / (sqrt(v) + eps) or / sqrt(v + eps)."""
    if _skipped(ctrl):
        return
    lr = _step_lr(lrs, n_lrs, ctrl, p.dtype.type(0))
    keep = p.dtype.type(1) - alpha
    bad = 0
    for block in prange(n_blocks(p.size)):
        a, z = block_bounds(block, p.size)
        if working:  # a constant flag per call: LLVM drops the branch from each loop
            bad += _rmsprop_block(g[a:z], p[a:z], v[a:z], w[a:z], lr, alpha, keep, eps,
                                  weight_decay, eps_in_sqrt, True)
        else:
            bad += _rmsprop_block(g[a:z], p[a:z], v[a:z], w, lr, alpha, keep, eps,
                                  weight_decay, eps_in_sqrt, False)
    if bad:
        ctrl[CTRL_BAD_UPDATE] = 1


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _adam_block(g, p, m, v, w, keep_p, weight_decay, b1, b2, keep_m, keep_v, eps, bc2,
                bc2_sqrt, step_size, eps_in_sqrt, working):
    tiny, zero = _tiny_zero(p)
    bad = 0
    for i in range(p.size):
        pi = p[i] * keep_p
        d = g[i] + weight_decay * pi
        mi = _flush(b1 * m[i] + keep_m * d, tiny, zero)
        vi = _flush(b2 * v[i] + keep_v * d * d, tiny, zero)
        denom = math.sqrt(vi / bc2 + eps) if eps_in_sqrt else math.sqrt(vi) / bc2_sqrt + eps
        pi = pi - step_size * mi / denom
        ok = math.isfinite(pi) & math.isfinite(mi) & math.isfinite(vi)
        m[i] = mi if ok else m[i]
        v[i] = vi if ok else v[i]
        pi = pi if ok else p[i]
        p[i] = pi
        if working:
            bf16_store(w, i, pi)
        bad += 0 if ok else 1
    return bad


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def adam_step(g, lrs, n_lrs, beta1, beta2, eps, weight_decay, decoupled_wd, eps_in_sqrt,
              working, ctrl, p, m, v, w):
    """Adam / AdamW (PyTorch): see optimizers.cu for the equations."""
    if _skipped(ctrl):
        return
    real = p.dtype.type
    t = float(ctrl[CTRL_T] + 1)
    lr = float(_step_lr(lrs, n_lrs, ctrl, real(0)))
    step_size = real(lr / (1.0 - beta1 ** t))
    bc2 = real(1.0 - beta2 ** t)
    one = real(1)
    keep_p = one - real(lr * float(decoupled_wd))
    b1, b2 = real(beta1), real(beta2)
    keep_m, keep_v, bc2_sqrt = one - b1, one - b2, real(math.sqrt(bc2))
    bad = 0
    for block in prange(n_blocks(p.size)):
        a, z = block_bounds(block, p.size)
        if working:  # a constant flag per call: LLVM drops the branch from each loop
            bad += _adam_block(g[a:z], p[a:z], m[a:z], v[a:z], w[a:z], keep_p, weight_decay, b1,
                               b2, keep_m, keep_v, eps, bc2, bc2_sqrt, step_size, eps_in_sqrt,
                               True)
        else:
            bad += _adam_block(g[a:z], p[a:z], m[a:z], v[a:z], w, keep_p, weight_decay, b1, b2,
                               keep_m, keep_v, eps, bc2, bc2_sqrt, step_size, eps_in_sqrt, False)
    if bad:
        ctrl[CTRL_BAD_UPDATE] = 1


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def axpy(b, s, a):
    """a += s b: the plain gradient step and the benchmarks' in-place bandwidth probe."""
    for block in prange(n_blocks(a.size)):
        lo, hi = block_bounds(block, a.size)
        _axpy_block(b[lo:hi], s, a[lo:hi])


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _axpy_block(b, s, a):
    for i in range(a.size):
        a[i] += s * b[i]
