"""CPU backend: NumPy arrays, BLAS matmuls, Numba-compiled kernel twins.

Numba's thread pool and OpenBLAS's share the cores: a training step alternates BLAS calls with
Numba kernels. Whatever the process imported before gpunn (PyTorch, scikit-learn, JAX), the
pool must not keep spinning after a kernel, and a small kernel must not wake it at all.
"""

import ctypes
import importlib
import importlib.metadata
import os
import sys
import threading
import weakref

import numpy as np

from gpunn._environment import check_thread_variable
from gpunn.backends.base import Backend

# Variables with which a user chooses how OpenMP worker threads wait; gpunn then leaves it be.
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
# The file of the TBB runtime that Numba's TBB layer links to, per platform.
_TBB_LIBRARY = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}
_start_lock = threading.Lock()
_runtime = None

# Kernels run on all of Numba's threads from these sizes (elements, ``n`` of the launch) on,
# and on the calling thread alone below them: waking an idle pool costs more than a small
# kernel's whole work, and a kernel on one thread leaves the other cores to BLAS. From
# benchmarks/cpu_threading.py (results/cpu_threading.json): the smallest power of two from
# which all threads took at most PARALLEL_GAIN of one thread's time.
PARALLEL_GAIN = 0.8
PARALLEL_FROM = {
    "bias_act_fwd": 1 << 16,  # an exp per element (sigmoid, tanh)
    "bias_act_fwd_bf16": 1 << 16,
    "bce_logits": 1 << 16,  # exp and log1p per element: as bias_act_fwd
    "softmax_xent": 1 << 16,
    "adam_step": 1 << 16,  # a division and a square root per element, three arrays
    "rmsprop_step": 1 << 16,
}
# Streaming kernels (a multiply or two per element, as act_bwd): sgd, momentum, axpy, mse, ...
PARALLEL_FROM_DEFAULT = 1 << 17
# Which uint16 of a float32 holds its upper 16 bits: a bfloat16 value's bits.
_HIGH_HALF = 1 if sys.byteorder == "little" else 0


def load_tbb():
    """Map the TBB runtime of the ``tbb`` wheel, so Numba can start its TBB threading layer.

    Numba's TBB layer links to ``libtbb.so.12`` by name, and in a virtual environment the
    dynamic loader does not look in the environment's ``lib/``, where the wheel puts it: there
    Numba silently falls back to OpenMP. Once this process has the library mapped, the name
    resolves to it. Returns the path, or None when the wheel is missing or does not load.
    """
    name = _TBB_LIBRARY.get(sys.platform)
    try:
        files = importlib.metadata.files("tbb") or ()
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == name:
            path = os.path.realpath(file.locate())
            try:
                ctypes.CDLL(path)
            except OSError:
                return None
            return path
    return None


def start_numba_threads():
    """Start Numba's thread pool once: the TBB layer where the ``tbb`` wheel is installed,
    else OpenMP with workers that sleep, not spin, when idle.

    Called by the first kernel launch; call it before ``numba.set_num_threads`` or anything
    else that starts Numba's threads. With OpenMP, Numba binds to the first OpenMP runtime in
    the process: PyTorch's, if PyTorch was imported first, whose workers spin for milliseconds
    after each kernel and take the cores the next matmul needs. TBB is a runtime of Numba's
    own, whatever else is loaded. For OpenMP, ``OMP_WAIT_POLICY=PASSIVE`` is set only while
    Numba loads the runtime (a runtime reads it once, when it loads; one that PyTorch loaded
    before keeps its policy). No effect on a wait policy or ``NUMBA_THREADING_LAYER`` the user
    set, or on threads that were already running.

    Returns:
        dict: ``layer`` (Numba's threading layer) and ``tbb`` (the TBB library mapped, or None).
    """
    global _runtime
    with _start_lock:
        if _runtime is not None:
            return _runtime
        check_thread_variable()
        import numba

        tbb = load_tbb()
        if any(name in os.environ for name in _WAIT_VARIABLES):
            numba.get_num_threads()
        else:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
            try:
                numba.get_num_threads()  # launches the pool, loading its runtime now
            finally:
                del os.environ["OMP_WAIT_POLICY"]
        _runtime = {"layer": numba.threading_layer(), "tbb": tbb,
                    "functions": _thread_functions()}
        return _runtime


