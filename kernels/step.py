"""Numba twins of step.cu: gather a batch, flag non-finite values, close the step.

The control-array slots and step statuses are read from step.cuh, where they are defined.
"""

import math

from numba import njit, prange

from . import header_codes
from .config import CACHE, FASTMATH
from .precision import bf16_store

# Module globals: Numba compiles them in as constants (and caches by this file's source, so
# after changing a slot in step.cuh, clear the cache: the kernel tests fail until then).
_CTRL, _STEP = header_codes("step.cuh", "GPUNN_CTRL_"), header_codes("step.cuh", "GPUNN_STEP_")
CTRL_T, CTRL_K, CTRL_BAD, CTRL_BAD_UPDATE, CTRL_HALT = (
    _CTRL["t"], _CTRL["k"], _CTRL["bad"], _CTRL["bad_update"], _CTRL["halt"])
STEP_APPLIED, STEP_NONFINITE, STEP_BAD_UPDATE, STEP_HALTED = (
    _STEP["applied"], _STEP["nonfinite"], _STEP["bad_update"], _STEP["halted"])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def gather_rows(src, order, ctrl, n_src, n_order, n_pos, stride, offset, n_cols, out):
    """out row r = src row order[p % n_order], p = ctrl[K] * stride + offset + r, for
    positions p below n_pos; one row per iteration."""
    first = ctrl[CTRL_K] * stride + offset
    for r in prange(out.size // n_cols):
        pos = first + r
        if pos < n_pos and n_order > 0:
            row = order[pos if pos < n_order else pos % n_order]  # in memory: no %
            if row >= 0 and (row + 1) * n_cols <= n_src:
                # a row copy between slices: no index arithmetic per element, and LLVM copies
                # it as a block (benchmarks/gather_rows.py)
                out[r * n_cols:(r + 1) * n_cols] = src[row * n_cols:(row + 1) * n_cols]


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def gather_rows_bf16(src, order, ctrl, n_src, n_order, n_pos, stride, offset, n_cols, out,
                     half):
    """gather_rows, and the same rows rounded to bfloat16 into ``half`` (its bits, or their
    value in the CPU backend's float32 storage: :func:`bf16_store`)."""
    first = ctrl[CTRL_K] * stride + offset
    for r in prange(out.size // n_cols):
        pos = first + r
        if pos < n_pos and n_order > 0:
            row = order[pos if pos < n_order else pos % n_order]
            if row >= 0 and (row + 1) * n_cols <= n_src:
                at, start = row * n_cols, r * n_cols
                out[start:start + n_cols] = src[at:at + n_cols]
                for j in range(n_cols):
                    bf16_store(half, start + j, src[at + j])


@njit(parallel=True, cache=CACHE, fastmath=FASTMATH)
def nonfinite_check(total, g, ctrl):
    """ctrl[BAD] = 1 when total[0] or any g[i] is NaN or inf."""
    bad = 0
    for i in prange(g.size):
        bad += 0 if math.isfinite(g[i]) else 1
    if bad or not math.isfinite(total[0]):
        ctrl[CTRL_BAD] = 1


@njit(cache=CACHE, fastmath=FASTMATH)
def step_end(total, n_steps, halt_on_nonfinite, ctrl, record):
    """Record the step's loss and status, count the update, halt if needed, k += 1."""
    k = ctrl[CTRL_K]
    if ctrl[CTRL_HALT]:
        status = STEP_HALTED
    elif ctrl[CTRL_BAD]:
        status = STEP_NONFINITE
    elif ctrl[CTRL_BAD_UPDATE]:
        status = STEP_BAD_UPDATE
    else:
        status = STEP_APPLIED
    if 0 <= k < n_steps:
        record[k] = total[0]
        record[n_steps + k] = status
    if status == STEP_APPLIED or status == STEP_BAD_UPDATE:
        ctrl[CTRL_T] += 1
    if status == STEP_BAD_UPDATE or (status == STEP_NONFINITE and halt_on_nonfinite):
        ctrl[CTRL_HALT] = 1
    ctrl[CTRL_BAD] = 0
    ctrl[CTRL_BAD_UPDATE] = 0
    ctrl[CTRL_K] = k + 1
