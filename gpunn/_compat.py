"""The only module that imports optional packages (CuPy, nvmath-python, NCCL through CuPy,
mpi4py): tells "installed" from "has a working GPU", quietly."""

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


@lru_cache(maxsize=1)
def import_mpi():
    """Return ``(mpi4py.MPI, None)`` or ``(None, reason)``; importing it initializes MPI."""
    try:
        from mpi4py import MPI
    except Exception as exc:  # ImportError, or mpi4py present without an MPI runtime
        return None, (f"mpi4py is not importable ({type(exc).__name__}: {exc}); install the "
                      "'mpi' extra: pip install 'gpunn[mpi]'")
    return MPI, None


def import_nccl():
    """Return ``(cupy, cupy.cuda.nccl, None)`` or ``(None, None, reason)``; never raises."""
    cupy, reason = import_cupy()
    if cupy is None:
        return None, None, reason
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from cupy.cuda import nccl
    except Exception as exc:  # CuPy without libnccl
        return None, None, f"cupy.cuda.nccl is not importable ({type(exc).__name__}: {exc})"
    if not nccl.available:
        return None, None, ("cupy.cuda.nccl found no NCCL library: install nvidia-nccl-cu12 "
                            "(or -cu13, matching the CuPy wheel)")
    return cupy, nccl, None


def require(module, extra, purpose):
    """``module`` imported, or ImportError naming ``purpose`` and the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{purpose} needs {module}: pip install 'gpunn[{extra}]'") from exc
