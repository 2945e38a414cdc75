"""``cublasGemmEx`` emulated on the host: column-major NumPy arrays read exactly as cuBLAS reads
its arguments (operation flags, sizes, leading dimensions, data and compute types), so the CUDA
backend's row-major to column-major mapping runs in CI. Rounding to TF32 and widening bfloat16
are written here on the bits with NumPy, apart from the kernels they check, into buffers kept
per operand and shape: like cuBLAS, a warm call allocates nothing."""

import threading

import numpy as np

from gpunn.backends.gemm_precision import (
    CUBLAS_COMPUTE_32F,
    CUBLAS_COMPUTE_32F_FAST_TF32,
    CUDA_R_16BF,
    CUDA_R_32F,
)

_STORAGE = {CUDA_R_32F: np.dtype(np.float32), CUDA_R_16BF: np.dtype(np.uint16)}


def _column_major(flat, rows, cols, ld):
    """The rows x cols column-major matrix with leading dimension ``ld`` in ``flat`` (a view)."""
    flat = flat.reshape(-1)
    if rows and cols and (ld < rows or (cols - 1) * ld + rows > flat.size):
        raise ValueError(f"leading dimension {ld} too small or buffer of {flat.size} too short "
                         f"for a {rows}x{cols} matrix")
    return np.lib.stride_tricks.as_strided(flat, shape=(rows, cols),
                                           strides=(flat.itemsize, ld * flat.itemsize))


class HostGemmEx:
    """``gemm_ex(op_a, op_b, m, n, k, A, a_type, lda, B, b_type, ldb, C, c_type, ldc,
    compute)``: ``C = op(A) op(B)`` column-major, alpha 1, beta 0, accumulated in float32.
    ``gemm_ex_calls`` counts the calls (the tests check the backend went through here). The
    host cuBLAS of the cuda-emulated backend (``host_build.HostCublas``) inherits it."""

    gemm_ex_calls = 0

    def _buffers(self, role, shape):
        """Three uint32 arrays and a mask of ``shape`` for operand ``role``, made once."""
        cache = self.__dict__.setdefault("_gemm_ex_buffers", {})
        key = (threading.get_ident(), role, shape)  # two threads may multiply at once
        if key not in cache:
            cache[key] = (np.empty(shape, np.uint32), np.empty(shape, np.uint32),
                          np.empty(shape, np.uint32), np.empty(shape, bool))
        return cache[key]

    def _operand(self, role, flat, data_type, op, rows, cols, ld, compute):
        """``op(X)`` (rows x cols) as float32 values the GEMM multiplies."""
        if flat.dtype != _STORAGE[data_type]:
            raise TypeError(f"data type {data_type} expects {_STORAGE[data_type]}, "
                            f"got {flat.dtype}")
        stored = _column_major(flat, *((cols, rows) if op else (rows, cols)), ld)
        if data_type == CUDA_R_32F and compute != CUBLAS_COMPUTE_32F_FAST_TF32:
            return stored.T if op else stored
        bits, low, scratch, nan = self._buffers(role, stored.shape)
        if data_type == CUDA_R_16BF:
            np.copyto(bits, stored, casting="unsafe")
            np.left_shift(bits, 16, out=bits)
        else:
            np.copyto(bits, stored.view(np.uint32))
        if compute == CUBLAS_COMPUTE_32F_FAST_TF32:  # round to nearest even at bit 13
            np.bitwise_and(bits, 0x7FFFFFFF, out=scratch)
            np.greater(scratch, 0x7F800000, out=nan)
            np.bitwise_or(bits, 0x400000, out=scratch)  # NaN: quieted, not rounded
            np.right_shift(bits, 13, out=low)
            np.bitwise_and(low, 1, out=low)
            np.add(low, 0xFFF, out=low)
            np.add(bits, low, out=bits)
            np.bitwise_and(bits, 0xFFFFE000, out=bits)
            np.copyto(bits, scratch, where=nan)
        values = bits.view(np.float32)
        return values.T if op else values

    def gemm_ex(self, op_a, op_b, m, n, k, A, a_type, lda, B, b_type, ldb, C, c_type, ldc,
                compute):
        if c_type != CUDA_R_32F or compute not in (CUBLAS_COMPUTE_32F,
                                                   CUBLAS_COMPUTE_32F_FAST_TF32):
            raise ValueError(f"unsupported output type {c_type} or compute type {compute}")
        left = self._operand("A", A, a_type, op_a, m, k, lda, compute)
        right = self._operand("B", B, b_type, op_b, k, n, ldb, compute)
        c = _column_major(C, m, n, ldc)
        # C^T = op(B)^T op(A)^T into the row-major view of C: no temporary when ldc == m.
        np.matmul(right.T, left.T, out=c.T)
        self.gemm_ex_calls += 1
