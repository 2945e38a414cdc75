"""Slow, obviously correct float64 NumPy references, written from the math in DESIGN.md.

Nothing here imports the kernels' arithmetic: every formula is restated in float64 (stable forms
through ``np.logaddexp``), so a kernel bug cannot hide in a shared helper. Kernel references take
the kernel's arguments in the twin's order (outputs the kernel only writes are accepted and
ignored) and return ``{output argument name: expected array}``.
"""

import math

import numpy as np
from gpunn.kernels import activation_codes, from_z_activations
from reference_clip import clip_by_norm, clip_by_value, sum_partials  # noqa: F401
from reference_norm import (  # noqa: F401
    layernorm_bwd,
    layernorm_bwd_params,
    layernorm_fwd,
    layernorm_fwd_bf16,
    residual_add,
)
from reference_precision import bf16_to_f32, bf16_value, round_bf16, round_tf32  # noqa: F401

from gpunn.control import (  # noqa: F401  (the slot numbers are layout, not arithmetic)
    CTRL_BAD,
    CTRL_BAD_UPDATE,
    CTRL_HALT,
    CTRL_K,
    CTRL_T,
    STEP_APPLIED,
    STEP_BAD_UPDATE,
    STEP_HALTED,
    STEP_NONFINITE,
)

# Tight, dtype-keyed tolerances: float32 results to ~100 ulp, float64 to ~1e4 ulp.
TOL = {
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-6},
    np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-12},
}

# Activation codes as the kernels number them: an interface, not math, so read from
# kernels/activations.cuh like everything else; the references below go by name.
ACTIVATION_CODES = activation_codes()
# The activations whose backward reads the pre-activation (a layout fact of the kernels).
FROM_Z = from_z_activations()


def assert_close(actual, expected, dtype, scale=1.0, err_msg=""):
    """Assert ``actual`` matches float64 ``expected`` within ``TOL[dtype]`` times ``scale``."""
    tol = TOL[np.dtype(dtype)]
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == np.shape(expected), (
        f"{err_msg} shape {actual.shape} != {np.shape(expected)}")
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"] * scale,
                               atol=tol["atol"] * scale, err_msg=err_msg)


def _f64(x):
    return np.asarray(x, dtype=np.float64)


# --- activations -------------------------------------------------------------------------

def sigmoid(z):
    """1 / (1 + exp(-z)) as exp(-log(1 + exp(-z))): no overflow for any finite z."""
    return np.exp(-np.logaddexp(0.0, -_f64(z)))


# leaky_relu's slope for z < 0: PyTorch's nn.LeakyReLU default, restated.
LEAKY_SLOPE = 0.01


def _phi_cdf(z):
    """The normal CDF 0.5 erfc(-z / sqrt 2) (the C library's float64 erfc, elementwise): no
    cancellation for z < 0, where 1 + erf(z / sqrt 2) would lose every digit."""
    return 0.5 * np.vectorize(math.erfc, otypes=[np.float64])(-z / np.sqrt(2.0))


def _gelu_tanh_u(z):
    return np.sqrt(2.0 / np.pi) * (z + 0.044715 * z ** 3)


def activation(name, z):
    """f(z) for an activation name: identity, sigmoid, relu (max(z, 0)), tanh, leaky_relu."""
    z = _f64(z)
    functions = {"identity": lambda: z.copy(), "sigmoid": lambda: sigmoid(z),
                 "relu": lambda: np.maximum(z, 0.0), "tanh": lambda: np.tanh(z),
                 "leaky_relu": lambda: np.where(z > 0, z, LEAKY_SLOPE * z),
                 "gelu": lambda: z * _phi_cdf(z),
                 # 0.5 (1 + tanh u) = sigmoid(2u), without cancellation for z < 0
                 "gelu_tanh": lambda: z * sigmoid(2.0 * _gelu_tanh_u(z)),
                 "silu": lambda: z * sigmoid(z)}
    return functions[name]()


