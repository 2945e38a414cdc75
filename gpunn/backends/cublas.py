"""Column-major GEMMs through NVIDIA's cuBLAS binding (nvmath-python), capturable in a graph.

CuPy's matmul sets the cuBLAS stream on every call, which CuPy refuses while a stream is being
captured into a CUDA graph; nvmath-python's thin binding (``nvmath.bindings.cublas``) calls
``cublasSgemm``/``cublasDgemm``/``cublasGemmEx`` as they are. Each thread has its own handle
and workspace (a handle is not to be shared by threads that capture), bound to the stream each
call names; ``cublasSetStream`` resets the workspace, so it is set again with it, as PyTorch
does. It is the binding NVIDIA maintains for cuBLAS and cuBLASLt (the fused-epilogue GEMMs
the next steps want), small (one wheel, no compiler).
"""

import threading

import numpy as np

from gpunn.backends.gemm_precision import CUBLAS_GEMM_DEFAULT

# cuBLAS needs a user workspace to run inside a captured graph (it cannot allocate there).
WORKSPACE_BYTES = 32 * 1024 * 1024


class Cublas:
    """``gemm(transa, transb, m, n, k, A, lda, B, ldb, C, ldc, stream)``: ``C = op(A) op(B)``
    on column-major CuPy arrays (alpha 1, beta 0), float32 or float64, queued on ``stream``.

    Args:
        binding: ``nvmath.bindings.cublas``.
        cupy: the cupy module (for the workspaces).
        gemm_ex_precisions: the precisions whose :meth:`gemm_ex` passed its self-check
            (``gpunn.backends`` checks each kind before use; the others are emulated).
    """

    def __init__(self, binding, cupy, gemm_ex_precisions=("tf32", "bf16")):
        self._lib = binding
        self._cupy = cupy
        self._local = threading.local()
        self.gemm_ex_precisions = tuple(gemm_ex_precisions)
        # Host scalars read when each call is issued (host pointer mode, cuBLAS's default).
        self._scalars = {np.dtype(t): (np.ones(1, t), np.zeros(1, t))
                         for t in (np.float32, np.float64)}
        self._functions = {np.dtype(np.float32): binding.sgemm,
                           np.dtype(np.float64): binding.dgemm}

    def _handle(self, stream):
        """The calling thread's handle, bound to ``stream``."""
        local = self._local
        if getattr(local, "handle", None) is None:
            local.workspace = self._cupy.empty(WORKSPACE_BYTES, dtype=np.uint8)
            local.handle, local.stream = self._lib.create(), None
        if local.stream != stream.ptr:
            self._lib.set_stream(local.handle, stream.ptr)
            self._lib.set_workspace(local.handle, local.workspace.data.ptr, WORKSPACE_BYTES)
            local.stream = stream.ptr
        return local.handle

    def gemm_ex(self, transa, transb, m, n, k, A, a_type, lda, B, b_type, ldb, C, c_type, ldc,
                compute_type, stream):
        """``cublasGemmEx``, alpha 1, beta 0 (float32 scalars: every compute type gpunn uses
        is a 32F one): the tf32 and bf16 GEMMs (:mod:`gpunn.backends.gemm_precision`)."""
        one, zero = self._scalars[np.dtype(np.float32)]
        self._lib.gemm_ex(self._handle(stream), transa, transb, m, n, k, one.ctypes.data,
                          A.data.ptr, a_type, lda, B.data.ptr, b_type, ldb, zero.ctypes.data,
                          C.data.ptr, c_type, ldc, compute_type, CUBLAS_GEMM_DEFAULT)

    def gemm(self, transa, transb, m, n, k, A, lda, B, ldb, C, ldc, stream):
        one, zero = self._scalars[C.dtype]
        self._functions[C.dtype](self._handle(stream), transa, transb, m, n, k,
                                 one.ctypes.data, A.data.ptr, lda, B.data.ptr, ldb,
                                 zero.ctypes.data, C.data.ptr, ldc)
