"""CUDA backend: CuPy arrays, cuBLAS GEMMs, the ``.cu`` kernels compiled with NVRTC.

The array module, the kernel loader and the cuBLAS binding are constructor arguments, so the
same launch code runs on a GPU (``xp=cupy``, :class:`NvrtcLoader`, :class:`gpunn.backends.
cublas.Cublas`) and, in the tests, on NumPy arrays with the ``.cu`` files compiled for the host
and a host emulation of column-major cuBLAS (the "cuda-emulated" backend).

A recorded training step is captured once as a CUDA graph and relaunched
(:meth:`CudaBackend.replayable`): one launch per step instead of ~30 Python calls. Capture
needs every launch on one stream and cuBLAS calls that do not set the stream while capturing,
which CuPy's own matmul does; so GEMMs go through the cuBLAS binding, whose handle is bound to
the backend's stream once. Without such a binding, or when capture fails, steps are replayed
eagerly and :attr:`graph_status` says why.
"""

import hashlib
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from gpunn.backends.base import Backend
from gpunn.backends.gemm_precision import GEMM_EX_TYPES
from gpunn.kernels import cuda_source

# gpunn's NVRTC options, after CuPy's own (--std=c++17 --device-as-default-execution-space).
# -ftz=false keeps subnormals, as the CPU does: CuPy's RawModule appends -ftz=true after any
# user option (the last one wins), so gpunn compiles with NVRTC itself (NvrtcLoader).
NVRTC_OPTIONS = ("--std=c++17", "--device-as-default-execution-space", "-ftz=false")


def nvrtc_compile(nvrtc, source, arch, name="gpunn.cu"):
    """Compile ``source`` with ``cupy.cuda.nvrtc`` for ``arch`` (e.g. ``"sm_90"``); the binary
    (cubin for ``sm_XX``, PTX for ``compute_XX``) and the compile log."""
    program = nvrtc.createProgram(source, name, [], [])
    try:
        try:
            nvrtc.compileProgram(program, [*NVRTC_OPTIONS, f"-arch={arch}"])
        except Exception as exc:
            raise RuntimeError(f"NVRTC failed for {arch}: {exc}\n"
                               f"{nvrtc.getProgramLog(program)}") from None
        binary = nvrtc.getCUBIN(program) if arch.startswith("sm_") else nvrtc.getPTX(program)
        return binary, nvrtc.getProgramLog(program)
    finally:
        nvrtc.destroyProgram(program)


def device_arch(nvrtc, capability):
    """``sm_XY`` for a device of compute capability ``"XY"`` when this NVRTC can target it,
    else PTX for the newest architecture it knows (the driver compiles that)."""
    supported = [int(a) for a in nvrtc.getSupportedArchs()]
    wanted = int(capability)
    if wanted in supported:
        return f"sm_{wanted}"
    return f"compute_{max(a for a in supported if a <= wanted)}"


class NvrtcLoader:
    """Compiles a kernel module for the current device on first use; cached on disk by source,
    options and architecture, and in memory per device and dtype."""

    def __init__(self, cupy):
        self._cupy = cupy
        self._modules = {}

    def __call__(self, module, dtype):
        device = self._cupy.cuda.Device()
        key = (device.id, module, str(dtype))
        raw = self._modules.get(key)
        if raw is None:
            from cupy.cuda import nvrtc

            arch = device_arch(nvrtc, device.compute_capability)
            path = self._cached_binary(nvrtc, cuda_source(module, str(dtype)), arch)
            raw = self._modules[key] = self._cupy.RawModule(path=str(path))
        return raw

    @staticmethod
    def _cached_binary(nvrtc, source, arch):
        digest = hashlib.sha256("\0".join([source, arch, *NVRTC_OPTIONS]).encode()).hexdigest()
        folder = Path(os.environ.get("GPUNN_CACHE_DIR")
                      or Path(tempfile.gettempdir()) / f"gpunn-nvrtc-{os.getuid()}")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest[:24]}.{'cubin' if arch.startswith('sm_') else 'ptx'}"
        if not path.exists():
            binary, _ = nvrtc_compile(nvrtc, source, arch)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(binary if isinstance(binary, bytes) else binary.encode())
            os.replace(partial, path)
        return path