def activation_derivative(name, z):
    """f'(z) from the pre-activation z: 1, s(1 - s) with s = sigmoid(z), [z > 0], 1 / cosh(z)^2."""
    z = _f64(z)
    if name == "sigmoid":
        # s (1 - s) = sigmoid(z) sigmoid(-z): no cancellation in 1 - s.
        return sigmoid(z) * sigmoid(-z)
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "tanh":
        return np.exp(2.0 * (np.log(2.0) - np.logaddexp(z, -z)))
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, LEAKY_SLOPE)
    if name == "gelu":  # Phi(z) + z phi(z)
        return _phi_cdf(z) + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    if name == "gelu_tanh":  # d/dz 0.5 z (1 + tanh u), 1 + tanh u = 2 s(2u), 1 - tanh^2 = 4 s s'
        u2 = 2.0 * _gelu_tanh_u(z)
        du = np.sqrt(2.0 / np.pi) * (1.0 + 3 * 0.044715 * z * z)
        return sigmoid(u2) + 2.0 * z * du * sigmoid(u2) * sigmoid(-u2)
    if name == "silu":
        return sigmoid(z) + z * sigmoid(z) * sigmoid(-z)
    return np.ones_like(z)


def activation_derivative_from_output(name, a):
    """f'(z) written through a = f(z): 1, a (1 - a), [a > 0], 1 - a^2; for the activations not
    invertible from their output (``FROM_Z``) ``a`` is z and this is f'(z)."""
    if name in FROM_Z:
        return activation_derivative(name, a)
    a = _f64(a)
    derivatives = {"identity": lambda: np.ones_like(a), "sigmoid": lambda: a * (1.0 - a),
                   "relu": lambda: (a > 0).astype(np.float64), "tanh": lambda: 1.0 - a * a,
                   "leaky_relu": lambda: np.where(a > 0, 1.0, LEAKY_SLOPE)}
    return derivatives[name]()


def _activation_name(act):
    return {code: name for name, code in ACTIVATION_CODES.items()}[int(act)]


def bias_act_fwd(b, n_cols, act, Z):
    """Z <- f(Z + b), b broadcast over the rows of Z viewed as (rows, n_cols)."""
    rows = _f64(Z).reshape(-1, int(n_cols))
    out = activation(_activation_name(act), rows + _f64(b)[: int(n_cols)])
    return {"Z": out.reshape(np.shape(Z))}


def bias_act_fwd_keep(b, n_cols, act, Z, A=None):
    """Z <- Z + b (kept), A = f(Z + b)."""
    z = _f64(Z).reshape(-1, int(n_cols)) + _f64(b)[: int(n_cols)]
    a = activation(_activation_name(act), z)
    return {"Z": z.reshape(np.shape(Z)), "A": a.reshape(np.shape(Z))}


def bias_act_fwd_keep_bf16(b, n_cols, act, Z, A=None, Ah=None):
    """bias_act_fwd_keep; Ah = A (compared within a bfloat16 ulp)."""
    out = bias_act_fwd_keep(b, n_cols, act, Z)
    return {**out, "Ah": out["A"]}


def act_bwd(A, act, dZ):
    """dZ <- dA * f'(z), f' from the layer output A (dZ holds dA on entry)."""
    grad = activation_derivative_from_output(_activation_name(act), A)
    return {"dZ": _f64(dZ) * grad.reshape(np.shape(dZ))}


def bias_act_fwd_bf16(b, n_cols, act, Z, Zh=None):
    """bias_act_fwd; Zh = the output (compared within a bfloat16 ulp)."""
    out = bias_act_fwd(b, n_cols, act, Z)["Z"]
    return {"Z": out, "Zh": out}


def act_bwd_bf16(A, act, dZ, dZh=None):
    """act_bwd; dZh = the new dZ (compared within a bfloat16 ulp)."""
    out = act_bwd(A, act, dZ)["dZ"]
    return {"dZ": out, "dZh": out}



def bias_act_residual(b, R, n_cols, act, Z, A=None):
    """A = R + f(Z + b); Z keeps z (activations that read it) or f(z)."""
    name = _activation_name(act)
    z = _f64(Z).reshape(-1, int(n_cols)) + _f64(b)[: int(n_cols)]
    f = activation(name, z)
    kept = z if name in FROM_Z else f
    return {"Z": kept.reshape(np.shape(Z)), "A": _f64(R) + f.reshape(np.shape(Z))}


