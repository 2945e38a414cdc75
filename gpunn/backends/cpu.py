"""CPU backend: NumPy arrays, BLAS matmuls, Numba-compiled kernel twins."""

import importlib
import os
import time

import numpy as np

from gpunn.backends.base import Backend
from gpunn.kernels.config import CHUNK

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


# All threads must take at most this fraction of one thread's time to be chosen.
PARALLEL_GAIN = 0.8


class _ThreadChoice:
    """Per kernel and size: run on all of Numba's threads or on the calling thread alone.

    Waking passive workers costs tens of microseconds (70 us on a 2-core VM), more than a small
    kernel's whole work, and where that stops being true depends on the kernel (an Adam step on
    10^5 elements: 44 us alone vs 94 us on 2 threads; a sigmoid on 10^5: the reverse). So the
    first launch of each (kernel, n) warms the memory up (fresh arrays fault their pages in), the
    next ``TRIALS`` use all threads, the ``TRIALS`` after them one (in blocks: right after a
    switch the data sits in the other cores' caches), and later launches take all threads only
    if their median time beats one thread's by ``PARALLEL_GAIN``: a worker's wake-up time
    varies with how long it has slept, and one thread leaves the other cores to BLAS.
    Results are identical either way: every element is computed by the same code,
    independently of the others.
    """

    TRIALS = 3

    def __init__(self):
        self.trials = {}
        self.choice = {}

    def run(self, key, twin, args):
        single = self.choice.get(key)
        if single is None:
            self._trial(key, twin, args)
        elif single:
            _single_threaded(twin, args)
        else:
            twin(*args)

    def _trial(self, key, twin, args):
        times = self.trials.get(key)
        if times is None:
            self.trials[key] = ([], [])
            twin(*args)
            return
        single = len(times[0]) >= self.TRIALS
        start = time.perf_counter()
        if single:
            _single_threaded(twin, args)
        else:
            twin(*args)
        times[single].append(time.perf_counter() - start)
        if len(times[1]) >= self.TRIALS:
            self.choice[key] = _median(times[0]) > PARALLEL_GAIN * _median(times[1])
            self.trials.pop(key, None)  # another Python thread may have decided it already


def numba_runtime():
    """Numba's version, thread count and threading layer (None before a parallel launch)."""
    import numba

    start_numba_threads()
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel function has run yet
        layer = None
    return {"version": numba.__version__, "threads": numba.get_num_threads(), "layer": layer}


def set_numba_threads(n):
    """Run Numba kernels of the calling thread on ``n`` threads; returns the previous count."""
    import numba

    start_numba_threads()
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    return previous


def _median(values):
    return sorted(values)[len(values) // 2]


def _single_threaded(twin, args):
    import numba

    threads = numba.get_num_threads()
    if threads == 1:
        twin(*args)
        return
    numba.set_num_threads(1)  # this thread only; a region of one thread wakes no worker
    try:
        twin(*args)
    finally:
        numba.set_num_threads(threads)


class CpuBackend(Backend):
    """Runs every kernel as its Numba twin (``gpunn.kernels.<module>.<name>``) on host arrays."""

    name = "cpu"
    xp = np
    device = "cpu"

    def __init__(self):
        self._twins = {}
        self._threads = _ThreadChoice()

    def _launch(self, spec, converted):
        args, _, n = converted
        twin = self._twins.get(spec.name)
        if twin is None:
            start_numba_threads()
            module = importlib.import_module(f"gpunn.kernels.{spec.module}")
            twin = self._twins[spec.name] = getattr(module, spec.name)
        set_chunk = _chunk_setter()
        previous = set_chunk(CHUNK)  # fixed prange chunks: the same bits on any thread count
        try:
            self._threads.run((spec.name, n), twin, args)
        finally:
            set_chunk(previous)


def _chunk_setter():
    import numba

    return numba.set_parallel_chunksize
