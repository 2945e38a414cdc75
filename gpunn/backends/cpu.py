"""CPU backend: NumPy arrays, BLAS matmuls, Numba-compiled kernel twins."""

import importlib

import numpy as np

from gpunn.backends.base import Backend


class CpuBackend(Backend):
    """Runs every kernel as its Numba twin (``gpunn.kernels.<module>.<name>``) on host arrays."""

    name = "cpu"
    xp = np
    device = "cpu"

    def __init__(self):
        self._twins = {}

    def _launch(self, spec, converted):
        args, _, _ = converted
        twin = self._twins.get(spec.name)
        if twin is None:
            module = importlib.import_module(f"gpunn.kernels.{spec.module}")
            twin = self._twins[spec.name] = getattr(module, spec.name)
        twin(*args)
