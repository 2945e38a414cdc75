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
from gpunn.backends.cuda_probe import probe as _probe_cuda

__all__ = ["BACKENDS", "CHOICES", "Backend", "check_dtype", "cuda_status", "get_backend",
           "use_backend"]

ENV_VAR = "GPUNN_BACKEND"

_current = contextvars.ContextVar("gpunn_backend", default=None)
_lock = threading.Lock()
_instances = {}
_cuda_status = None


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
