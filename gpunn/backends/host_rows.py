"""Host-side row copies of the streaming path (:mod:`gpunn.staging`), compiled by Numba.

The staging thread places each block of source rows at their visiting places in host memory
(the CPU's ring, or CUDA's page-locked buffer) and must refuse NaN/inf. NumPy does that in two
passes over the block (``isfinite(...).all()``, then the scatter); this does both in one.
``nogil``, not ``parallel``: it runs on the helper thread while the training step's kernels
run on Numba's pool, and holds neither the GIL nor a worker.
"""

import math

import numpy as np
from numba import njit

from gpunn.kernels.config import CACHE


@njit(nogil=True, cache=CACHE)
def _scatter_rows(rows, at, out):
    bad = 0
    for i in range(rows.shape[0]):
        src, dst = rows[i], out[at[i]]
        for j in range(src.size):
            v = src[j]
            dst[j] = v
            bad += 0 if math.isfinite(v) else 1
    return bad


def scatter_rows(rows, at, out):
    """``out[at[i]] = rows[i]`` for each row ``i`` of the 2-D float array ``rows`` (``out``:
    2-D, C-contiguous, of its dtype); returns the count of NaN/inf values copied. The compiled
    loop does not check bounds, so the shapes and ``at`` are checked here (ValueError)."""
    rows, at = np.ascontiguousarray(rows), np.asarray(at, np.int64)
    if (rows.ndim != 2 or out.ndim != 2 or rows.shape[1] != out.shape[1]
            or at.shape != rows.shape[:1] or not out.flags.c_contiguous):
        raise ValueError(f"scatter_rows: expected rows (m, d), at (m,) and a C-contiguous out "
                         f"(n, d), got {rows.shape}, {at.shape} and {out.shape}")
    if at.size and not (0 <= at.min() and at.max() < len(out)):
        raise ValueError(f"scatter_rows: expected row indices in [0, {len(out)}), got "
                         f"{at.min()} to {at.max()}")
    return int(_scatter_rows(rows, at, out))


def signatures(dtype):
    """The argument types :func:`scatter_rows` is called with in ``dtype`` ("float32",
    "float64"): rows writable (a block) or read-only (a memory map's), for ``gpunn
    compile``."""
    from numba import types

    real = {"float32": types.float32, "float64": types.float64}[dtype]
    out = types.Array(real, 2, "C")
    return [(types.Array(real, 2, "C", readonly=readonly), types.Array(types.int64, 1, "C"),
             out) for readonly in (False, True)]