def bias_act_residual_bf16(b, R, n_cols, act, Z, A=None, Ah=None):
    """bias_act_residual; Ah = A (compared within a bfloat16 ulp)."""
    out = bias_act_residual(b, R, n_cols, act, Z)
    return {**out, "Ah": out["A"]}


def residual_act_bwd(S, dA, act, dZ=None):
    """dZ = dA * f'(z), f' from what bias_act_residual kept in S."""
    return {"dZ": act_bwd(S, act, dA)["dZ"]}


def residual_act_bwd_bf16(S, dA, act, dZ=None, dZh=None):
    """residual_act_bwd; dZh = dZ (compared within a bfloat16 ulp)."""
    out = residual_act_bwd(S, dA, act)["dZ"]
    return {"dZ": out, "dZh": out}

# --- dropout ----------------------------------------------------------------------------
# splitmix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", 2014;
# Vigna's splitmix64.c) restated with NumPy uint64 arrays: the state advances by the golden
# gamma, each output is the state after i + 1 advances run through the variant-13 finalizer.
# A mask takes 32 bits per element, two elements per output: element e the low half (e even)
# or the high half (e odd) of output e // 2 of the layer's key.

_U64 = np.uint64
_GAMMA = 0x9E3779B97F4A7C15


def splitmix64(state, index):
    """Output number ``index`` (from 0, array-like) of splitmix64 seeded with ``state``."""
    with np.errstate(over="ignore"):
        index = np.asarray(index, dtype=np.int64).astype(_U64)
        z = _U64(int(state) % 2**64) + (index + _U64(1)) * _U64(_GAMMA)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def drop_below(p):
    """The 32-bit threshold of drop probability ``p``: elements whose bits are below it drop."""
    return int(round(float(p) * 2**32))


