"""LayerNorm over the features of each row, the normalization a Dense layer can take on its
input (``Dense(..., norm="layer")``): ``Y = (x - mean) / sqrt(var + eps) * gamma + beta``.

As PyTorch's ``nn.LayerNorm(n)``: the biased variance of each row, ``eps = 1e-5`` inside the
square root, ``gamma`` (weight) starting at ones and ``beta`` (bias) at zeros. The row
statistics (mean, 1/sqrt(var + eps)) are computed and kept in the model's dtype, from the
float32 activations under ``precision="bf16"`` too: only the normalized output the GEMM reads
is rounded to bfloat16. Backward (kernels/norm.cu)::

    dX = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dY * gamma,
    dgamma = sum over rows of dY * xhat,  dbeta = sum over rows of dY.
"""

import numpy as np

from gpunn._checks import check_int

# PyTorch's nn.LayerNorm default.
LAYERNORM_EPS = 1e-5


class LayerNorm:
    """Row-wise LayerNorm over ``n`` features, its ``gamma`` and ``beta`` views of the model's
    flat buffers (bound by the layer that owns it).

    Args:
        n: features per row.
    """

    name = "layer"

    def __init__(self, n):
        self.n = check_int("n", n, low=1)
        self.eps = LAYERNORM_EPS
        self.gamma = self.beta = self.dgamma = self.dbeta = None

    def __repr__(self):
        return f"LayerNorm({self.n})"

    @property
    def n_params(self):
        """``gamma`` and ``beta``: ``2 n``."""
        return 2 * self.n

    def initial(self):
        """``(gamma, beta)`` initial host values: ones and zeros (PyTorch's)."""
        return np.ones(self.n), np.zeros(self.n)

    def bind(self, params, grads, gamma_start, beta_start):
        """Make ``gamma``, ``beta``, ``dgamma``, ``dbeta`` views of the flat buffers."""
        g, b = slice(gamma_start, gamma_start + self.n), slice(beta_start, beta_start + self.n)
        self.gamma, self.beta, self.dgamma, self.dbeta = params[g], params[b], grads[g], grads[b]

    def forward(self, be, X, mean, rstd, Y=None, Yh=None):
        """Normalize the rows of ``X`` into ``Y``, or only into its bfloat16 bits ``Yh`` when
        given; the row statistics go to ``mean`` and ``rstd`` (one per row)."""
        if Yh is None:
            be.kernel("layernorm_fwd", X, self.gamma, self.beta, self.n, self.eps, mean, rstd, Y)
        else:
            be.kernel("layernorm_fwd_bf16", X, self.gamma, self.beta, self.n, self.eps, mean,
                      rstd, Yh)

    def backward(self, be, X, mean, rstd, dY, dX=None, dR=None):
        """Fill ``dgamma``, ``dbeta`` from the output gradient ``dY``; ``dX``, if given,
        receives the input gradient, plus ``dR`` when given (a residual connection's)."""
        be.kernel("layernorm_bwd_params", X, mean, rstd, dY, X.shape[0], self.dgamma,
                  self.dbeta)
        if dX is not None:
            be.kernel("layernorm_bwd", X, self.gamma, mean, rstd, dY, dY if dR is None else dR,
                      self.n, int(dR is not None), dX)


# Normalizations a layer can take, by name (``Dense(norm=...)``, ``--norm``).
NORMS = {LayerNorm.name: LayerNorm}
