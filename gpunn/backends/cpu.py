"""CPU backend: NumPy arrays, BLAS matmuls, Numba-compiled kernel twins."""

import importlib
import os

import numpy as np

from gpunn.backends.base import Backend

# Variables with which a user chooses how OpenMP worker threads wait; gpunn then leaves it be.
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
_started = False


def start_numba_threads():
    """Start Numba's thread pool, with OpenMP workers that sleep, not spin, when idle.

    Called by the first kernel launch; call it before ``numba.set_num_threads`` or anything
    else that starts Numba's threads, or they start with the runtime's default wait policy.

    A training step alternates BLAS calls (OpenBLAS's own threads) with Numba kernels (an
    OpenMP pool). GNU OpenMP workers spin for milliseconds after each kernel by default and take
    the cores the next matmul needs: on 2 cores the MLP 784-1024-1024-10 step at batch 128 took
    57 ms instead of 12, a 64-256-256-10 step at batch 32 36 ms instead of 0.65. The runtime
    reads ``OMP_WAIT_POLICY`` once, when it loads, so it is set only while Numba loads it
    (PyTorch's or any other OpenMP runtime keeps its defaults). No effect if the user set a
    wait policy, or if Numba's threads were already running.
    """
    global _started
    if _started:
        return
    import numba

    if any(name in os.environ for name in _WAIT_VARIABLES):
        numba.get_num_threads()
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        try:
            numba.get_num_threads()  # launches the pool, loading the OpenMP runtime now
        finally:
            del os.environ["OMP_WAIT_POLICY"]
    _started = True


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
            start_numba_threads()
            module = importlib.import_module(f"gpunn.kernels.{spec.module}")
            twin = self._twins[spec.name] = getattr(module, spec.name)
        twin(*args)