def dropout_bits(seed, layer, t, elements):
    """The 32 random bits of each of ``elements`` (int64 array-like): half ``e % 2`` (low,
    high) of output ``e // 2`` of splitmix64 keyed ``splitmix64(splitmix64(seed, layer), t)``."""
    key = int(splitmix64(int(splitmix64(seed, layer)), t))
    elements = np.asarray(elements, dtype=np.int64)
    out = splitmix64(key, elements // 2)
    return np.where(elements % 2 == 1, out >> _U64(32), out & _U64(0xFFFFFFFF))


def dropout_keep(seed, layer, t, elements, p):
    """Boolean keep mask of ``elements`` (their indices in the step's batch) for the layer
    ``layer`` of a model seeded ``seed`` at update count ``t``, drop probability ``p``."""
    return dropout_bits(seed, layer, t, elements) >= _U64(drop_below(p))


def _dropout_factor(ctrl, seed, layer, offset, drop_below_, scale, n):
    """scale where the kernels' mask keeps elements offset .. offset + n - 1, else 0."""
    bits = dropout_bits(seed, layer, int(np.asarray(ctrl)[CTRL_T]), np.arange(n) + int(offset))
    return np.where(bits >= _U64(int(drop_below_)), float(scale), 0.0)


def bias_act_fwd_drop(b, n_cols, act, ctrl, seed, layer, offset, drop_below, scale, Z, A=None):
    """a = f(Z + b); A = a * m (m = scale where kept, else 0); Z <- z for the activations whose
    backward reads z (``FROM_Z``), else a."""
    kept = bias_act_fwd_keep(b, n_cols, act, Z)
    name = _activation_name(act)
    m = _dropout_factor(ctrl, seed, layer, offset, drop_below, scale, np.size(Z))
    saved = kept["Z"] if name in FROM_Z else kept["A"]
    return {"Z": saved, "A": kept["A"] * m.reshape(np.shape(Z))}


def bias_act_fwd_drop_bf16(b, n_cols, act, ctrl, seed, layer, offset, drop_below, scale, Z,
                           A=None, Ah=None):
    """bias_act_fwd_drop; Ah = A (compared within a bfloat16 ulp)."""
    out = bias_act_fwd_drop(b, n_cols, act, ctrl, seed, layer, offset, drop_below, scale, Z)
    return {**out, "Ah": out["A"]}


def act_bwd_drop(S, act, ctrl, seed, layer, offset, drop_below, scale, dZ):
    """dZ <- dA * m * f'(z), f' from S (z or the undropped output), m as the forward's."""
    m = _dropout_factor(ctrl, seed, layer, offset, drop_below, scale, np.size(dZ))
    return {"dZ": act_bwd(S, act, dZ)["dZ"] * m.reshape(np.shape(dZ))}


def act_bwd_drop_bf16(S, act, ctrl, seed, layer, offset, drop_below, scale, dZ, dZh=None):
    """act_bwd_drop; dZh = the new dZ (compared within a bfloat16 ulp)."""
    out = act_bwd_drop(S, act, ctrl, seed, layer, offset, drop_below, scale, dZ)["dZ"]
    return {"dZ": out, "dZh": out}


def bias_act_residual_drop(b, R, n_cols, act, ctrl, seed, layer, offset, drop_below, scale, Z,
                           A=None):
    """A = R + f(Z + b) * m; Z keeps what bias_act_residual keeps."""
    out = bias_act_residual(b, np.zeros(np.shape(Z)), n_cols, act, Z)
    m = _dropout_factor(ctrl, seed, layer, offset, drop_below, scale, np.size(Z))
    return {"Z": out["Z"], "A": _f64(R) + out["A"] * m.reshape(np.shape(Z))}


def bias_act_residual_drop_bf16(b, R, n_cols, act, ctrl, seed, layer, offset, drop_below, scale,
                                Z, A=None, Ah=None):
    """bias_act_residual_drop; Ah = A (compared within a bfloat16 ulp)."""
    out = bias_act_residual_drop(b, R, n_cols, act, ctrl, seed, layer, offset, drop_below,
                                 scale, Z)
    return {**out, "Ah": out["A"]}


def residual_act_bwd_drop(S, dA, act, ctrl, seed, layer, offset, drop_below, scale, dZ=None):
    """dZ = dA * m * f'(z), m as bias_act_residual_drop's."""
    return {"dZ": act_bwd_drop(S, act, ctrl, seed, layer, offset, drop_below, scale, dA)["dZ"]}


def residual_act_bwd_drop_bf16(S, dA, act, ctrl, seed, layer, offset, drop_below, scale,
                               dZ=None, dZh=None):
    """residual_act_bwd_drop; dZh = dZ (compared within a bfloat16 ulp)."""
    out = residual_act_bwd_drop(S, dA, act, ctrl, seed, layer, offset, drop_below, scale)["dZ"]
    return {"dZ": out, "dZh": out}


# --- losses ------------------------------------------------------------------------------

def _row_weights(W, shape):
    """The weight of every element of an output of ``shape``: each row's weight, float64."""
    rows = _f64(W)[: shape[0]]
    return rows.reshape(-1, 1) if len(shape) == 2 else rows


def bce_logits(Z, Y, W, n_cols, scale, loss=None, dZ=None):
    """Binary cross-entropy of sigmoid(z): w (log(1 + exp(z)) - z y); gradient
    w (sigmoid(z) - y) scale, w the weight of the element's row."""
    z, y = _f64(Z).reshape(-1, int(n_cols)), _f64(Y).reshape(-1, int(n_cols))
    w = _row_weights(W, z.shape)
    return {"loss": (w * (np.logaddexp(0.0, z) - z * y)).reshape(np.shape(Z)),
            "dZ": (w * (sigmoid(z) - y) * float(scale)).reshape(np.shape(Z))}


def logsumexp_rows(Z):
    """log(sum_j exp(z_j)) of every row, shifted by the row maximum."""
    z = _f64(Z)
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


def softmax_xent(Z, labels, W, n_cols, scale, loss=None, dZ=None):
    """Per row w (lse(z) - z_y); per element w (softmax(z) - onehot(y)) * scale; labels as
    reals, w the row's weight."""
    rows = _f64(Z).reshape(-1, int(n_cols))
    labels = np.asarray(labels).astype(np.int64)[: rows.shape[0]]
    row_loss, grad = softmax_cross_entropy(rows, labels)
    w = _row_weights(W, rows.shape[:1])
    return {"loss": w * row_loss, "dZ": (w[:, None] * grad * float(scale)).reshape(np.shape(Z))}


def softmax_cross_entropy(Z, labels):
    """Row losses lse(z) - z_y and gradients softmax(z) - onehot(y), from the logits alone."""
    z = _f64(Z)
    lse = logsumexp_rows(z)
    rows = np.arange(z.shape[0])
    onehot = np.zeros_like(z)
    onehot[rows, labels] = 1.0
    return lse - z[rows, labels], np.exp(z - lse[:, None]) - onehot


def mse(Z, Y, W, n_cols, scale, loss=None, dZ=None):
    """Squared error w (z - y)^2 per element and its gradient w 2 (z - y) * scale, w the weight
    of the element's row."""
    diff = _f64(Z).reshape(-1, int(n_cols)) - _f64(Y).reshape(-1, int(n_cols))
    w = _row_weights(W, diff.shape)
    return {"loss": (w * diff ** 2).reshape(np.shape(Z)),
            "dZ": (w * 2.0 * diff * float(scale)).reshape(np.shape(Z))}


# --- the step's control array: slots and statuses as kernels/step.cuh defines them -----------


def _real(x, like):
    """``x`` rounded to the dtype of the array ``like``, as the kernels' per-element math."""
    return float(np.asarray(like).dtype.type(x))


def _update(lrs, n_lrs, ctrl, state, compute, working, w):
    """An update kernel's contract: nothing changes when ctrl[BAD] or ctrl[HALT] is set; else
    ``compute(lr, t)`` with lr = lrs[ctrl[K]] (0 past n_lrs) and t = ctrl[T] + 1. An element
    whose new parameter or state value, in the arrays' dtype, is not finite keeps all its
    previous values, and ctrl[BAD_UPDATE] = 1. Optimizer state below the dtype's smallest
    normal number is stored as 0 (``_flush``, applied by each optimizer's ``compute``). The
    working copy ``w`` (bfloat16 bits, compared within a bfloat16 ulp) becomes the new
    parameters when ``working``."""
    ctrl = np.array(ctrl, dtype=np.int64)
    if ctrl[CTRL_BAD] or ctrl[CTRL_HALT]:
        return {**{k: _f64(v) for k, v in state.items()}, "ctrl": ctrl, "w": bf16_value(w)}
    k = int(ctrl[CTRL_K])
    lr = float(lrs[k]) if 0 <= k < n_lrs else 0.0
    dtype = np.asarray(state["p"]).dtype
    with np.errstate(over="ignore", invalid="ignore"):  # stored in their dtype: may overflow
        out = compute(lr, int(ctrl[CTRL_T]) + 1)
        out["p"] = out["p"].astype(dtype).astype(np.float64)
        ok = np.logical_and.reduce([np.isfinite(a.astype(dtype)) for a in out.values()])
    if not ok.all():
        ctrl[CTRL_BAD_UPDATE] = 1
    out = {key: np.where(ok, a, _f64(state[key])) for key, a in out.items()}
    return {**out, "ctrl": ctrl, "w": out["p"] if working else bf16_value(w)}


def _flush(x, like):
    """State as the kernels store it: 0 where its value in the dtype of ``like`` is subnormal
    (below ``finfo.tiny``)."""
    with np.errstate(over="ignore"):
        rounded = np.asarray(x).astype(np.asarray(like).dtype)
    return np.where(np.abs(rounded) < np.finfo(rounded.dtype).tiny, 0.0, x)


def _stored(x, like):
    """State as the kernels store it and read it back: in the dtype of ``like`` (a square
    that overflows it is inf there, and the update then divides by sqrt(inf))."""
    with np.errstate(over="ignore"):
        return np.asarray(x).astype(np.asarray(like).dtype).astype(np.float64)


def sgd_step(g, lrs, n_lrs, momentum, dampening, weight_decay, nesterov, working, ctrl, p, buf,
             w):
    """PyTorch SGD: d = g + wd p; buf = d on the first step (t = 1), else
    mu buf + (1 - dampening) d; d = d + mu buf (nesterov) or buf; p -= lr d. Without
    momentum, buf is untouched."""
    def compute(lr, t):
        d = _f64(g) + weight_decay * _f64(p)
        new_buf = _f64(buf).copy()
        if momentum != 0:
            new_buf = d.copy() if t == 1 else momentum * new_buf + (1.0 - dampening) * d
            new_buf = _flush(new_buf, p)
            d = d + momentum * new_buf if nesterov else new_buf
        return {"p": _f64(p) - lr * d, "buf": new_buf}

    return _update(lrs, n_lrs, ctrl, {"p": p, "buf": buf}, compute, working, w)


def momentum_step(g, lrs, n_lrs, beta, bias_correction, working, ctrl, p, v, w):
    """Exponentially weighted average v = beta v + (1 - beta) g; p -= lr * correction * v,
    correction = 1 / (1 - beta^t) with bias_correction."""
    def compute(lr, t):
        b = _real(beta, p)
        new_v = _flush(b * _f64(v) + (1.0 - b) * _f64(g), p)
        correction = 1.0 / (1.0 - beta ** t) if bias_correction else 1.0
        return {"p": _f64(p) - lr * correction * new_v, "v": new_v}

    return _update(lrs, n_lrs, ctrl, {"p": p, "v": v}, compute, working, w)


def rmsprop_step(g, lrs, n_lrs, alpha, eps, weight_decay, eps_in_sqrt, working, ctrl, p, v, w):
    """PyTorch RMSprop: v = alpha v + (1 - alpha) d^2; p -= lr d / (sqrt(v) + eps), or
    / sqrt(v + eps) with eps_in_sqrt (Keras); d = g + wd p."""
    def compute(lr, t):
        d = _f64(g) + weight_decay * _f64(p)
        new_v = _flush(_stored(alpha * _f64(v) + (1.0 - alpha) * d ** 2, p), p)
        denom = np.sqrt(new_v + eps) if eps_in_sqrt else np.sqrt(new_v) + eps
        return {"p": _f64(p) - lr * d / denom, "v": new_v}

    return _update(lrs, n_lrs, ctrl, {"p": p, "v": v}, compute, working, w)


def adam_step(g, lrs, n_lrs, beta1, beta2, eps, weight_decay, decoupled_wd, eps_in_sqrt, working,
              ctrl, p, m, v, w):
    """Adam (Kingma & Ba, Algorithm 1, as PyTorch): lr m_hat / (sqrt(v_hat) + eps),
    m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t). AdamW first shrinks p by
    lr * decoupled_wd; Adam's L2 adds weight_decay * p to the gradient. The betas of the moment
    averages are those of the parameters' dtype; the bias corrections use them exactly."""
    def compute(lr, t):
        b1, b2 = _real(beta1, p), _real(beta2, p)
        q = _f64(p) * (1.0 - lr * decoupled_wd)
        d = _f64(g) + weight_decay * q
        new_m = _flush(b1 * _f64(m) + (1.0 - b1) * d, p)
        new_v = _flush(_stored(b2 * _f64(v) + (1.0 - b2) * d ** 2, p), p)
        m_hat, v_hat = new_m / (1.0 - beta1 ** t), new_v / (1.0 - beta2 ** t)
        denom = np.sqrt(v_hat + eps) if eps_in_sqrt else np.sqrt(v_hat) + eps
        return {"p": q - lr * m_hat / denom, "m": new_m, "v": new_v}

    return _update(lrs, n_lrs, ctrl, {"p": p, "m": m, "v": v}, compute, working, w)


# --- the step's bookkeeping kernels ---------------------------------------------------------

def gather_rows(src, order, ctrl, n_src, n_order, n_pos, stride, offset, n_cols, out):
    """Rows order[p % n_order] of src (n_cols wide), p = ctrl[K] * stride + offset + r;
    positions from n_pos on, or rows past the end of src, leave out untouched."""
    src = _f64(src).reshape(-1)
    result = _f64(out).reshape(-1, int(n_cols)).copy()
    first = int(ctrl[CTRL_K]) * int(stride) + int(offset)
    for r in range(result.shape[0]):
        if first + r < n_pos and n_order > 0:
            row = int(order[(first + r) % n_order])
            if 0 <= row and (row + 1) * n_cols <= n_src:
                result[r] = src[row * n_cols:(row + 1) * n_cols]
    return {"out": result.reshape(np.shape(out))}


def gather_rows_bf16(src, order, ctrl, n_src, n_order, n_pos, stride, offset, n_cols, out,
                     half):
    """gather_rows, and its gathered rows rounded to bfloat16 into ``half`` (as values; rows
    it leaves alone keep the values of their bits)."""
    gathered = gather_rows(src, order, ctrl, n_src, n_order, n_pos, stride, offset, n_cols,
                           out)["out"]
    first = int(ctrl[CTRL_K]) * int(stride) + int(offset)
    values = bf16_value(np.asarray(half)).reshape(-1, int(n_cols))
    rounded = round_bf16(gathered.reshape(-1, int(n_cols)))["out"]
    for r in range(values.shape[0]):
        if first + r < n_pos and n_order > 0:
            row = int(order[(first + r) % n_order])
            if 0 <= row and (row + 1) * n_cols <= n_src:
                values[r] = rounded[r]
    return {"out": gathered, "half": values.reshape(np.shape(half))}


def nonfinite_check(total, g, ctrl):
    """ctrl[BAD] = 1 when total[0] or any entry of g is NaN or inf."""
    ctrl = np.array(ctrl, dtype=np.int64)
    if not (np.isfinite(_f64(g)).all() and np.isfinite(float(total[0]))):
        ctrl[CTRL_BAD] = 1
    return {"ctrl": ctrl}


def step_end(total, n_steps, halt_on_nonfinite, ctrl, record):
    """Record total and status of step k = ctrl[K], count an applied update, halt after a bad
    update (or a non-finite step with halt_on_nonfinite), clear the flags, k += 1."""
    ctrl, record = np.array(ctrl, dtype=np.int64), _f64(record).copy()
    k = int(ctrl[CTRL_K])
    status = (STEP_HALTED if ctrl[CTRL_HALT] else STEP_NONFINITE if ctrl[CTRL_BAD]
              else STEP_BAD_UPDATE if ctrl[CTRL_BAD_UPDATE] else STEP_APPLIED)
    if 0 <= k < n_steps:
        record[k], record[n_steps + k] = float(total[0]), status
    ctrl[CTRL_T] += status in (STEP_APPLIED, STEP_BAD_UPDATE)
    if status == STEP_BAD_UPDATE or (status == STEP_NONFINITE and halt_on_nonfinite):
        ctrl[CTRL_HALT] = 1
    ctrl[CTRL_BAD] = ctrl[CTRL_BAD_UPDATE] = 0
    ctrl[CTRL_K] = k + 1
    return {"ctrl": ctrl, "record": record}


# --- optimizers over many steps: the public hyperparameters, not the kernel's arguments -----

# One row per optimizer variant (optax-style), read by tests/test_optim.py (trajectories
# against run_<name> and torch) and tests/kernel_cases.py (the kernel <class.kernel> against its
# reference at the first and a later step, skipped, with a bf16 working copy). A new optimizer
# is its two references here and one more row.
OPTIMIZER_CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.05}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("momentum", {"lr": 0.1}),
    ("momentum", {"lr": 0.1, "beta": 0.8, "bias_correction": True}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "weight_decay": 0.05}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-4, "eps_in_sqrt": True}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.01, "weight_decay": 0.05}),
    ("adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-4, "eps_in_sqrt": True}),
    ("adamw", {"lr": 0.01}),
    ("adamw", {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.1, "eps_in_sqrt": True}),
]


