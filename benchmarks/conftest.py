"""pytest-benchmark suite: ``pytest benchmarks --benchmark-enable`` (setup.cfg disables timing by
default, so a plain ``pytest benchmarks`` only checks that every benchmark runs).

The main test run never collects this folder (``testpaths = tests``). The contenders are the
ones ``gpunn bench`` interleaves (:mod:`gpunn.bench`); here pytest-benchmark times each on its
own. Numba's threads start before PyTorch loads (the order ``gpunn bench`` uses; its
``imports`` section measures the others); Numba, BLAS and PyTorch get the same thread count.
"""

import pytest

from gpunn.backends.cpu import CpuBackend, start_numba_threads
from gpunn.bench import harness

start_numba_threads()
TORCH = harness.import_optional("torch")
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
