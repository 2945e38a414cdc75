"""Runs gpunn's CUDA kernels on the CPU: the ``.cu`` source compiled by g++ through a shim.

The source is exactly what the CUDA backend hands to ``cupy.RawModule``
(``gpunn.kernels.cuda_source``); a generated launcher per kernel loops over blocks and threads,
setting ``blockIdx``/``threadIdx`` as a GPU would. :class:`HostLoader` has the shape of the CUDA
backend's kernel loader, so ``CudaBackend(numpy, HostLoader(streams))`` runs the backend's launch
code (argument conversion, scalar dtypes, grid sizes) on host arrays: the "cuda-emulated"
backend. ``GPUNN_HOST_ASAN=1`` builds with AddressSanitizer (load Python with libasan preloaded).
"""

import ctypes
import hashlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
from gpunn.kernels import DTYPE_SUFFIX, cuda_source, kernel_specs
from host_gemm import HostGemmEx
from host_streams import HostStreams

SHIM = Path(__file__).resolve().parent / "cuda_host_shim.h"
_C_TYPES = {
    "in": "const real*", "out": "real*", "in_int64": "const long long*",
    "out_int64": "long long*", "real": "real", "double": "double", "int": "int",
    "int64": "long long",
    "in_u16": "const unsigned short*", "out_u16": "unsigned short*",
}
_CTYPES = {
    np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double,
    np.dtype(np.int32): ctypes.c_int, np.dtype(np.int64): ctypes.c_longlong,
}


def sanitize_flags():
    """Extra g++ flags: AddressSanitizer when ``GPUNN_HOST_ASAN=1``."""
    if os.environ.get("GPUNN_HOST_ASAN") == "1":
        return ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1"]
    return ["-O2"]


def _launcher(spec, dtype):
    name = spec.cuda_name(dtype)
    params = [f"{_C_TYPES[p.kind]} {p.name}" for p in spec.params] + ["long long n"]
    args = ", ".join([p.name for p in spec.params] + ["n"])
    return (
        f'extern "C" void host_launch_{name}(unsigned grid, unsigned block, '
        f'{", ".join(params)}) {{\n'
        "    gridDim = {grid, 1, 1};\n    blockDim = {block, 1, 1};\n"
        "    for (unsigned host_b = 0; host_b < grid; ++host_b) {\n"
        "        for (unsigned host_t = 0; host_t < block; ++host_t) {\n"
        "            blockIdx = {host_b, 0, 0};\n            threadIdx = {host_t, 0, 0};\n"
        f"            {name}({args});\n        }}\n    }}\n}}\n"
    )


def host_translation_unit(module, dtype):
    """The C++ file g++ compiles: shim, the RawModule source, one launcher per kernel."""
    specs = [s for s in kernel_specs().values() if s.module == module]
    return "\n".join([f'#include "{SHIM}"', cuda_source(module, dtype)]
                     + [_launcher(s, dtype) for s in specs])


def build(module, dtype):
    """Compile ``module`` for ``dtype`` into a shared library (cached by content); its path."""
    source = host_translation_unit(module, dtype)
    flags = ["-std=c++17", "-shared", "-fPIC", "-Wall", "-Werror", *sanitize_flags()]
    digest = hashlib.sha256((source + SHIM.read_text() + " ".join(flags)).encode()).hexdigest()
    out_dir = Path(tempfile.gettempdir()) / f"gpunn-host-{os.getuid()}"
    out_dir.mkdir(exist_ok=True)
    library = out_dir / f"{module}_{DTYPE_SUFFIX[dtype][1]}_{digest[:16]}.so"
    if not library.exists():
        cpp = library.with_suffix(".cpp")
        cpp.write_text(source)
        partial = library.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run(["g++", *flags, "-x", "c++", str(cpp), "-o", str(partial)],
                       check=True, capture_output=True, text=True)
        os.replace(partial, library)
    return library


class HostKernel:
    """A host-compiled kernel called like ``cupy.RawKernel``: ``kernel(grid, block, args)``,
    submitted to the calling thread's current stream of ``streams``."""

    def __init__(self, function, streams):
        self._function = function
        self._streams = streams

    def __call__(self, grid, block, args):
        converted = []
        for arg in args:
            if isinstance(arg, np.ndarray):
                converted.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                converted.append(_CTYPES[np.asarray(arg).dtype](arg))
        launch = (self._function, ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]), *converted)
        # The arrays stay alive while recorded work names their memory.
        keep = [arg for arg in args if isinstance(arg, np.ndarray)]
        self._streams.submit(self._streams.current(), lambda: (launch[0](*launch[1:]), keep))


