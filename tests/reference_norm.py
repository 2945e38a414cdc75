"""Float64 references of the LayerNorm and residual kernels (kernels/norm.cu), restated from
the formulas (PyTorch's nn.LayerNorm: biased variance, eps inside the square root).

reference.py re-exports them, where the kernel tables look them up by kernel name.
"""

import numpy as np


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _rows(x, n_cols):
    return _f64(x).reshape(-1, int(n_cols))


def layernorm_stats(X, n_cols, eps):
    """Mean and 1 / sqrt(biased variance + eps) of each row, float64."""
    x = _rows(X, n_cols)
    mean = x.mean(axis=1)
    return mean, 1.0 / np.sqrt(((x - mean[:, None]) ** 2).mean(axis=1) + float(eps))


def layernorm(X, gamma, beta, n_cols, eps):
    """(x - mean) / sqrt(var + eps) * gamma + beta per row, float64, shaped like X."""
    mean, rstd = layernorm_stats(X, n_cols, eps)
    x = _rows(X, n_cols)
    y = (x - mean[:, None]) * rstd[:, None] * _f64(gamma) + _f64(beta)
    return y.reshape(np.shape(X))


def layernorm_fwd(X, gamma, beta, n_cols, eps, mean=None, rstd=None, Y=None):
    """Y = LN(X) gamma + beta; the row statistics."""
    m, r = layernorm_stats(X, n_cols, eps)
    return {"mean": m.reshape(np.shape(mean)), "rstd": r.reshape(np.shape(rstd)),
            "Y": layernorm(X, gamma, beta, n_cols, eps)}


def layernorm_fwd_bf16(X, gamma, beta, n_cols, eps, mean=None, rstd=None, Yh=None):
    """layernorm_fwd; Yh = Y (compared within a bfloat16 ulp)."""
    out = layernorm_fwd(X, gamma, beta, n_cols, eps, mean, rstd)
    return {"mean": out["mean"], "rstd": out["rstd"], "Yh": out["Y"]}


def layernorm_input_grad(X, gamma, dY, n_cols, eps):
    """dL/dX of LN(X) gamma + beta for the upstream gradient dY, by the chain rule written out
    in float64: xhat = (x - mu) s, s = (v + eps)^(-1/2); dxhat = dY gamma;
    dX = s dxhat + dv 2 (x - mu) / n + dmu / n."""
    x, n = _rows(X, n_cols), int(n_cols)
    mu = x.mean(axis=1, keepdims=True)
    v = ((x - mu) ** 2).mean(axis=1, keepdims=True)
    s = 1.0 / np.sqrt(v + float(eps))
    dxhat = _rows(dY, n_cols) * _f64(gamma)
    dv = (dxhat * (x - mu)).sum(axis=1, keepdims=True) * -0.5 * s ** 3
    dmu = -(dxhat * s).sum(axis=1, keepdims=True) - dv * 2.0 * (x - mu).mean(axis=1,
                                                                             keepdims=True)
    return (dxhat * s + dv * 2.0 * (x - mu) / n + dmu / n).reshape(np.shape(X))


def layernorm_bwd(X, gamma, mean, rstd, dY, dR, n_cols, residual, dX=None):
    """dX of LayerNorm from the kept statistics (here: the float64 ones of the given mean and
    rstd are taken as exact inputs), plus dR if residual."""
    x, n = _rows(X, n_cols), int(n_cols)
    mu, s = _f64(mean).reshape(-1, 1), _f64(rstd).reshape(-1, 1)
    xhat = (x - mu) * s
    g = _rows(dY, n_cols) * _f64(gamma)
    dx = s * (g - g.sum(axis=1, keepdims=True) / n
              - xhat * (g * xhat).sum(axis=1, keepdims=True) / n)
    if residual:
        dx = dx + _rows(dR, n_cols)
    return {"dX": dx.reshape(np.shape(dX) if dX is not None else np.shape(X))}


def layernorm_bwd_params(X, mean, rstd, dY, n_rows, dgamma=None, dbeta=None):
    """dgamma = column sums of dY xhat, dbeta = column sums of dY."""
    x = _f64(X).reshape(int(n_rows), -1)
    xhat = (x - _f64(mean).reshape(-1, 1)) * _f64(rstd).reshape(-1, 1)
    d = _f64(dY).reshape(x.shape)
    return {"dgamma": (d * xhat).sum(axis=0), "dbeta": d.sum(axis=0)}


def residual_add(A, B, C=None):
    """C = A + B."""
    return {"C": _f64(A) + _f64(B)}
