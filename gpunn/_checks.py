"""Argument checks: the one place public entry points check their inputs; every message names
the argument, what was expected and what came, so the same bad input gives the same error
everywhere. (Held-out data is "validation"; this module is not.) Imports nothing of gpunn."""

import numbers
import sys

import numpy as np


def choice_key(value):
    """How a named choice is compared everywhere (arguments, environment variables, CLI
    options): strings stripped and lowercased, anything else (None, objects) unchanged."""
    return value.strip().lower() if isinstance(value, str) else value


def check_choice(name, value, choices):
    """``value`` if it is one of ``choices`` (strings compared case-insensitively; None allowed)."""
    key = choice_key(value)
    if key not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices, key=str)}, got {value!r}")
    return key


def check_number(name, value, low=None, high=None, low_open=False, high_open=False):
    """``value`` as a float within ``[low, high]`` (either end open or missing); finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not np.isfinite(value) or too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name}: expected a finite number in {span}, got {value!r}")
    return value


def check_positive(name, value):
    """``value`` as a float > 0 (learning rates, eps)."""
    return check_number(name, value, low=0.0, low_open=True)


def check_int(name, value, low=None, high=None):
    """``value`` as an int within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(f"{name}: expected an integer in {span}, got {value}")
    return value


def as_host_array(name, value, ndim=None):
    """``value`` (any array-like) as a NumPy array; rejects non-numeric data and wrong ndim.

    CuPy arrays pass through unchanged apart from the checks. Refused with a message saying
    what to do: None, masked arrays (their mask would be lost), sparse matrices, and other
    device arrays. Nothing the input names is imported.
    """
    array = _known_array(name, value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numeric data, got dtype {array.dtype}")
    if ndim is not None and array.ndim not in np.atleast_1d(ndim):
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {array.shape}")
    return array


def _cupy_ndarray():
    """CuPy's array type if CuPy is already imported (a CuPy array implies it is), else None."""
    cupy = sys.modules.get("cupy")
    return getattr(cupy, "ndarray", None)


def _known_array(name, value):
    if value is None:
        raise TypeError(f"{name}: expected an array of numbers, got None")
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{name}: expected a plain array, got a masked array (the mask would be "
                        "ignored); drop or fill the masked entries first, e.g. X.filled(0)")
    if isinstance(value, np.ndarray):
        return value
    cupy_ndarray = _cupy_ndarray()
    if cupy_ndarray is not None and isinstance(value, cupy_ndarray):
        return value
    kind = f"{type(value).__module__}.{type(value).__name__}"
    if hasattr(value, "toarray") and hasattr(value, "nnz"):
        raise TypeError(f"{name}: expected a dense array; convert with .toarray(), got the "
                        f"sparse matrix {kind}")
    if hasattr(value, "__cuda_array_interface__"):
        raise TypeError(f"{name}: expected a NumPy or CuPy array, got the device array {kind}; "
                        "convert it with cupy.asarray")
    try:
        return np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name}: expected a rectangular array of numbers, got {exc}") from None


def as_labels(name, value, n_classes, context=""):
    """``value`` as int64 class labels in ``[0, n_classes)``; any integer or integral float
    dtype, ranges compared before any cast (a uint64 label never wraps to a negative one).
    ``context`` ends the first part of a message (e.g. " for loss 'cross_entropy'")."""
    if value.dtype.kind == "f":
        check_finite(name, value)
        if not bool((value == np.round(value)).all()):
            bad = value[value != np.round(value)]
            raise ValueError(f"{name}: expected integer class labels{context}, got non-integer "
                             f"values such as {float(bad.ravel()[0])!r}")
    low, high = value.min(), value.max()
    if low < 0 or high >= n_classes:
        low, high = (int(v) if value.dtype.kind != "f" else float(v) for v in (low, high))
        raise ValueError(f"{name}: expected labels in [0, {n_classes}) for {n_classes} output "
                         f"units, got values in [{low}, {high}]")
    return value.astype(np.int64)


# Elements per block of a host finiteness check: its boolean temporary stays small (a chunk
# of streamed rows is checked without a mask the quarter of its size).
_FINITE_BLOCK = 1 << 18


def check_finite(name, array):
    """Raise ValueError naming ``name`` if ``array`` holds NaN or inf."""
    cupy_ndarray = _cupy_ndarray()
    on_device = cupy_ndarray is not None and isinstance(array, cupy_ndarray)
    xp = sys.modules["cupy"] if on_device else np
    if array.dtype.kind != "f":
        return array
    if on_device or array.size <= _FINITE_BLOCK or not array.flags.c_contiguous:
        finite = bool(xp.isfinite(array).all())
    else:
        flat = array.reshape(-1)
        finite = all(np.isfinite(flat[i:i + _FINITE_BLOCK]).all()
                     for i in range(0, flat.size, _FINITE_BLOCK))
    if not finite:
        bad = int((~xp.isfinite(array)).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf entries")
    return array


def finite_as(name, array, dtype):
    """``array`` cast to ``dtype`` and checked finite; a value finite as given that the cast
    overflows (``1e39`` to float32) is named as out of ``dtype``'s range, not as NaN/inf."""
    with np.errstate(over="ignore"):  # an overflow is refused below, by name
        cast = array.astype(dtype, copy=False)
    if cast is array or array.dtype.kind != "f":
        return check_finite(name, cast)
    try:
        return check_finite(name, cast)
    except ValueError:
        check_finite(name, array)  # NaN/inf as given: said so
        over = array[np.isinf(cast)]
        limit = float(np.finfo(dtype).max)
        raise ValueError(f"{name}: expected values within {np.dtype(dtype).name}'s range "
                         f"(magnitude at most {limit:.6g}), got {over.size} beyond it, such as "
                         f"{over.ravel()[0]!s}; scale the data") from None  # !s: a
        # longdouble's 1e+4000 as such, where float() and format() say inf


def check_features(name, X, n_features, dtype):
    """``X`` as a finite 2-D float array of ``dtype`` with ``n_features`` columns."""
    X = as_host_array(name, X, ndim=2)
    if X.shape[1] != n_features:
        raise ValueError(f"{name}: expected {n_features} features (columns), "
                         f"got shape {X.shape}")
    return finite_as(name, X, dtype)


def check_callbacks(name, callbacks):
    """``callbacks`` (one callable, an iterable of them, or None for none) as a list."""
    if callbacks is None:
        return []
    if callable(callbacks):
        return [callbacks]
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(f"{name}: expected a callable, a list of callables or None, got "
                        f"{type(callbacks).__name__}") from None
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise TypeError(f"{name}[{i}]: expected a callable cb(epoch, history, model), "
                            f"got {type(cb).__name__}")
    return callbacks


def check_bool(name, value):
    """``value`` as a bool; 0/1, strings and None are refused, as they usually mean a slip."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_keywords(name, func, keywords):
    """``keywords`` if ``func`` accepts each and none it requires is missing, else TypeError."""
    import inspect

    params = inspect.signature(func).parameters
    unknown = sorted(set(keywords) - set(params))
    if unknown:
        raise TypeError(f"{name}: expected keywords among {sorted(params)}, got {unknown}")
    missing = [k for k, p in params.items() if p.default is p.empty and k not in keywords]
    if missing:
        raise TypeError(f"{name}: expected a value for {missing}, got none")
    return keywords
