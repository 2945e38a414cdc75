"""Backend selection: the registry :data:`BACKENDS` (``cuda``, ``cpu``) and ``auto`` (the first
registered backend that works: CUDA when it works, else CPU).

The choice comes from, in order: :func:`use_backend` in the current thread or context, the
``GPUNN_BACKEND`` environment variable, ``auto``. Probing CUDA never raises or warns; its answer
and reason are cached for the process.
"""

import contextvars
import os
import threading

from gpunn._checks import choice_key
from gpunn.backends.base import Backend, check_dtype
from gpunn.backends.cpu import CpuBackend

__all__ = ["BACKENDS", "CHOICES", "Backend", "check_dtype", "cuda_status", "get_backend",
           "use_backend"]

ENV_VAR = "GPUNN_BACKEND"

_current = contextvars.ContextVar("gpunn_backend", default=None)
_lock = threading.Lock()
_instances = {}
_cuda_status = None


def _smoke_test(backend):
    """Compile one kernel and run it and one matmul; the reason it failed, or None."""
    import numpy as np

    x = backend.asarray(np.array([[1.0, -2.0], [3.0, 0.5]], dtype=np.float32))
    y = backend.matmul(x, x, out=backend.empty((2, 2), np.float32))
    backend.kernel("act_bwd", backend.asarray(np.ones(4, np.float32)), 0, y.reshape(-1))
    got = backend.to_numpy(y)
    if not np.allclose(got, [[-5.0, -3.0], [4.5, -5.75]]):
        return f"smoke test gave wrong numbers: {got.tolist()}"
    return None


def _gemm_self_checks(blas, cupy, stream):
    """Run each GEMM kind gpunn uses once on 2x2 operands against CuPy's matmul.

    Returns:
        ``{kind: reason}`` of the kinds that failed (raised or gave wrong numbers).
    """
    from gpunn.backends.gemm_precision import GEMM_EX_TYPES

    a64 = cupy.asarray([[1.0, 2.0], [3.0, 4.0]])
    expected = a64 @ a64  # a read column-major is a.T; (a.T @ a.T) read back row-major: a @ a
    operands = {"fp32": a64.astype(cupy.float32), "fp64": a64, "tf32": a64.astype(cupy.float32),
                "bf16": (a64.astype(cupy.float32).view(cupy.uint32) >> 16).astype(cupy.uint16)}
    failures = {}
    for kind, a in operands.items():
        c = cupy.zeros((2, 2), dtype=cupy.float64 if kind == "fp64" else cupy.float32)
        try:
            if kind in ("fp32", "fp64"):
                blas.gemm(0, 0, 2, 2, 2, a, 2, a, 2, c, 2, stream)
            else:
                operand, output, compute = GEMM_EX_TYPES[kind]
                blas.gemm_ex(0, 0, 2, 2, 2, a, operand, 2, a, operand, 2, c, output, 2,
                             compute, stream)
            stream.synchronize()
            if not bool(cupy.allclose(c, expected)):
                failures[kind] = f"wrong numbers: {c.tolist()}"
        except Exception as exc:
            failures[kind] = f"{type(exc).__name__}: {exc}"
    return failures


def _cublas(cupy):
    """``(blas, note)``: the capturable cuBLAS binding, each GEMM kind self-checked, and what
    to say about it; blas None when nvmath-python is absent, fails to start or fails the
    fp32/fp64 check (GEMMs then go through CuPy's matmul and steps are not captured). A tf32
    or bf16 GEMM that fails its check is emulated instead, and the note says why."""
    from gpunn._compat import import_nvmath_cublas
    from gpunn.backends.cublas import Cublas

    binding, reason = import_nvmath_cublas()
    if binding is None:
        return None, f"{reason} (pip install nvmath-python)"
    try:
        blas = Cublas(binding, cupy)
        failures = _gemm_self_checks(blas, cupy, cupy.cuda.get_current_stream())
    except Exception as exc:  # a binding that cannot find or start cuBLAS
        return None, f"nvmath-python's cuBLAS could not start ({type(exc).__name__}: {exc})"
    if "fp32" in failures or "fp64" in failures:
        return None, "cuBLAS GEMM self-check failed: " + "; ".join(
            f"{kind}: {why}" for kind, why in failures.items())
    blas.gemm_ex_precisions = tuple(k for k in ("tf32", "bf16") if k not in failures)
    note = "; ".join(f"{kind} GEMMs emulated, cublasGemmEx self-check failed ({why})"
                     for kind, why in failures.items()) or None
    return blas, note


