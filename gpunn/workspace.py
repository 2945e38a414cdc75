"""Row buffers allocated once and reused: a batch of ``m`` rows uses views of the first ``m``."""

import numpy as np

# How many distinct row counts keep cached views (full batch, last partial batch, evaluation).
_MAX_CACHED = 8


class Workspace:
    """Named device arrays with a leading row dimension of ``capacity`` rows.

    ``rows(m)`` returns a dict of views ``array[:m]`` (C-contiguous, as row slices of C-ordered
    arrays are; uint16 ones, bfloat16 bits, in the backend's layout: ``bf16_zeros``), cached per
    ``m``, so a training step that asks again creates nothing.

    Args:
        backend: the backend whose ``xp`` allocates the arrays.
        capacity: rows per array.
        specs: ``{name: (row_shape, dtype)}``; ``row_shape`` is the shape of one row.
    """

    def __init__(self, backend, capacity, specs):
        self.capacity = int(capacity)
        self.specs = dict(specs)
        # uint16 buffers hold the bfloat16 bits of GEMM operands: the backend's layout of them.
        self.arrays = {name: backend.bf16_zeros((self.capacity, *shape))
                       if np.dtype(dtype) == np.uint16 else
                       backend.xp.empty((self.capacity, *shape), dtype=np.dtype(dtype))
                       for name, (shape, dtype) in self.specs.items()}
        self._views = {}

    def rows(self, m):
        """Views of the first ``m`` rows of every array, by name."""
        views = self._views.get(m)
        if views is None:
            if m > self.capacity:
                raise ValueError(f"rows: expected at most {self.capacity} rows, got {m}")
            if len(self._views) >= _MAX_CACHED:
                self._views.clear()
            views = self._views[m] = {name: a[:m] for name, a in self.arrays.items()}
        return views
