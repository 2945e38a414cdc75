"""Shared fixtures: every backend-parametrized test runs on cpu and cuda-emulated (and cuda
where a working GPU exists)."""

import numpy as np
import pytest
from host_build import emulated_backend

from gpunn.backends import cuda_status, use_backend
from gpunn.backends.cpu import CpuBackend

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


BACKEND_NAMES = ["cpu", "cuda-emulated"] + (["cuda"] if cuda_status()[0] is not None else [])


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    """A backend, also made current for the test's duration (``gpunn.get_backend()``)."""
    instance = _make(request.param)
    with use_backend(instance):
        yield instance


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)
