"""``cublasGemmEx`` emulated on the host: column-major NumPy arrays read exactly as cuBLAS reads
its arguments (operation flags, sizes, leading dimensions, data and compute types), so the CUDA
backend's row-major to column-major mapping runs in CI. Rounding to TF32 and widening bfloat16
are written here on the bits with NumPy, apart from the kernels they check."""

import numpy as np

from gpunn.backends.gemm_precision import (
    CUBLAS_COMPUTE_32F,
    CUBLAS_COMPUTE_32F_FAST_TF32,
    CUDA_R_16BF,
    CUDA_R_32F,
)

_STORAGE = {CUDA_R_32F: np.dtype(np.float32), CUDA_R_16BF: np.dtype(np.uint16)}


def _tf32(x):
    """float32 ``x`` rounded to nearest even at 10 mantissa bits (NaN quieted)."""
    u = x.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0xFFF + ((u >> 13) & 1)) >> 13) << 13
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, u | 0x400000, rounded).astype(np.uint32).view(np.float32)


def _matrix(flat, data_type, op, rows, cols, ld):
    """``op(X)`` (rows x cols, float32) of the column-major X stored in ``flat``."""
    if flat.dtype != _STORAGE[data_type]:
        raise TypeError(f"data type {data_type} expects {_STORAGE[data_type]}, got {flat.dtype}")
    stored_rows, stored_cols = (cols, rows) if op else (rows, cols)
    if ld < max(1, stored_rows) or flat.size < ld * (stored_cols - 1) + stored_rows:
        raise ValueError(f"leading dimension {ld} too small or buffer of {flat.size} too short")
    padded = np.zeros(ld * stored_cols, flat.dtype)
    padded[: min(flat.size, padded.size)] = flat.reshape(-1)[: padded.size]
    stored = padded.reshape(stored_cols, ld).T[:stored_rows]
    if data_type == CUDA_R_16BF:
        stored = (stored.astype(np.uint32) << 16).view(np.float32)
    return stored.T if op else stored


class HostGemmEx:
    """``gemm_ex(op_a, op_b, m, n, k, A, a_type, lda, B, b_type, ldb, C, c_type, ldc,
    compute)``: ``C = op(A) op(B)`` column-major, alpha 1, beta 0, accumulated in float32.
    ``gemm_ex_calls`` counts the calls (the tests check the backend went through here). The
    host cuBLAS of the cuda-emulated backend (``host_build.HostCublas``) inherits it."""

    gemm_ex_calls = 0

    def gemm_ex(self, op_a, op_b, m, n, k, A, a_type, lda, B, b_type, ldb, C, c_type, ldc,
                compute):
        if c_type != CUDA_R_32F or compute not in (CUBLAS_COMPUTE_32F,
                                                   CUBLAS_COMPUTE_32F_FAST_TF32):
            raise ValueError(f"unsupported output type {c_type} or compute type {compute}")
        left = _matrix(A, a_type, op_a, m, k, lda)
        right = _matrix(B, b_type, op_b, k, n, ldb)
        if compute == CUBLAS_COMPUTE_32F_FAST_TF32:
            left, right = _tf32(np.ascontiguousarray(left)), _tf32(np.ascontiguousarray(right))
        if ldc < m or C.size < ldc * (n - 1) + m:
            raise ValueError(f"ldc {ldc} too small or C of {C.size} too short")
        flat = C.reshape(-1)
        result = (left @ right).astype(np.float32)
        for j in range(n):  # column j of C starts at j * ldc
            flat[j * ldc: j * ldc + m] = result[:, j]
        self.gemm_ex_calls += 1
