"""The ``.cu`` kernels launched directly from their host build, on odd grid and block shapes.

Every array gets a tail of sentinels past the elements the kernel may touch; after the launch
the tail must be bit-for-bit untouched, inputs must be unchanged and outputs must match the
float64 references. Under ``GPUNN_HOST_ASAN=1`` (see .ci/asan.sh) AddressSanitizer also
checks that no thread reads or writes outside the arrays.
"""

from functools import cache

import numpy as np
import pytest
from gpunn.kernels import kernel_specs
from host_build import HostModule
from kernel_cases import CASE_DTYPE_IDS, CASE_DTYPES, CASES, Inputs, assert_output, expected_outputs

# (grid, block): one thread; fewer threads than elements; a block size that is not a multiple
# of the warp; far more threads than elements.
LAUNCHES = [(1, 1), (3, 7), (5, 33), (64, 256)]
SHAPES = [(1, 1), (17, 13)]
TAIL = 5
SENTINEL = 12345.0
_SCALARS = {"int": np.int32, "int64": np.int64, "double": np.float64}


@cache
def _module(module, dtype):
    return HostModule(module, dtype)


def _with_tail(value):
    """``value`` flattened into a buffer with TAIL sentinels after it (scalars pass through)."""
    if not isinstance(value, np.ndarray):
        return value
    buffer = np.full(value.size + TAIL, SENTINEL, dtype=value.dtype)
    buffer[: value.size] = value.ravel()
    return buffer


def _launch(kernel, dtype, grid, block, buffers, n):
    spec = kernel_specs()[kernel]
    args = []
    for param, value in zip(spec.params, buffers):
        if param.is_array:
            args.append(value)
        else:
            args.append(dtype.type(value) if param.kind == "real" else _SCALARS[param.kind](value))
    function = _module(spec.module, str(dtype)).get_function(spec.cuda_name(dtype))
    function((grid,), (block,), (*args, np.int64(n)))


def _check(case, dtype, args, before, after):
    expected = expected_outputs(case, args)
    for param, arg, old, new in zip(kernel_specs()[case.kernel].params, args, before, after):
        if not param.is_array:
            continue
        size = arg.size
        assert np.array_equal(new[size:], old[size:]), f"{case.id}: {param.name} tail written"
        if param.writes:
            assert_output(param, new[:size].reshape(arg.shape), expected[param.name], dtype,
                          err_msg=f"{case.id} {param.name}")
        else:
            assert np.array_equal(new, old, equal_nan=True), f"{case.id}: input {param.name}"


@pytest.mark.parametrize("launch", LAUNCHES, ids=lambda launch: f"grid{launch[0]}x{launch[1]}")
@pytest.mark.parametrize("case, dtype", CASE_DTYPES, ids=CASE_DTYPE_IDS)
def test_host_kernel_touches_exactly_n_elements(case, dtype, launch):
    grid, block = launch
    rng = np.random.default_rng(7)
    for rows, cols in SHAPES:
        args = case.args(Inputs(rng, dtype), rows, cols)
        buffers = [_with_tail(a) for a in args]
        before = [b.copy() if isinstance(b, np.ndarray) else b for b in buffers]
        n = args[kernel_specs()[case.kernel].n_index].size
        _launch(case.kernel, dtype, grid, block, buffers, n)
        _check(case, dtype, args, before, buffers)


def test_sentinel_check_can_fail():
    """A launch told n + 1 writes the first sentinel, and the check sees it."""
    case = next(case for case in CASES if case.kernel == "mse")
    dtype = np.dtype(np.float64)
    args = case.args(Inputs(np.random.default_rng(0), dtype), 3, 4)
    buffers = [_with_tail(a) for a in args]
    before = [b.copy() if isinstance(b, np.ndarray) else b for b in buffers]
    _launch("mse", dtype, 2, 8, buffers, args[-1].size + 1)
    with pytest.raises(AssertionError, match="tail written"):
        _check(case, dtype, args, before, buffers)
