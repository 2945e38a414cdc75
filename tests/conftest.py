"""Shared fixtures: every backend-parametrized test runs on every registered backend that
works here (gpunn.backends.BACKENDS: cpu, and cuda where a working GPU exists) and on the
emulations below (cuda-emulated).

``GPUNN_TEST_BACKENDS`` (comma-separated names from :data:`TEST_BACKENDS`) restricts the
matrix, e.g. ``GPUNN_TEST_BACKENDS=cuda`` on a GPU machine (benchmarks/gpu_check.sh), so the
suite does not rerun cpu and cuda-emulated there. Asking for a backend (there, or with
``GPUNN_BACKEND``, e.g. ``cuda``) that cannot be used stops the run with the reason: the
matrix never drops one silently.
"""

import os

import numpy as np
import pytest
from host_build import emulated_backend

from gpunn.backends import BACKENDS, use_backend

# Backends that exist only in the tests: a device backend run on the host (DESIGN.md).
EMULATED = {"cuda-emulated": emulated_backend}
TEST_BACKENDS = (*BACKENDS, *EMULATED)
MATRIX_VAR = "GPUNN_TEST_BACKENDS"
_BACKENDS = {}


def _status(name):
    """``(backend, None)`` or ``(None, why it cannot run here)``, as the registry says."""
    return (EMULATED[name](), None) if name in EMULATED else BACKENDS[name]()


def _make(name):
    if name not in _BACKENDS:
        _BACKENDS[name] = _status(name)[0]
    return _BACKENDS[name]


def backend_matrix(environ):
    """The backend names the suite runs on, from ``environ``; RuntimeError when one is unknown
    or when one was asked for (by ``GPUNN_TEST_BACKENDS`` or ``GPUNN_BACKEND``) and cannot be
    used."""
    asked = [n.strip() for n in environ.get(MATRIX_VAR, "").split(",") if n.strip()]
    unknown = [n for n in asked if n not in TEST_BACKENDS]
    if unknown:
        raise RuntimeError(f"{MATRIX_VAR}: expected names from {TEST_BACKENDS}, got {unknown}")
    chosen = environ.get("GPUNN_BACKEND", "").strip().lower()
    for name in (name for name in [*asked, chosen] if name in BACKENDS):
        backend, reason = BACKENDS[name]()
        if backend is None:
            raise RuntimeError(f"the {name} backend was asked for ({MATRIX_VAR}="
                               f"{environ.get(MATRIX_VAR)!r}, GPUNN_BACKEND="
                               f"{environ.get('GPUNN_BACKEND')!r}) but cannot be used: "
                               f"{reason}")
    if asked:
        return asked
    return [*(name for name, probe in BACKENDS.items() if probe()[0] is not None), *EMULATED]


try:
    BACKEND_NAMES = backend_matrix(os.environ)
except RuntimeError as exc:
    raise pytest.UsageError(str(exc)) from None


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    """A backend, also made current for the test's duration (``gpunn.get_backend()``)."""
    instance = _make(request.param)
    with use_backend(instance):
        yield instance


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)


def pytest_collection_modifyitems(items):
    """test_same_bits.py first: its cold processes compile every Numba twin, and into the
    suite's own cache when that is still empty, which only holds before any other test ran
    (the rest of the suite then loads the twins instead of compiling them again)."""
    items.sort(key=lambda item: item.path.name != "test_same_bits.py")
