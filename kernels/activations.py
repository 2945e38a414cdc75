"""Numba twins of activations.cu: fused bias + activation forward, activation backward."""

import math

from numba import njit, prange

from .config import CACHE, FASTMATH

ACTIVATIONS = {"identity": 0, "sigmoid": 1, "relu": 2, "tanh": 3}
IDENTITY, SIGMOID, RELU, TANH = 0, 1, 2, 3


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def sigmoid(x):
    """Two-branch stable sigmoid: exp never overflows, finite for any finite x."""
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def activate(x, act):
    if act == SIGMOID:
        return sigmoid(x)
    if act == RELU:
        return x if x > 0 else x * 0
    if act == TANH:
        return math.tanh(x)
    return x


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def activation_grad(a, act):
    """f'(z) from the output a = f(z)."""
    if act == SIGMOID:
        return a * (1 - a)
    if act == RELU:
        return a * 0 + 1 if a > 0 else a * 0
    if act == TANH:
        return 1 - a * a
    return a * 0 + 1


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def bias_act_fwd(b, n_cols, act, Z):
    """Z[i] = f(Z[i] + b[i % n_cols]), in place."""
    for i in prange(Z.size):
        Z[i] = activate(Z[i] + b[i % n_cols], act)


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def act_bwd(A, act, dZ):
    """dZ[i] = dA[i] * f'(z_i), f' from the layer output A; dZ holds dA on entry."""
    for i in prange(dZ.size):
        dZ[i] *= activation_grad(A[i], act)
