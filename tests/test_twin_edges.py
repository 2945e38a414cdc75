"""The Numba twins at the edges the kernel table's shapes do not reach.

Written for the mutants of kernels/*.py that survived tests/test_kernels.py (mutmut with
NUMBA_DISABLE_JIT=1, benchmarks/MUTATION.md): inputs over several of a twin's fixed blocks
(the table stays inside one, where a block loop over ``range(hi)`` gives the same numbers), the
first step of an epoch, a NaN rounded to TF32, and the dropout generator's spans and its
threshold, each against its reference or its scalar definition.
"""

import importlib
import inspect

import numpy as np
import pytest
from gpunn.kernels import MODULES
from gpunn.kernels.config import BLOCK
from gpunn.kernels.counter_rng import apply_dropout, apply_dropout_into, dropout_factor, mix64
from kernel_cases import CASES, Inputs, KernelCase, _ctrl, check_case

from gpunn.backends.cpu import CpuBackend

ROWS, COLS = 3, (2 * BLOCK + 517) // 3 + 1  # two blocks and part of a third


def _is_blocked(kernel):
    """Whether the twin loops over fixed blocks (kernels/config.py n_blocks), read from it."""
    for module in MODULES:
        twin = getattr(importlib.import_module(f"gpunn.kernels.{module}"), kernel, None)
        if twin is not None:
            return "n_blocks(" in inspect.getsource(getattr(twin, "py_func", twin))
    raise LookupError(kernel)


# The weighted loss rows are left out: their reference's atol is not scaled by the row weight
# (250), which near-saturated elements exceed once there are thousands; the unweighted rows
# run the same block loop.
BLOCKED = [case for case in CASES if _is_blocked(case.kernel) and "weighted" not in case.variant]


@pytest.mark.parametrize("case", BLOCKED, ids=lambda case: case.id)
def test_a_blocked_twin_over_several_blocks_matches_its_reference(case):
    assert ROWS * COLS > 2 * BLOCK
    check_case(CpuBackend(), case, Inputs(np.random.default_rng(7), case.dtypes[0]), ROWS, COLS)


def test_the_first_step_of_an_epoch_is_recorded():
    def first_step(inp, rows, cols):
        return (np.array([2.5], inp.dtype), 4, 1, _ctrl(t=5, k=0), inp.normal(8))

    case = KernelCase("step_end", "first step", first_step)
    check_case(CpuBackend(), case, Inputs(np.random.default_rng(3), np.dtype(np.float32)), 1, 1)


def test_a_signaling_nan_rounds_to_tf32_as_the_quiet_nan_of_the_same_payload():
    bits = np.array([0x7F800001, 0xFF800003, 0x7FC00000], np.uint32)
    backend = CpuBackend()
    x = backend.asarray(bits.view(np.float32).copy())
    backend.kernel("round_tf32", x)
    np.testing.assert_array_equal(backend.to_numpy(x).view(np.uint32), bits | 0x00400000)


def _factors(key, first, n, below, scale):
    """The scalar definition: each element's factor by itself."""
    return np.array([dropout_factor(key, first + j, below, scale) for j in range(n)],
                    np.float32)


@pytest.mark.parametrize("first", range(4))
@pytest.mark.parametrize("n", [*range(6), 511, 512, 513, 1024, 1025])
def test_dropout_spans_of_any_start_and_length_match_the_scalar_definition(first, n):
    """Pairs in the middle, a lone element at either end, empty spans (nothing touched), and
    spans as long as a row or a block of a kernel (odd and even lengths)."""
    key, below, scale = np.uint64(12345), 2**31, np.float32(2.0)
    x = np.arange(1, n + 1, dtype=np.float32)
    expected = x * _factors(key, first, n, below, scale)
    y = np.full(n, -7.0, np.float32)
    apply_dropout_into(key, first, below, scale, x, y)
    np.testing.assert_array_equal(y, expected)
    apply_dropout(key, first, below, scale, x)
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("p", [1 - 2.0**-34, 1 - 2.0**-32])
def test_a_threshold_at_or_past_32_bits_drops_every_element(p):
    """p within 2^-33 of 1 rounds the threshold to 2^32, above every 32-bit value: all dropped
    (a compare in 32 bits would wrap it to 0 and keep all)."""
    key, below, scale = np.uint64(7), int(round(p * 2**32)), np.float32(1 / (1 - p))
    x = np.arange(1, 1030, dtype=np.float32)
    expected = x * _factors(key, 3, x.size, below, scale)
    assert not expected.any() or below < 2**32
    y = np.full_like(x, -7.0)
    apply_dropout_into(key, 3, below, scale, x, y)
    np.testing.assert_array_equal(y, expected)
    apply_dropout(key, 3, below, scale, x)
    np.testing.assert_array_equal(x, expected)


def test_an_element_whose_bits_equal_the_threshold_is_kept():
    """Kept means its 32 bits >= the threshold: at equality too, in the paired loop."""
    key = np.uint64(99)
    state = key + np.uint64(0x9E3779B97F4A7C15)  # the first output's state (element 0 and 1)
    low = int(mix64(state) & np.uint64(0xFFFFFFFF))  # element 0's bits
    x = np.ones(4, np.float32)
    apply_dropout(key, 0, low, np.float32(3.0), x)
    assert x[0] == 3.0
    np.testing.assert_array_equal(x, _factors(key, 0, 4, low, np.float32(3.0)))


