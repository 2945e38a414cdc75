"""Float64 references of gradient clipping (kernels/clip.cu), restated from PyTorch's
``clip_grad_norm_`` (``max_norm / (norm + 1e-6)``, at most 1) and ``clip_grad_value_``.

reference.py re-exports them, where the kernel tables look them up by kernel name.
"""

import math

import numpy as np

from gpunn.control import CTRL_BAD


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def sum_partials(x, n_x, square, out):
    """out[j] = the sum of x[j::n] (squared when ``square``), n = out.size; beyond n_x, 0."""
    x = _f64(x)[:int(n_x)]
    x = x * x if square else x
    n = np.size(out)
    return {"out": np.array([x[j::n].sum() for j in range(n)])}


def global_norm(g):
    """The 2-norm of all of g (math.fsum: exactly rounded)."""
    return math.sqrt(math.fsum(float(v) ** 2 for v in _f64(g).reshape(-1)))


def clip_factor(norm, max_norm):
    """PyTorch's clip coefficient: min(1, max_norm / (norm + 1e-6))."""
    return min(1.0, float(max_norm) / (norm + 1e-6))


def clip_by_norm(sumsq, max_norm, ctrl, g):
    """g times clip_factor(sqrt(sumsq[0])); a non-finite norm sets ctrl[BAD], g unchanged."""
    ctrl, g = np.array(ctrl, dtype=np.int64), _f64(g)
    norm = math.sqrt(float(sumsq[0])) if float(sumsq[0]) >= 0 else math.nan
    if not math.isfinite(norm):
        ctrl[CTRL_BAD] = 1
        return {"ctrl": ctrl, "g": g}
    return {"ctrl": ctrl, "g": g * clip_factor(norm, max_norm)}


def clip_by_value(max_value, g):
    """g clamped to [-max_value, max_value]; NaN stays NaN."""
    g = _f64(g)
    return {"g": np.where(np.isnan(g), g, np.clip(g, -float(max_value), float(max_value)))}
