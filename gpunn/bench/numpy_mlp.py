"""The gradient of an MLP (hidden sigmoid, softmax cross-entropy, ``Z = A @ W + b``, as
:class:`gpunn.MLP`) and of logistic regression, in vectorized NumPy as a user would write it,
and the same gradients one sample at a time: the contenders of the vectorization benchmark."""

import itertools
import math

import numpy as np


def sigmoid(Z):
    """The textbook ``1 / (1 + exp(-Z))`` (overflow of exp to inf gives the right 0)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-Z))


def init_params(sizes, dtype=np.float32, seed=0):
    """``[W0, b0, W1, b1, ...]``: Glorot-uniform weights, zero biases."""
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in itertools.pairwise(sizes):
        limit = np.sqrt(6.0 / (n_in + n_out))
        params += [rng.uniform(-limit, limit, (n_in, n_out)).astype(dtype),
                   np.zeros(n_out, dtype)]
    return params


def loss_and_grads(params, X, y):
    """Mean softmax cross-entropy of integer labels ``y`` and its gradients, like ``params``."""
    weights = params[0::2]
    activations = [X]
    for i, (W, b) in enumerate(zip(weights, params[1::2])):
        Z = activations[-1] @ W + b
        activations.append(Z if i == len(weights) - 1 else sigmoid(Z))
    Z = activations.pop()
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    P = E / E.sum(axis=1, keepdims=True)
    m, rows = X.shape[0], np.arange(X.shape[0])
    loss = -np.log(P[rows, y]).mean()
    dZ = P
    dZ[rows, y] -= 1
    dZ /= m
    grads = [None] * len(params)
    for i in range(len(weights) - 1, -1, -1):
        A = activations[i]
        grads[2 * i], grads[2 * i + 1] = A.T @ dZ, dZ.sum(axis=0)
        if i:
            dZ = (dZ @ weights[i].T) * A * (1 - A)
    return float(loss), grads


def mlp_grads_per_sample(params, X, y):
    """The gradient of the mean loss over ``X`` summed one sample at a time in a Python loop."""
    total = [np.zeros_like(p) for p in params]
    for i in range(X.shape[0]):
        _, grads = loss_and_grads(params, X[i:i + 1], y[i:i + 1])
        for acc, g in zip(total, grads):
            acc += g
    return [g / X.shape[0] for g in total]


def logreg_grads_vectorized(w, b, X, y):
    """Logistic regression (one sigmoid neuron): ``dw, db`` of the mean cross-entropy."""
    d = sigmoid(X @ w + b) - y
    return X.T @ d / X.shape[0], d.mean()


def logreg_grads_per_sample(w, b, X, y):
    """The same gradient with a loop over samples (each a NumPy dot product)."""
    dw, db = np.zeros_like(w), 0.0
    for i in range(X.shape[0]):
        d = sigmoid(X[i] @ w + b) - y[i]
        dw += d * X[i]
        db += d
    return dw / X.shape[0], db / X.shape[0]


def logreg_grads_loops(w, b, X, y):
    """The same gradient with Python loops over samples and features (no NumPy math)."""
    m, n = X.shape
    dw, db, weights = [0.0] * n, 0.0, w.tolist()
    for i in range(m):
        row = X[i].tolist()
        z = b
        for j in range(n):
            z += weights[j] * row[j]
        d = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else 1.0 - 1.0 / (1.0 + math.exp(z))
        d -= y[i]
        for j in range(n):
            dw[j] += d * row[j]
        db += d
    return np.array(dw) / m, db / m
