"""Shared fixtures: every backend-parametrized test runs on cpu and cuda-emulated (and cuda
where a working GPU exists).

``GPUNN_TEST_BACKENDS`` (comma-separated names from :data:`TEST_BACKENDS`) restricts the
matrix, e.g. ``GPUNN_TEST_BACKENDS=cuda`` on a GPU machine (benchmarks/gpu_check.sh), so the
suite does not rerun cpu and cuda-emulated there. Asking for ``cuda`` (there, or with
``GPUNN_BACKEND=cuda``) where CUDA cannot be used stops the run with the reason: the matrix
never drops ``cuda`` silently.
"""

import os

import numpy as np
import pytest
from host_build import emulated_backend

from gpunn.backends import cuda_status, use_backend
from gpunn.backends.cpu import CpuBackend

TEST_BACKENDS = ("cpu", "cuda-emulated", "cuda")
MATRIX_VAR = "GPUNN_TEST_BACKENDS"
_BACKENDS = {}


def _make(name):
    if name not in _BACKENDS:
        if name == "cpu":
            _BACKENDS[name] = CpuBackend()
        elif name == "cuda-emulated":
            _BACKENDS[name] = emulated_backend()
        else:
            _BACKENDS[name] = cuda_status()[0]
    return _BACKENDS[name]


def backend_matrix(environ):
    """The backend names the suite runs on, from ``environ``; RuntimeError when one is unknown
    or when ``cuda`` was asked for (by ``GPUNN_TEST_BACKENDS`` or ``GPUNN_BACKEND``) and
    cannot be used."""
    asked = [n.strip() for n in environ.get(MATRIX_VAR, "").split(",") if n.strip()]
    unknown = [n for n in asked if n not in TEST_BACKENDS]
    if unknown:
        raise RuntimeError(f"{MATRIX_VAR}: expected names from {TEST_BACKENDS}, got {unknown}")
    wants_cuda = "cuda" in asked or environ.get("GPUNN_BACKEND", "").strip().lower() == "cuda"
    if wants_cuda and cuda_status()[0] is None:
        raise RuntimeError(f"the cuda backend was asked for ({MATRIX_VAR}="
                           f"{environ.get(MATRIX_VAR)!r}, GPUNN_BACKEND="
                           f"{environ.get('GPUNN_BACKEND')!r}) but cannot be used: "
                           f"{cuda_status()[1]}")
    if asked:
        return asked
    return ["cpu", "cuda-emulated"] + (["cuda"] if cuda_status()[0] is not None else [])


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
