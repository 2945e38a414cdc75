"""What every backend shares: array helpers written once against ``self.xp``, kernel arguments."""

import contextlib
import contextvars
import functools
import numbers
import threading

import numpy as np

from gpunn.backends.gemm_precision import check_operands
from gpunn.kernels import U16_KINDS, kernel_specs

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INT64 = np.dtype(np.int64)
_SCALAR_TYPES = {"int": np.int32, "int64": np.int64, "double": np.float64}
_FLOAT32, _FLOAT64 = DTYPES
_UINT16 = np.dtype(np.uint16)
# Scalar types the fast path converts itself; any other (valid or not) takes the full checks.
_PLAIN_SCALARS = {"real": (float, int, bool, np.float32, np.float64),
                  "double": (float, int, bool, np.float32, np.float64),
                  "int": (int, bool), "int64": (int, bool)}
_PLANS = {}
# The tape that records this context's launches, if any (see Backend.recording).
_TAPE = contextvars.ContextVar("gpunn_tape", default=None)


class Tape:
    """The launches of one recorded step, in order: ``(function, args)`` pairs with arguments
    already converted, so replaying them repeats exactly the same work."""

    def __init__(self, backend):
        self.backend = backend
        self.ops = []

    def replay(self):
        """Run the recorded launches again, eagerly."""
        for function, args in self.ops:
            function(*args)


def _plan(spec):
    """Per kernel argument: ``(dtype, size_is_n, scalar_types, to_scalar)``; arrays have
    ``scalar_types`` None and dtype None for the real dtype (else int64); scalars a converter,
    None for the real dtype. Also whether any array declares a size other than n."""
    plan = []
    for p in spec.params:
        if p.is_array:
            dtype = _INT64 if p.is_int64_array else None
            dtype = _UINT16 if p.kind in U16_KINDS else dtype
            plan.append((dtype, p.size == ("n", None, None), None, None))
        else:
            plan.append((None, False, _PLAIN_SCALARS[p.kind], _SCALAR_TYPES.get(p.kind)))
    sized = any(p.is_array and p.size != ("n", None, None) for p in spec.params)
    return tuple(plan), sized, spec.n_index


@functools.lru_cache(maxsize=None)
def _u16_positions(spec):
    """Where ``spec`` takes bfloat16 bits: non-empty ones only with float32 arrays."""
    return tuple(i for i, p in enumerate(spec.params) if p.kind in U16_KINDS)


