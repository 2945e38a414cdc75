"""Numba twins of optimizers.cu: one fused update over the flat parameter buffer."""

import math

from numba import njit, prange

from .config import CACHE, FASTMATH


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def sgd_step(g, lr, momentum, dampening, weight_decay, nesterov, first, p, buf):
    """PyTorch SGD with momentum, dampening, nesterov and L2 weight decay."""
    for i in prange(p.size):
        d = g[i] + weight_decay * p[i]
        if momentum != 0:
            b = d if first else momentum * buf[i] + (1 - dampening) * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] -= lr * d


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def momentum_step(g, lr, beta, correction, p, v):
    """v = beta v + (1 - beta) g; p -= lr v correction."""
    for i in prange(p.size):
        vi = beta * v[i] + (1 - beta) * g[i]
        v[i] = vi
        p[i] -= lr * vi * correction


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def rmsprop_step(g, lr, alpha, eps, weight_decay, eps_in_sqrt, p, v):
    """v = alpha v + (1 - alpha) d^2; p -= lr d / (sqrt(v) + eps) or / sqrt(v + eps)."""
    for i in prange(p.size):
        d = g[i] + weight_decay * p[i]
        vi = alpha * v[i] + (1 - alpha) * d * d
        v[i] = vi
        denom = math.sqrt(vi + eps) if eps_in_sqrt else math.sqrt(vi) + eps
        p[i] -= lr * d / denom


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def adam_step(g, step_size, beta1, beta2, eps, weight_decay, decoupled_decay, bc2,
              eps_in_sqrt, p, m, v):
    """Adam / AdamW (PyTorch): see optimizers.cu for the equations."""
    bc2_sqrt = math.sqrt(bc2)
    for i in prange(p.size):
        pi = p[i] * (1 - decoupled_decay)
        d = g[i] + weight_decay * pi
        mi = beta1 * m[i] + (1 - beta1) * d
        vi = beta2 * v[i] + (1 - beta2) * d * d
        m[i] = mi
        v[i] = vi
        denom = math.sqrt(vi / bc2 + eps) if eps_in_sqrt else math.sqrt(vi) / bc2_sqrt + eps
        p[i] = pi - step_size * mi / denom