def gemm_arguments(a, b, out, trans_a, trans_b):
    """The column-major cuBLAS ``gemm`` arguments for row-major ``out = op(a) @ op(b)``.

    Row-major ``C = op(A) op(B)`` is column-major ``C^T = op(B)^T op(A)^T``, and a row-major
    array read column-major is its transpose: so B comes first, each operand keeps its own
    transpose flag, and every leading dimension is the row stride of the row-major array. A 1-D
    ``a`` is one row; a 1-D ``out`` is one row (or, with one column in ``op(b)``, one column).

    Returns:
        ``(op_b, op_a, m, n, k, b, ldb, a, lda, out, ldc)`` with ``op_*`` 0 (N) or 1 (T) and
        ``m, n, k`` the column-major sizes: ``C^T`` is m x n, the inner dimension k.
    """
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    rows_a, inner = (a2.shape[1], a2.shape[0]) if trans_a else a2.shape
    inner_b, cols = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if inner != inner_b:
        raise ValueError(f"matmul: inner dimensions differ: {inner} and {inner_b}")
    if out.size != rows_a * cols:
        raise ValueError(f"matmul: out: expected {rows_a * cols} elements ({rows_a} x {cols}),"
                         f" got shape {out.shape}")
    for name, array in (("a", a2), ("b", b), ("out", out)):
        if not array.flags.c_contiguous:
            raise ValueError(f"matmul: {name}: expected a C-contiguous array, got strides "
                             f"{array.strides}")
    return (int(trans_b), int(trans_a), cols, rows_a, inner, b, b.shape[1], a2, a2.shape[1],
            out, cols)


class CudaBackend(Backend):
    """Launches grid-stride kernels: ``block_size`` threads, at most ``max_blocks`` blocks.

    Args:
        xp: the array module (cupy; numpy in the emulation).
        loader: ``loader(module, dtype)`` -> a module with ``get_function(name)``.
        blas: an object with ``gemm(op_a, op_b, m, n, k, a, lda, b, ldb, c, ldc)`` over
            column-major device memory (``gpunn.backends.cublas.Cublas``), or None for
            ``xp.matmul`` (then no CUDA graphs). Its ``gemm_ex`` (cuBLAS's argument order,
            see :mod:`gpunn.backends.gemm_precision`), if it has one, runs the tf32 and bf16
            GEMMs; without it they are emulated as on the CPU.
        stream: the stream graphs are captured on and launched from, and the cuBLAS handle's
            (None: no graphs). It must be a blocking stream: eager kernels run on the current
            (legacy default) stream, which then orders itself with it.
    """

    def __init__(self, xp, loader, name="cuda", device="cuda", block_size=256, max_blocks=None,
                 blas=None, stream=None):
        self.xp = xp
        self.name = name
        self.device = device
        self._loader = loader
        self._block = int(block_size)
        self._max_blocks = max_blocks or 65535
        self._functions = {}
        self._blas = blas
        self._stream = stream
        self._graph_failure = None

    def to_numpy(self, x):
        return x.get() if hasattr(x, "get") else np.asarray(x)

    def copy_from_host(self, dst, values):
        host = np.ascontiguousarray(np.asarray(values, dtype=dst.dtype).reshape(dst.shape))
        if hasattr(dst, "set"):
            dst.set(host)
        else:
            dst[...] = host

    def synchronize(self):
        if self.xp is not np:
            (self._stream or self.xp.cuda.get_current_stream()).synchronize()

    def _matmul(self, a, b, out, trans_a, trans_b, precision="fp32"):
        gemm_ex = getattr(self._blas, "gemm_ex", None) if precision != "fp32" else None
        if self._blas is None or precision != "fp32" and gemm_ex is None:
            return super()._matmul(a, b, out, trans_a, trans_b, precision)
        op_b, op_a, m, n, k, b, ldb, a, lda, out, ldc = gemm_arguments(a, b, out, trans_a,
                                                                       trans_b)
        if gemm_ex is None:
            self._blas.gemm(op_b, op_a, m, n, k, b, ldb, a, lda, out, ldc)
            return None
        operand, output, compute = GEMM_EX_TYPES[precision]
        gemm_ex(op_b, op_a, m, n, k, b, operand, ldb, a, operand, lda, out, output, ldc, compute)
        return None

    def _launch(self, spec, converted):
        args, dtype, n = converted
        key = (spec.name, dtype)
        function = self._functions.get(key)
        if function is None:
            module = self._loader(spec.module, dtype)
            function = self._functions[key] = module.get_function(spec.cuda_name(dtype))
        grid = max(1, min(math.ceil(n / self._block), self._max_blocks))
        function((grid,), (self._block,), (*args, np.int64(n)))

    @property
    def graph_status(self):
        if self._stream is None or self._blas is None:
            return ("eager replay: CUDA graphs need the nvmath-python cuBLAS binding "
                    "(pip install nvmath-python) and a GPU")
        if self._graph_failure is not None:
            return f"eager replay: CUDA graph capture failed ({self._graph_failure})"
        return "CUDA graphs (one launch per recorded step)"

    def replayable(self, tape):
        """A CUDA graph of ``tape`` captured on the backend's stream, launched per call; the
        eager replay when graphs are unavailable or capture fails (the reason is kept)."""
        if self._stream is None or self._blas is None or self._graph_failure is not None:
            return tape.replay
        stream = self._stream
        try:
            with stream:
                stream.begin_capture()
                try:
                    tape.replay()
                finally:
                    graph = stream.end_capture()
        except Exception as exc:  # a driver or library that cannot capture: replay eagerly
            self._graph_failure = f"{type(exc).__name__}: {exc}"
            stream.synchronize()
            return tape.replay
        return lambda: graph.launch(stream)