def check_dtype(dtype, argument="dtype"):
    """Return ``dtype`` as a supported ``np.dtype`` (float32 or float64), else raise TypeError."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    # Not "None in DTYPES": NumPy compares None as np.dtype(None), which is float64.
    if resolved is None or resolved not in DTYPES:
        raise TypeError(f"{argument}: expected float32 or float64, got {dtype!r}")
    return resolved


class Backend:
    """Base class: ``name``, ``xp`` and the operations layers, losses and optimizers use."""

    name = "base"
    xp = np
    device = "cpu"

    def asarray(self, x, dtype=None):
        """``x`` as a C-contiguous array on this backend's device (copied only if needed)."""
        return self.xp.ascontiguousarray(self.xp.asarray(x, dtype=dtype))

    def to_numpy(self, x):
        """``x`` as a NumPy array on the host."""
        return np.asarray(x)

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype=check_dtype(dtype))

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=check_dtype(dtype))

    def copy_from_host(self, dst, values):
        """Write host ``values`` into the device array ``dst`` in place (no new array)."""
        dst[...] = np.asarray(values, dtype=dst.dtype).reshape(dst.shape)

    def matmul(self, a, b, out=None, trans_a=False, trans_b=False, precision="fp32"):
        """``out[...] = op(a) @ op(b)`` through BLAS; a 1-D ``a`` is one row, a 1-D ``out`` one
        row or column. Transposes are views, so no copy is made. Recorded like a kernel; a
        new ``out`` is allocated when none is given (not in a recorded step).

        ``precision`` (:mod:`gpunn.backends.gemm_precision`): ``"fp32"``; ``"tf32"`` (float32
        operands read as TF32) or ``"bf16"`` (operands of bfloat16 bits, uint16), both
        accumulated and written in float32. Here those two are emulated: the operands are
        rounded to TF32 or widened from bfloat16 into float32 scratch arrays, one per operand
        slot and shape (allocated once), and multiplied in float32; bf16 operands that
        :meth:`bf16_zeros` keeps as float32 values (the CPU's) are read as they are.
        """
        if precision != "fp32":
            precision = check_operands(a, b, out, precision)
        if precision == "bf16":  # operands kept as float32 values (bf16_zeros) need no widening
            a, b = (x if (values := self._bf16_values(x)) is None else values for x in (a, b))
        if out is None:
            rows = 1 if a.ndim == 1 else a.shape[1 if trans_a else 0]
            shape = (b.shape[0 if trans_b else 1],) if a.ndim == 1 else None
            dtype = np.result_type(a.dtype, b.dtype) if precision == "fp32" else np.float32
            out = self.xp.empty(shape or (rows, b.shape[0 if trans_b else 1]), dtype=dtype)
        tape = _TAPE.get()
        if tape is not None and tape.backend is self:
            tape.ops.append((self._matmul, (a, b, out, trans_a, trans_b, precision)))
        self._matmul(a, b, out, trans_a, trans_b, precision)
        return out

    def _matmul(self, a, b, out, trans_a, trans_b, precision="fp32"):
        if precision == "tf32" or precision == "bf16" and a.dtype == _UINT16:
            a = self._scratch_operand(a, "a", precision)
        if precision == "tf32" or precision == "bf16" and b.dtype == _UINT16:
            b = self._scratch_operand(b, "b", precision)
        self.xp.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)

    def bf16_zeros(self, shape):
        """Zero bfloat16 bits (uint16) of ``shape``, for operands of the bf16 GEMMs: a working
        copy or a buffer the kernels write them into."""
        return self.xp.zeros(shape, dtype=_UINT16)

    def _bf16_values(self, bits):
        """The float32 values of the bfloat16 ``bits`` where :meth:`bf16_zeros` keeps them in
        float32 storage (a view of it), else None: not on this backend."""
        return None

    def call(self, function, *args):
        """``function(*args)``, recorded like a kernel: a collective (``gpunn.comm``) or a
        fill between launches. On CUDA it must queue its work on the current stream."""
        tape = _TAPE.get()
        if tape is not None and tape.backend is self:
            tape.ops.append((self._call_now, (function, args)))
        self._call_now(function, args)

    def _call_now(self, function, args):
        """Run a :meth:`call` (a backend with streams queues it on the current one)."""
        function(*args)

    def _scratch_operand(self, x, slot, precision):
        """A float32 copy of operand ``x`` as the GEMM of ``precision`` reads it, in the
        scratch array of its slot, shape and thread (two threads may train on one backend).
        The conversion launches are part of the GEMM: not recorded on their own (a recorded
        GEMM repeats them)."""
        scratch = self.__dict__.setdefault("_scratch", {})
        key = (threading.get_ident(), slot, x.shape)
        copy = scratch.get(key)
        if copy is None:
            copy = scratch[key] = self.xp.empty(x.shape, dtype=np.float32)
        if precision == "bf16":
            self._launch_now("bf16_to_f32", x, copy)
        else:
            copy[...] = x
            self._launch_now("round_tf32", copy)
        return copy

    def _launch_now(self, name, *args):
        spec = kernel_specs()[name]
        self._launch(spec, self._convert_args(spec, args))

    @contextlib.contextmanager
    def recording(self):
        """Run as usual while recording every :meth:`kernel`, :meth:`matmul` and :meth:`call`
        of this context; yields the :class:`Tape`. Only those may happen in a recorded region."""
        tape = Tape(self)
        token = _TAPE.set(tape)
        try:
            yield tape
        finally:
            _TAPE.reset(token)

    def replayable(self, tape):
        """A function that repeats ``tape``: here, the launches replayed eagerly."""
        return tape.replay

    @property
    def graph_status(self):
        """How :meth:`replayable` replays: a short description (``gpunn info`` shows it)."""
        return "eager replay of the recorded launches (no CUDA graphs on this backend)"

    @property
    def gemm_status(self):
        """Which library runs the GEMMs of each precision (``gpunn info`` shows it)."""
        return "NumPy's BLAS (tf32, bf16 emulated)"

    def synchronize(self):
        """Wait for queued device work; a no-op on the CPU."""

    # Staging (gpunn.staging): rows copied to the device behind the running step. Here host
    # memory is the device's, so a chunk is read straight into its device slot.
    def staging_buffer(self, device_array):
        """The host array :meth:`stage` copies into ``device_array``: here the array itself."""
        return device_array

    def scatter_rows(self, rows, at, out):
        """``out[at[i]] = rows[i]`` on the host (``out``: the ring where :meth:`staging_buffer`
        is the device array, else a staging buffer), the NaN/inf values copied counted in the
        same pass (:mod:`gpunn.backends.host_rows`); returns that count."""
        from gpunn.backends.host_rows import scatter_rows

        return scatter_rows(rows, at, out)

    def mark(self):
        """A token for the work queued so far on the current stream (None: it is done)."""
        return None

    def stage(self, device_array, host_array, after=None):
        """Copy ``host_array`` into ``device_array`` once the work of the token ``after`` is
        done, without holding up the current stream; a token for :meth:`use_staged`."""
        if not np.may_share_memory(host_array, device_array):
            device_array[...] = host_array
        return None

    def use_staged(self, token):
        """Make the current stream's next work wait for the :meth:`stage` of ``token``."""

    def host_wait(self, token):
        """Wait on the host until the work of ``token`` is done (None: it is)."""

    def kernel(self, name, *args):
        """Run kernel ``name`` (see ``gpunn.kernels``) with the twin's argument order."""
        spec = kernel_specs().get(name)
        if spec is None:
            raise ValueError(f"kernel: expected one of {sorted(kernel_specs())}, got {name!r}")
        converted = self._convert_args(spec, args)
        tape = _TAPE.get()
        if tape is not None and tape.backend is self:
            tape.ops.append((self._launch, (spec, converted)))
        self._launch(spec, converted)

    def _convert_args(self, spec, args):
        fast = self._fast_convert_args(spec, args)
        if fast is not None:
            return fast
        if len(args) != len(spec.params):
            names = ", ".join(p.name for p in spec.params)
            raise TypeError(f"kernel {spec.name}({names}): expected {len(spec.params)} "
                            f"arguments, got {len(args)}")
        # The first real array fixes the dtype; the last array of undeclared size fixes n.
        first = next(i for i, p in enumerate(spec.params) if p.kind in ("in", "out"))
        for index in (first, spec.n_index):
            self._check_array(spec, spec.params[index], args[index])
        real = check_dtype(args[first].dtype,
                           f"kernel {spec.name} argument {spec.params[first].name!r} dtype")
        if real != _FLOAT32 and any(getattr(args[i], "size", 1) for i in _u16_positions(spec)):
            raise TypeError(f"kernel {spec.name} argument {spec.params[first].name!r}: expected "
                            f"dtype float32 (kernels with bfloat16 arguments), got {real}")
        n = args[spec.n_index].size
        converted = [self._convert(spec, p, a, real, n) for p, a in zip(spec.params, args)]
        self._check_sizes(spec, converted, n)
        return converted, real, n

    def _fast_convert_args(self, spec, args):
        """The common case (plain scalars, contiguous arrays of one float dtype, no declared
        sizes) converted in a few microseconds; None sends anything else, errors included,
        through the full checks. The result is the one the full checks would give."""
        plan = _PLANS.get(spec.name)
        if plan is None:
            plan = _PLANS[spec.name] = _plan(spec)
        kinds, sized, n_index = plan
        ndarray = self.xp.ndarray
        if len(args) != len(kinds) or type(args[n_index]) is not ndarray:
            return None
        real = args[n_index].dtype
        real = _FLOAT32 if real is _UINT16 else real  # bfloat16 kernels take float32 only
        if real is not _FLOAT32 and real is not _FLOAT64:
            return None
        if real is _FLOAT64 and any(getattr(args[i], "size", 1) for i in _u16_positions(spec)):
            return None
        n, to_real = args[n_index].size, real.type
        converted = []
        for (dtype, size_is_n, scalar_types, to_scalar), value in zip(kinds, args):
            if scalar_types is None:
                want = real if dtype is None else dtype
                if (type(value) is not ndarray or value.dtype is not want
                        or (size_is_n and value.size != n) or not value.flags.c_contiguous):
                    return None
                converted.append(value if value.ndim == 1 else value.reshape(-1))
            elif type(value) in scalar_types:
                converted.append((to_scalar or to_real)(value))
            else:
                return None
        if sized:
            self._check_sizes(spec, converted, n)
        return converted, real, n

    @staticmethod
    def _check_sizes(spec, converted, n):
        """Each array must hold the elements its ``.cu`` declaration says it reads or writes."""
        values = {p.name: int(a) for p, a in zip(spec.params, converted) if not p.is_array}
        values["n"] = n
        for param, value in zip(spec.params, converted):
            if not param.is_array:
                continue
            left, op, right = param.size
            a, b = (int(x) if x.isdigit() else values[x] for x in (left, right or "1"))
            if op == "/" and (b < 1 or a % b):
                raise ValueError(f"kernel {spec.name} argument {right!r}: expected a "
                                 f"positive divisor of {left}={a}, got {b}")
            if op != "/" and (a < 0 or b < 0):
                raise ValueError(f"kernel {spec.name} argument {param.name!r}: expected "
                                 f"non-negative sizes, got {left}={a}, {right}={b}")
            expected = a // b if op == "/" else a * b
            if value.size != expected:
                size = f"{left} {op} {right}" if op else left
                raise ValueError(f"kernel {spec.name} argument {param.name!r}: expected "
                                 f"{expected} elements ({size}), got {value.size}")

    def _check_array(self, spec, param, value):
        if not isinstance(value, self.xp.ndarray):
            raise TypeError(f"kernel {spec.name} argument {param.name!r}: expected a "
                            f"{self.xp.__name__} array, got {type(value).__name__}")

    def _convert(self, spec, param, value, real, n):
        where = f"kernel {spec.name} argument {param.name!r}"
        if not param.is_array:
            integral = isinstance(value, (numbers.Integral, np.bool_))
            floating = param.kind in ("real", "double")
            if not (integral or floating and isinstance(value, numbers.Real)):
                kind = "a real number" if floating else "an integer"
                raise TypeError(f"{where}: expected {kind}, got {type(value).__name__}")
            return real.type(value) if param.kind == "real" else _SCALAR_TYPES[param.kind](value)
        self._check_array(spec, param, value)
        expected = _INT64 if param.is_int64_array else real
        expected = _UINT16 if param.kind in U16_KINDS else expected
        if value.dtype != expected:
            raise TypeError(f"{where}: expected dtype {expected}, got {value.dtype}")
        values = self._bf16_values(value) if param.kind in U16_KINDS else None
        if values is not None:  # the twin writes the values into the float32 storage
            return values.reshape(-1)
        if not value.flags.c_contiguous:
            raise ValueError(f"{where}: expected a C-contiguous array, got strides {value.strides}")
        return value.reshape(-1)

    def _launch(self, spec, converted):
        raise NotImplementedError