class HostModule:
    """The host build of one ``.cu`` module for one dtype, shaped like ``cupy.RawModule``."""

    def __init__(self, module, dtype, streams=None):
        self._library = ctypes.CDLL(str(build(module, dtype)))
        self._streams = HostStreams() if streams is None else streams

    def get_function(self, name):
        function = getattr(self._library, f"host_launch_{name}")
        function.restype = None
        return HostKernel(function, self._streams)


class HostLoader:
    """Kernel loader for ``CudaBackend``: host builds instead of ``cupy.RawModule``."""

    def __init__(self, streams):
        self._modules = {}
        self._lock = threading.Lock()
        self._streams = streams

    def __call__(self, module, dtype):
        key = (module, str(dtype))
        with self._lock:
            if key not in self._modules:
                self._modules[key] = HostModule(module, str(dtype), self._streams)
            return self._modules[key]


class HostCublas(HostGemmEx):
    """Column-major cuBLAS ``gemm`` on host memory, with cuBLAS's own argument conventions.

    ``gemm(transa, transb, m, n, k, A, lda, B, ldb, C, ldc)`` computes ``C = op(A) op(B)``
    where every matrix is read column-major from its array's memory with its leading
    dimension, exactly as cuBLAS reads device memory: so the CUDA backend's mapping of
    row-major matmuls onto cuBLAS (``gpunn.backends.cuda.gemm_arguments``) runs for real in the
    cuda-emulated backend, argument order and leading dimensions included. Out-of-bounds
    reads or writes raise instead of touching memory. Each call is submitted to the stream
    it names (``host_streams``), as cuBLAS queues it on its handle's stream.
    """

    gemm_ex_precisions = ("tf32", "bf16")

    def __init__(self, streams):
        self.calls = 0
        self._streams = streams

    @staticmethod
    def _matrix(array, rows, cols, ld):
        flat = array.reshape(-1)
        if rows and cols and (ld < rows or (cols - 1) * ld + rows > flat.size):
            raise ValueError(f"cuBLAS matrix {rows}x{cols} with ld={ld} reads past "
                             f"{flat.size} elements")
        return np.lib.stride_tricks.as_strided(
            flat, shape=(rows, cols), strides=(flat.itemsize, ld * flat.itemsize),
            writeable=flat.flags.writeable)

    def gemm_ex(self, *args):
        """``cublasGemmEx``'s arguments, then the stream."""
        *args, stream = args
        self._streams.submit(stream, lambda: HostGemmEx.gemm_ex(self, *args))

    def gemm(self, transa, transb, m, n, k, A, lda, B, ldb, C, ldc, stream):
        self._streams.submit(stream, lambda: self._gemm(transa, transb, m, n, k, A, lda, B,
                                                        ldb, C, ldc))

    def _gemm(self, transa, transb, m, n, k, A, lda, B, ldb, C, ldc):
        self.calls += 1
        a = self._matrix(A, *((k, m) if transa else (m, k)), lda)
        b = self._matrix(B, *((n, k) if transb else (k, n)), ldb)
        c = self._matrix(C, m, n, ldc)
        op_a, op_b = (a.T if transa else a), (b.T if transb else b)
        # C^T = op(B)^T op(A)^T into the row-major view of C: no temporary when ldc == m.
        np.matmul(op_b.T, op_a.T, out=c.T)


def emulated_backend(block_size=32, max_blocks=5, streams=None):
    """The CUDA backend's launch code over NumPy arrays and host-compiled kernels, with
    graph capture emulated (``host_streams``).

    Small blocks and few of them, so even small inputs span several blocks and every thread
    runs several grid-stride iterations.
    """
    import numpy

    from gpunn.backends.cuda import CudaBackend

    streams = HostStreams() if streams is None else streams
    return CudaBackend(numpy, HostLoader(streams), name="cuda-emulated",
                       device="host CPU running the CUDA C (g++)", block_size=block_size,
                       max_blocks=max_blocks, blas=HostCublas(streams), streams=streams)