def runs_parallel(kernel, n):
    """Whether a launch of ``kernel`` over ``n`` elements runs on all of Numba's threads.

    A pure function of its arguments (see ``PARALLEL_FROM``): which path runs never depends
    on a timing. Results are identical either way: each twin computes every element with the
    same code, flat twins in the fixed blocks of ``gpunn.kernels.config`` on any thread count.
    """
    return n >= PARALLEL_FROM.get(kernel, PARALLEL_FROM_DEFAULT)


def numba_runtime():
    """Numba's version, thread count, threading layer, the TBB library it uses (or None) and
    where it caches the compiled kernels (None: nowhere writable, compiled in every process)."""
    runtime = start_numba_threads()
    import numba

    from gpunn.kernels.config import CACHE_PATH

    return {"version": numba.__version__, "threads": numba.get_num_threads(),
            "layer": runtime["layer"], "tbb": runtime["tbb"] if runtime["layer"] == "tbb"
            else None, "cache": CACHE_PATH}


def set_numba_threads(n):
    """Run Numba kernels of the calling thread on ``n`` threads; returns the previous count."""
    import numba

    start_numba_threads()
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    return previous


def _thread_functions():
    """Numba's get/set of the calling thread's thread count (its own internal ones where it
    has them: the public ones check the pool and their argument on every call, microseconds
    per launch, as much as a small kernel)."""
    import numba
    from numba.np.ufunc import parallel

    internal = [getattr(parallel, name, None) for name in ("_get_num_threads",
                                                          "_set_num_threads")]
    if all(callable(function) for function in internal):
        return tuple(internal)
    return numba.get_num_threads, numba.set_num_threads


def twin_of(spec):
    """The Numba twin of the kernel ``spec``: ``gpunn.kernels.<module>.<name>``."""
    return getattr(importlib.import_module(f"gpunn.kernels.{spec.module}"), spec.name)


def _single_threaded(twin, args):
    get, set_ = _runtime["functions"]
    threads = get()
    if threads == 1:
        twin(*args)
        return
    set_(1)  # this thread only; a region of one thread wakes no worker
    try:
        twin(*args)
    finally:
        set_(threads)


class CpuBackend(Backend):
    """Runs every kernel as its Numba twin (``gpunn.kernels.<module>.<name>``) on host arrays."""

    name = "cpu"
    xp = np
    device = "cpu"

    def __init__(self):
        self._twins = {}
        self._bf16_storage = weakref.WeakValueDictionary()  # id -> float32 storage

    def bf16_zeros(self, shape):
        """Zero bfloat16 bits of ``shape``, kept as float32 values: the bits are the upper
        halves of a float32 array (a strided uint16 view, returned), zeros below. NumPy's BLAS
        has no bfloat16 input: its GEMMs read the storage as it is, where they would widen
        uint16 bits into float32 first (a pass over each operand of every GEMM), and the
        kernels that write the bits write the storage's float32 values instead
        (``gpunn.kernels.precision.bf16_store``), the same bits."""
        storage = np.zeros(shape, np.float32)
        self._bf16_storage[id(storage)] = storage
        return storage.view(np.uint16)[..., _HIGH_HALF::2]

    def _bf16_values(self, bits):
        storage = bits.base
        if storage is None or self._bf16_storage.get(id(storage)) is not storage:
            return None
        offset = (bits.__array_interface__["data"][0] - 2 * _HIGH_HALF
                  - storage.__array_interface__["data"][0])
        if offset % 4 or any(stride % 4 for stride in bits.strides):
            return None  # not upper halves (another uint16 view of the storage): plain bits
        return np.ndarray(bits.shape, np.float32, buffer=storage, offset=offset,
                          strides=bits.strides)

    def parallel(self, kernel, n):
        """Whether a launch of ``kernel`` over ``n`` elements runs on all of Numba's threads:
        :func:`runs_parallel` (a subclass that must decide otherwise overrides this)."""
        return runs_parallel(kernel, n)

    def _launch(self, spec, converted):
        args, _, n = converted
        twin = self._twins.get(spec.name)
        if twin is None:
            start_numba_threads()
            twin = self._twins[spec.name] = twin_of(spec)
        if self.parallel(spec.name, n):
            twin(*args)
        else:
            _single_threaded(twin, args)
