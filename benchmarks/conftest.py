"""pytest-benchmark suite: ``pytest benchmarks --benchmark-enable`` (setup.cfg disables timing by
default, so a plain ``pytest benchmarks`` only checks that every benchmark runs).

The main test run never collects this folder (``testpaths = tests``). Numba's threads start as
gpunn starts them, before PyTorch loads, so both share gpunn's OpenMP settings; thread counts
are the same for Numba, BLAS and PyTorch (all usable CPUs).
"""

import pytest

from gpunn.backends.cpu import CpuBackend, start_numba_threads
from gpunn.bench import harness

start_numba_threads()
TORCH = harness.import_torch()
harness.set_threads(harness.usable_cpus())


@pytest.fixture(scope="session")
def cpu():
    """The CPU backend."""
    return CpuBackend()


@pytest.fixture(scope="session")
def torch():
    """PyTorch, or skip the benchmark when it is not installed."""
    if TORCH is None:
        pytest.skip("PyTorch is not installed")
    return TORCH
