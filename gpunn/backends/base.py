"""What every backend shares: array helpers written once against ``self.xp``, kernel arguments."""

import numbers

import numpy as np

from gpunn.kernels import kernel_specs

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_SCALAR_TYPES = {"int": np.int32, "int64": np.int64}
_FLOAT32, _FLOAT64 = DTYPES
# Scalar types the fast path converts itself; any other (valid or not) takes the full checks.
_PLAIN_SCALARS = {"real": (float, int, bool, np.float32, np.float64),
                  "int": (int, bool), "int64": (int, bool)}
_PLANS = {}


def _plan(spec):
    """Per kernel argument: ``(dtype, size_is_n, scalar_types, to_scalar)``; arrays have
    ``scalar_types`` None and dtype None for the real dtype (else int64); scalars a converter,
    None for the real dtype. Also whether any array declares a size other than n."""
    plan = []
    for p in spec.params:
        if p.is_array:
            dtype = np.dtype(np.int64) if p.kind == "in_int64" else None
            plan.append((dtype, p.size == ("n", None), None, None))
        else:
            plan.append((None, False, _PLAIN_SCALARS[p.kind], _SCALAR_TYPES.get(p.kind)))
    sized = any(p.is_array and p.size != ("n", None) for p in spec.params)
    return tuple(plan), sized


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

    def matmul(self, a, b, out=None, trans_a=False, trans_b=False):
        """``op(a) @ op(b)`` through BLAS; transposes are views, so no copy is made."""
        return self.xp.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)

    def colsum(self, a, out=None):
        """Sum of a 2-D array over its rows (axis 0), e.g. a bias gradient."""
        return self.xp.sum(a, axis=0, out=out)

    def synchronize(self):
        """Wait for queued device work; a no-op on the CPU."""

    def kernel(self, name, *args):
        """Run kernel ``name`` (see ``gpunn.kernels``) with the twin's argument order."""
        spec = kernel_specs().get(name)
        if spec is None:
            raise ValueError(f"kernel: expected one of {sorted(kernel_specs())}, got {name!r}")
        self._launch(spec, self._convert_args(spec, args))

    def _convert_args(self, spec, args):
        fast = self._fast_convert_args(spec, args)
        if fast is not None:
            return fast
        if len(args) != len(spec.params):
            names = ", ".join(p.name for p in spec.params)
            raise TypeError(f"kernel {spec.name}({names}): expected {len(spec.params)} "
                            f"arguments, got {len(args)}")
        # The first real input array fixes the dtype; the last argument (an array) fixes n.
        first = next((i for i, p in enumerate(spec.params) if p.kind == "in"), len(args) - 1)
        for index in (first, len(args) - 1):
            self._check_array(spec, spec.params[index], args[index])
        real = check_dtype(args[first].dtype,
                           f"kernel {spec.name} argument {spec.params[first].name!r} dtype")
        n = args[-1].size
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
        kinds, sized = plan
        ndarray = self.xp.ndarray
        if len(args) != len(kinds) or type(args[-1]) is not ndarray:
            return None
        real = args[-1].dtype
        if real is not _FLOAT32 and real is not _FLOAT64:
            return None
        n, to_real = args[-1].size, real.type
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
            numerator, divisor = param.size
            for name in {numerator, divisor} - {"n", None}:
                if values[name] < 1 or n % values[name]:
                    raise ValueError(f"kernel {spec.name} argument {name!r}: expected a "
                                     f"positive divisor of n={n}, got {values[name]}")
            expected = values[numerator] // (values[divisor] if divisor else 1)
            if value.size != expected:
                size = f"{numerator}/{divisor}" if divisor else numerator
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
            if not (integral or param.kind == "real" and isinstance(value, numbers.Real)):
                kind = "a real number" if param.kind == "real" else "an integer"
                raise TypeError(f"{where}: expected {kind}, got {type(value).__name__}")
            return real.type(value) if param.kind == "real" else _SCALAR_TYPES[param.kind](value)
        self._check_array(spec, param, value)
        expected = np.dtype(np.int64) if param.kind == "in_int64" else real
        if value.dtype != expected:
            raise TypeError(f"{where}: expected dtype {expected}, got {value.dtype}")
        if not value.flags.c_contiguous:
            raise ValueError(f"{where}: expected a C-contiguous array, got strides {value.strides}")
        return value.reshape(-1)

    def _launch(self, spec, converted):
        raise NotImplementedError
