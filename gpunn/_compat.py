"""The only module that imports CuPy and nvmath-python: tells "installed" from "has a working
GPU", quietly."""

import warnings
from functools import lru_cache


@lru_cache(maxsize=1)
def import_cupy():
    """Return ``(cupy, None)`` or ``(None, reason)``; never raises or warns."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        return None, f"cupy is not importable ({type(exc).__name__}: {exc})"
    return cupy, None


def cuda_device_count(cupy):
    """Number of CUDA devices, or ``(0, reason)`` when the driver or runtime is missing."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver
        return 0, f"no CUDA device ({type(exc).__name__}: {exc})"
    if count < 1:
        return 0, "no CUDA device (getDeviceCount() == 0)"
    return count, None


@lru_cache(maxsize=1)
def import_nvmath_cublas():
    """Return ``(nvmath.bindings.cublas, None)`` or ``(None, reason)``; never raises or warns."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from nvmath.bindings import cublas
    except Exception as exc:
        return None, f"nvmath-python is not importable ({type(exc).__name__}: {exc})"
    return cublas, None
