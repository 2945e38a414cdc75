"""Hypothesis: every kernel variant on cpu and cuda-emulated, random shapes and extreme values.

Hypothesis draws the backend, dtype, variant, shape (1 to 1,521 elements: size 1, odd sizes,
sizes around the emulated block of 32 and beyond 5 blocks) and which extreme values
(+-1e4, +-88.7, zeros, subnormals) get sprinkled into the inputs; a NumPy generator seeded by
hypothesis fills the arrays. Outputs are compared with the float64 references within the
dtype's tolerance. Derandomized, so every run checks the same examples.
"""

import numpy as np
import pytest
from host_build import emulated_backend
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_cases import CASES, Inputs, check_case, extreme_values

from gpunn.backends.cpu import CpuBackend

# Hypothesis reruns a test body many times, so backends are made once per module here rather
# than through the function-scoped ``backend`` fixture.
BACKENDS = {}
KERNELS = sorted({case.kernel for case in CASES})


def _backend(name):
    if name not in BACKENDS:
        BACKENDS[name] = CpuBackend() if name == "cpu" else emulated_backend()
    return BACKENDS[name]


@st.composite
def kernel_inputs(draw, kernel):
    """(backend name, case, Inputs, rows, cols) for one example of ``kernel``."""
    case = draw(st.sampled_from([case for case in CASES if case.kernel == kernel]))
    dtype = draw(st.sampled_from(case.dtypes))
    backend = draw(st.sampled_from(["cpu", "cuda-emulated"]))
    rows = draw(st.integers(1, 39))
    cols = draw(st.sampled_from([1, 2, 3, 7, 31, 32, 33, 39]))
    special = draw(st.lists(st.sampled_from(extreme_values(dtype)), max_size=4, unique=True))
    seed = draw(st.integers(0, 2**32 - 1))
    inputs = Inputs(np.random.default_rng(seed), dtype, extreme=bool(special), special=special)
    return backend, case, inputs, rows, cols


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_fuzz(kernel):
    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(kernel_inputs(kernel))
    def check(example):
        backend, case, inputs, rows, cols = example
        check_case(_backend(backend), case, inputs, rows, cols)

    check()