def run_sgd(p, grads, lrs, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """PyTorch SGD over a gradient sequence; the parameters after every step, float64."""
    p, buf, trajectory = _f64(p), None, []
    for g, lr in zip(_f64(grads), lrs):
        d = g + weight_decay * p
        if momentum:
            buf = d if buf is None else momentum * buf + (1.0 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
        trajectory.append(p)
    return np.array(trajectory)


def run_momentum(p, grads, lrs, beta=0.9, bias_correction=False):
    """The course's momentum: v = beta v + (1 - beta) g; p -= lr v (or v / (1 - beta^t))."""
    p, v, trajectory = _f64(p), 0.0, []
    for t, (g, lr) in enumerate(zip(_f64(grads), lrs), start=1):
        v = beta * v + (1.0 - beta) * g
        p = p - lr * (v / (1.0 - beta ** t) if bias_correction else v)
        trajectory.append(p)
    return np.array(trajectory)


def run_rmsprop(p, grads, lrs, alpha=0.99, eps=1e-8, weight_decay=0.0, eps_in_sqrt=False):
    """PyTorch RMSprop (eps outside the root) or, with eps_in_sqrt, Keras's; float64."""
    p, v, trajectory = _f64(p), 0.0, []
    for g, lr in zip(_f64(grads), lrs):
        g = g + weight_decay * p
        v = alpha * v + (1.0 - alpha) * g * g
        p = p - lr * g / (np.sqrt(v + eps) if eps_in_sqrt else np.sqrt(v) + eps)
        trajectory.append(p)
    return np.array(trajectory)


def run_adam(p, grads, lrs, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             eps_in_sqrt=False, decoupled=False):
    """Adam, Kingma & Ba Algorithm 1 with PyTorch's L2 (or, decoupled, AdamW's decay)."""
    (b1, b2), p, m, v, trajectory = betas, _f64(p), 0.0, 0.0, []
    for t, (g, lr) in enumerate(zip(_f64(grads), lrs), start=1):
        if decoupled:
            p = p - lr * weight_decay * p
        else:
            g = g + weight_decay * p
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g * g
        m_hat, v_hat = m / (1.0 - b1 ** t), v / (1.0 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat + eps) if eps_in_sqrt else np.sqrt(v_hat) + eps)
        trajectory.append(p)
    return np.array(trajectory)


def run_adamw(p, grads, lrs, weight_decay=0.01, **hyperparameters):
    """AdamW (Loshchilov & Hutter; PyTorch): p -= lr wd p, then Adam on the plain gradient."""
    return run_adam(p, grads, lrs, weight_decay=weight_decay, decoupled=True, **hyperparameters)


# --- models: MLP forward, losses, backprop -----------------------------------------------

def mlp_forward(params, activations, X):
    """Outputs ``[A1, ..., AL]`` of ``Z = A_prev W + b``, ``A = f(Z)``; params ``[(W, b), ...]``."""
    outputs, A = [], _f64(X)
    for (W, b), name in zip(params, activations):
        A = activation(name, A @ _f64(W) + _f64(b))
        outputs.append(A)
    return outputs


def loss_and_dZ(loss, Z, y, weights=None):
    """Mean loss and its gradient w.r.t. the logits/outputs ``Z``, as PyTorch's defaults.

    bce: BCEWithLogitsLoss, mean over all elements. cross_entropy: CrossEntropyLoss, mean over
    rows. mse: MSELoss, mean over all elements. With per-row ``weights`` the weighted mean
    ``sum(w l) / sum(w)`` over the rows (each row's elements averaged), as CrossEntropyLoss
    with class weights and scikit-learn's MLP with sample weights; 0 when the weights sum to 0.
    """
    Z = _f64(Z)
    if loss == "cross_entropy":
        terms, grad = softmax_cross_entropy(Z, np.asarray(y))
    else:
        Y = _f64(y).reshape(Z.shape)
        if loss == "bce":
            terms, grad = np.logaddexp(0.0, Z) - Z * Y, sigmoid(Z) - Y
        else:
            terms, grad = (Z - Y) ** 2, 2.0 * (Z - Y)
        terms, grad = terms.mean(axis=1), grad / Z.shape[1]
    w = np.ones(Z.shape[0]) if weights is None else _f64(weights)
    total = w.sum()
    if total == 0:
        return 0.0, np.zeros_like(Z)
    return float((w * terms).sum() / total), w[:, None] * grad / total


def mlp_loss_and_grad(params, activations, X, y, loss, weights=None):
    """Loss and ``[(dW, db), ...]`` by hand-written backprop, f' from the pre-activations;
    ``weights`` per row as :func:`loss_and_dZ`."""
    X = _f64(X)
    pre, A = [], X
    for (W, b), name in zip(params, activations):
        pre.append(A @ _f64(W) + _f64(b))
        A = activation(name, pre[-1])
    value, dA = loss_and_dZ(loss, A, y, weights)
    inputs = [X] + [activation(n, z) for n, z in zip(activations[:-1], pre[:-1])]
    grads = []
    for (W, _), name, z, A_prev in reversed(list(zip(params, activations, pre, inputs))):
        dZ = dA * activation_derivative(name, z)
        grads.append((A_prev.T @ dZ, dZ.sum(axis=0)))
        dA = dZ @ _f64(W).T
    return value, grads[::-1]


def axpy(b, s, a):
    """a + s b in float64."""
    return {"a": _f64(a) + float(s) * _f64(b)}