def _probe_cuda():
    from gpunn._compat import cuda_device_count, import_cupy
    from gpunn.backends.cuda import CudaBackend, CupyStreams, NvrtcLoader

    cupy, reason = import_cupy()
    if cupy is None:
        return None, reason
    count, reason = cuda_device_count(cupy)
    if not count:
        return None, reason
    try:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        blas, note = _cublas(cupy)
        backend = CudaBackend(cupy, NvrtcLoader(cupy), device=f"cuda:{cupy.cuda.Device().id} "
                              f"({name})", max_blocks=props["multiProcessorCount"] * 32,
                              blas=blas, streams=CupyStreams(cupy), blas_note=note)
        reason = _smoke_test(backend)
        if reason is None:
            backend.check_capture()
    except Exception as exc:
        return None, f"CUDA smoke test failed ({type(exc).__name__}: {exc})"
    return (None, reason) if reason else (backend, None)


def cuda_status():
    """``(backend_or_None, reason_or_None)`` of the cached CUDA probe (run on first call)."""
    global _cuda_status
    with _lock:
        if _cuda_status is None:
            _cuda_status = _probe_cuda()
            _explain_fallback(*_cuda_status)
        return _cuda_status


def _explain_fallback(backend, reason):
    """Say once, on the ``logging`` logger "gpunn", why an installed CuPy goes unused.

    A GPU that is there but does not work (missing CUDA libraries, failed smoke test) is a
    WARNING, printed even when the application configures no logging; a machine without a
    CUDA device or driver is only INFO; without CuPy nothing is said.
    """
    import logging

    from gpunn._compat import import_cupy

    if backend is not None or import_cupy()[0] is None:
        return
    level = logging.INFO if reason.startswith("no CUDA device") else logging.WARNING
    logging.getLogger("gpunn").log(level, "CuPy is installed but gpunn cannot use CUDA: %s. "
                                   "Training runs on the CPU; `gpunn info` shows details.",
                                   reason)


def _cpu():
    with _lock:
        return _instances.setdefault("cpu", CpuBackend()), None


# The registry: name -> probe() giving (backend, None) or (None, why it cannot run here); a
# probe caches its answer. "auto" takes the first that works, so a device backend comes before
# the CPU. A new backend is its own file (one Backend subclass and its probe) plus one entry
# here; the CLI's --backend, GPUNN_BACKEND, use_backend and gpunn info read this.
BACKENDS = {"cuda": lambda: cuda_status(), "cpu": _cpu}
CHOICES = ("auto", *sorted(BACKENDS))


def _resolve(name):
    if name not in CHOICES:
        raise ValueError(f"backend: expected one of {CHOICES}, got {name!r}")
    if name == "auto":
        for probe in BACKENDS.values():
            backend, _ = probe()
            if backend is not None:
                return backend
        raise RuntimeError(f"backend 'auto': none of {list(BACKENDS)} can be used here")
    backend, reason = BACKENDS[name]()
    if backend is None:
        raise RuntimeError(f"backend {name!r} was requested but cannot be used: {reason}")
    return backend


def get_backend():
    """The backend in force for this thread/context."""
    backend = _current.get()
    if backend is not None:
        return backend
    name = choice_key(os.environ.get(ENV_VAR, "auto")) or "auto"
    if name not in CHOICES:
        raise ValueError(f"{ENV_VAR}: expected one of {CHOICES}, got {name!r}")
    return _resolve(name)


class use_backend:  # noqa: N801 - reads as a function: use_backend("cpu")
    """Select a backend by name (or a :class:`Backend` instance) for the current thread.

    Works as a setter, ``gpunn.use_backend("cpu")``, and as a context manager,
    ``with gpunn.use_backend("cpu"): ...``, which restores the previous choice on exit.
    Other threads are not affected.
    """

    def __init__(self, name):
        if isinstance(name, Backend):
            backend = name
        elif isinstance(name, str):
            backend = _resolve(choice_key(name))
        else:
            raise TypeError(f"backend: expected a name in {CHOICES} or a Backend, "
                            f"got {type(name).__name__}")
        self.backend = backend
        self._token = _current.set(backend)

    def __enter__(self):
        return self.backend

    def __exit__(self, *exc_info):
        _current.reset(self._token)
        return False
