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

import math
import threading

import numpy as np

from gpunn.backends.base import Backend
from gpunn.backends.gemm_precision import GEMM_EX_TYPES
from gpunn.backends.nvrtc import NVRTC_OPTIONS, NvrtcLoader, device_arch, nvrtc_compile

__all__ = ["CudaBackend", "CupyStreams", "NvrtcLoader", "gemm_arguments", "NVRTC_OPTIONS",
           "device_arch", "nvrtc_compile"]


class CupyStreams:
    """The streams the CUDA backend uses, through CuPy.

    All work (eager kernels, GEMMs, graph launches) goes to the calling thread's current
    stream (CuPy's, per thread: the legacy default stream unless the user chose another), so
    it is ordered as the user's own CuPy work is. Each thread captures graphs on a
    non-blocking stream of its own: another thread's work on the legacy stream neither waits
    for a capture in progress (``cudaErrorStreamCaptureImplicit`` on a blocking one) nor
    lands in it.
    """

    def __init__(self, cupy):
        self._cuda = cupy.cuda
        self._local = threading.local()

    def current(self):
        """The calling thread's current stream."""
        return self._cuda.get_current_stream()

    def capture_stream(self):
        """The calling thread's own non-blocking stream for captures (a context manager that
        makes it current)."""
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = self._cuda.Stream(non_blocking=True)
        return stream

    def run(self, function, args):
        """``function(*args)``: CuPy queues its work on the current stream itself."""
        function(*args)

    def synchronize(self):
        """Wait for all work on the device, whichever stream queued it."""
        self._cuda.Device().synchronize()

    def pinned_empty(self, shape, dtype):
        """A NumPy array in page-locked host memory (what an asynchronous copy needs)."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        memory = self._cuda.alloc_pinned_memory(max(1, count * dtype.itemsize))
        return np.frombuffer(memory, dtype, count).reshape(shape)

    def record(self, stream):
        """An event recorded on ``stream`` now."""
        event = self._cuda.Event(disable_timing=True)
        event.record(stream)
        return event

    def copy_async(self, dst, src, after):
        """Queue ``dst[...] = src`` (pinned host to device) on this device's copy stream, after
        the event ``after`` (None: at once); the event that marks its end."""
        stream = getattr(self, "_copy", None)
        if stream is None:
            stream = self._copy = self._cuda.Stream(non_blocking=True)
        if after is not None:
            stream.wait_event(after)
        dst.set(src, stream=stream)
        return self.record(stream)

    def wait(self, stream, event):
        """Make ``stream``'s next work wait for ``event``."""
        stream.wait_event(event)


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
        xp: the array module (cupy; numpy in the emulation, whose "device" arrays are then
            kept apart from host arrays: :meth:`asarray` and :meth:`to_numpy` always copy, as
            a GPU must).
        loader: ``loader(module, dtype)`` -> a module with ``get_function(name)``.
        blas: an object with ``gemm(op_a, op_b, m, n, k, a, lda, b, ldb, c, ldc, stream)``
            over column-major device memory (``gpunn.backends.cublas.Cublas``), or None for
            ``xp.matmul`` (then no CUDA graphs). Its ``gemm_ex`` (cuBLAS's argument order,
            see :mod:`gpunn.backends.gemm_precision`) runs the tf32 and bf16 GEMMs of the
            precisions in its ``gemm_ex_precisions``; the others are emulated as on the CPU.
        streams: :class:`CupyStreams` (or the emulation's), None for no graphs.
        blas_note: why ``blas`` is None (shown by :attr:`graph_status`).
    """

    def __init__(self, xp, loader, name="cuda", device="cuda", block_size=256, max_blocks=None,
                 blas=None, streams=None, blas_note=None):
        self.xp = xp
        self.name = name
        self.device = device
        self._loader = loader
        self._block = int(block_size)
        self._max_blocks = max_blocks or 65535
        self._functions = {}
        self._blas = blas
        self._streams = streams
        self._blas_note = blas_note
        self._graph_failures = {}  # the GEMM kinds of a tape -> why its capture failed
        #: Turn graphs off (True again: on) to compare with eager replay; steps recorded
        #: while it is False replay eagerly for good.
        self.use_graphs = True
        #: How many recorded steps were captured as graphs.
        self.captures = 0

    def asarray(self, x, dtype=None):
        if self.xp is np:  # the emulation: a device array never aliases a host one
            return np.array(x, dtype=dtype, order="C", copy=True)
        return super().asarray(x, dtype)

    def to_numpy(self, x):
        if hasattr(x, "get"):
            return x.get()
        return np.array(x, copy=True)  # the emulation: a host copy, as from a GPU

    def copy_from_host(self, dst, values):
        host = np.ascontiguousarray(np.asarray(values, dtype=dst.dtype).reshape(dst.shape))
        if hasattr(dst, "set"):
            dst.set(host)
        else:
            self._call_now(dst.__setitem__, (Ellipsis, host))

    def staging_buffer(self, device_array):
        """Page-locked host memory of ``device_array``'s shape (a plain host array without
        streams: then :meth:`stage` copies synchronously)."""
        if self._streams is None:
            return np.empty(device_array.shape, device_array.dtype)
        return self._streams.pinned_empty(device_array.shape, device_array.dtype)

    def mark(self):
        return None if self._streams is None else self._streams.record(self._streams.current())

    def stage(self, device_array, host_array, after=None):
        """The copy runs on a copy stream of its own, after ``after`` (the steps that last
        read ``device_array``), so it overlaps the steps queued meanwhile."""
        if self._streams is None:
            self.copy_from_host(device_array, host_array)
            return None
        return self._streams.copy_async(device_array, host_array, after)

    def use_staged(self, token):
        if token is not None:
            self._streams.wait(self._streams.current(), token)

    def host_wait(self, token):
        if token is not None:
            token.synchronize()

    def synchronize(self):
        """Wait for every stream gpunn queued work on (the whole device)."""
        if self._streams is not None:
            self._streams.synchronize()
        elif self.xp is not np:
            self.xp.cuda.Device().synchronize()

    def _call_now(self, function, args):
        if self._streams is None:
            function(*args)
        else:
            self._streams.run(function, args)

    def _matmul(self, a, b, out, trans_a, trans_b, precision="fp32"):
        blas = self._blas
        gemm_ex = precision in getattr(blas, "gemm_ex_precisions", ()) and precision != "fp32"
        if blas is None or precision != "fp32" and not gemm_ex:
            return super()._matmul(a, b, out, trans_a, trans_b, precision)
        op_b, op_a, m, n, k, b, ldb, a, lda, out, ldc = gemm_arguments(a, b, out, trans_a,
                                                                       trans_b)
        stream = self._streams.current() if self._streams is not None else None
        if not gemm_ex:
            blas.gemm(op_b, op_a, m, n, k, b, ldb, a, lda, out, ldc, stream)
            return None
        operand, output, compute = GEMM_EX_TYPES[precision]
        blas.gemm_ex(op_b, op_a, m, n, k, b, operand, ldb, a, operand, lda, out, output, ldc,
                     compute, stream)
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
        if self._streams is None or self._blas is None:
            why = self._blas_note or "nvmath-python is not installed (pip install nvmath-python)"
            return f"eager replay: CUDA graphs need cuBLAS through nvmath-python: {why}"
        if not self.use_graphs:
            return "eager replay: CUDA graphs turned off (use_graphs = False)"
        status = "CUDA graphs (one launch per recorded step)"
        for kind, reason in sorted(self._graph_failures.items()):
            status += f"; eager replay of steps with {'+'.join(kind)} GEMMs: capture failed " \
                      f"({reason})"
        return status

    def _tape_kind(self, tape):
        """What a capture of ``tape`` depends on: the precisions and dtypes of its GEMMs."""
        kinds = {f"{args[5]}/{args[2].dtype}" for function, args in tape.ops
                 if getattr(function, "__func__", None) is CudaBackend._matmul}
        return tuple(sorted(kinds)) or ("no",)

    def replayable(self, tape):
        """A CUDA graph of ``tape`` captured on the calling thread's capture stream, launched
        on its current stream per call; the eager replay when graphs are unavailable or
        turned off, or when the capture fails (the reason is kept per GEMM kind: one kind
        that cannot be captured does not turn graphs off for the others)."""
        kind = self._tape_kind(tape)
        if (self._streams is None or self._blas is None or not self.use_graphs
                or kind in self._graph_failures):
            return tape.replay
        streams = self._streams
        stream = streams.capture_stream()
        try:
            with stream:
                stream.begin_capture()
                try:
                    tape.replay()
                finally:
                    graph = stream.end_capture()
        except Exception as exc:  # a driver or library that cannot capture: replay eagerly
            self._graph_failures[kind] = f"{type(exc).__name__}: {exc}"
            stream.synchronize()
            return tape.replay
        self.captures += 1
        return lambda: graph.launch(streams.current())

    def check_capture(self):
        """Capture a tiny recorded step (an fp32 GEMM and a kernel), launch it and compare
        with the eager result, so ``gpunn info`` in any process says whether graphs work
        here; a failure is kept like any capture's. Returns :attr:`graph_status`."""
        x = self.asarray(np.array([[1.0, -2.0], [3.0, 0.5]], dtype=np.float32))
        ones, out = self.asarray(np.ones(4, np.float32)), self.zeros((2, 2), np.float32)
        with self.recording() as tape:
            self.matmul(x, x, out=out)
            self.kernel("act_bwd", ones, 0, out.reshape(-1))
        eager = self.to_numpy(out)
        replay = self.replayable(tape)
        if replay != tape.replay:
            self.copy_from_host(out, np.zeros((2, 2)))
            replay()
            self.synchronize()
            if not np.array_equal(self.to_numpy(out), eager):
                self._graph_failures[self._tape_kind(tape)] = (
                    f"the graph gave {self.to_numpy(out).tolist()}, eager {eager.tolist()}")
        return self.graph_status

    @property
    def gemm_status(self):
        if self._blas is None:
            return f"{self.xp.__name__}.matmul (tf32, bf16 emulated)"
        kinds = ", ".join(("fp32", "fp64", *self._blas.gemm_ex_precisions))
        note = f"; {self._blas_note}" if self._blas_note else ""
        return f"cuBLAS ({kinds}){note}"
