"""Numba twins of optimizers.cu: one fused update over the flat parameter buffer.

Scalars arrive in the arrays' dtype (the backend converts them); constants are made with
``p.dtype.type`` so float32 math stays float32 and vectorizes at full width.
"""

import math

from numba import njit, prange

from .config import CACHE, FASTMATH


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def sgd_step(g, lr, momentum, dampening, weight_decay, nesterov, first, p, buf):
    """PyTorch SGD with momentum, dampening, nesterov and L2 weight decay."""
    keep = p.dtype.type(1) - dampening
    if momentum == 0:
        for i in prange(p.size):
            p[i] -= lr * (g[i] + weight_decay * p[i])
        return
    for i in prange(p.size):
        d = g[i] + weight_decay * p[i]
        b = d if first else momentum * buf[i] + keep * d
        buf[i] = b
        p[i] -= lr * (d + momentum * b if nesterov else b)


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def momentum_step(g, lr, beta, correction, p, v):
    """v = beta v + (1 - beta) g; p -= lr v correction."""
    keep = p.dtype.type(1) - beta
    scale = lr * correction
    for i in prange(p.size):
        vi = beta * v[i] + keep * g[i]
        v[i] = vi
        p[i] -= scale * vi


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def rmsprop_step(g, lr, alpha, eps, weight_decay, eps_in_sqrt, p, v):
    """v = alpha v + (1 - alpha) d^2; p -= lr d / (sqrt(v) + eps) or / sqrt(v + eps)."""
    keep = p.dtype.type(1) - alpha
    for i in prange(p.size):
        d = g[i] + weight_decay * p[i]
        vi = alpha * v[i] + keep * d * d
        v[i] = vi
        denom = math.sqrt(vi + eps) if eps_in_sqrt else math.sqrt(vi) + eps
        p[i] -= lr * d / denom


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def adam_step(g, step_size, beta1, beta2, eps, weight_decay, decoupled_decay, bc2,
              eps_in_sqrt, p, m, v):
    """Adam / AdamW (PyTorch): see optimizers.cu for the equations."""
    one = p.dtype.type(1)
    keep_p, keep_m, keep_v = one - decoupled_decay, one - beta1, one - beta2
    bc2_sqrt = math.sqrt(bc2)
    for i in prange(p.size):
        pi = p[i] * keep_p
        d = g[i] + weight_decay * pi
        mi = beta1 * m[i] + keep_m * d
        vi = beta2 * v[i] + keep_v * d * d
        m[i] = mi
        v[i] = vi
        denom = math.sqrt(vi / bc2 + eps) if eps_in_sqrt else math.sqrt(vi) / bc2_sqrt + eps
        p[i] = pi - step_size * mi / denom


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def axpy(b, s, a):
    """a += s b: the plain gradient step and the benchmarks' in-place bandwidth probe."""
    for i in prange(a.size):
        a[i] += s * b[i]
