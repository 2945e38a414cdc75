"""``gpunn.info()``: what gpunn runs on and why."""

import os
import platform
import sys

from gpunn._environment import COMMAND_ENV

# OpenBLAS's idle threads busy-wait about 2^OPENBLAS_THREAD_TIMEOUT cycles after each call
# (default 2^28, a tenth of a second) on the cores the next kernel needs; OpenBLAS reads it
# once, when NumPy loads it.
OPENBLAS_ADVICE = ("OPENBLAS_THREAD_TIMEOUT is not set: OpenBLAS's threads spin for ~0.1 s after "
                   "each matmul, on the cores gpunn's kernels need; set OPENBLAS_THREAD_TIMEOUT="
                   f"{COMMAND_ENV['OPENBLAS_THREAD_TIMEOUT']} in the environment before Python "
                   "starts (it is read when NumPy loads; the gpunn command sets it itself)")
TBB_ADVICE = ("Numba runs on OpenMP: `pip install tbb` lets gpunn use Numba's TBB layer, whose "
              "speed does not depend on what was imported first (PyTorch brings a spinning "
              "OpenMP runtime)")


def info():
    """Return a dict: backend, device, why CUDA is not used, library versions, BLAS, threads.

    Returns:
        dict with keys ``backend`` ("unavailable" when the requested one cannot work, with
        ``backend_error`` saying why), ``device``, ``cuda_unavailable_reason``, ``step_replay``
        (CUDA graphs, or eager replay and why), ``gemm`` (the GEMM library per precision, and
        why a kind is emulated), ``python``, ``numpy``, ``numba``, ``cupy``,
        ``blas`` (threadpoolctl's view), ``threads``, ``numba_cache`` (where compiled kernels
        are kept, or why nowhere), ``threading`` (Numba's threading layer,
        the TBB library it runs on, ``OPENBLAS_THREAD_TIMEOUT``), ``script_environment`` (the
        variables a script should set before Python starts, as the ``gpunn`` command does for
        itself) and ``advice`` (settings that would make the CPU backend faster here; empty
        when there are none).
    """
    import numpy
    from threadpoolctl import threadpool_info

    from gpunn._compat import import_cupy
    from gpunn.backends import cuda_status, get_backend
    from gpunn.backends.cpu import numba_runtime

    try:
        backend = get_backend()
    except (RuntimeError, ValueError) as exc:  # GPUNN_BACKEND=cuda where CUDA cannot work
        backend = _Unavailable(str(exc))
    numba = numba_runtime()  # starts Numba's threads as the backend would: passive workers
    _, reason = cuda_status()
    cupy, _ = import_cupy()
    blas = [
        {key: pool.get(key) for key in ("internal_api", "version", "architecture",
                                        "num_threads", "filepath")}
        for pool in threadpool_info() if pool.get("user_api") == "blas"
    ]
    error = {"backend_error": backend.error} if isinstance(backend, _Unavailable) else {}
    return {
        "backend": backend.name,
        **error,
        "device": backend.device,
        "cuda_unavailable_reason": reason,
        "step_replay": backend.graph_status,
        "gemm": backend.gemm_status,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "numba": numba["version"],
        "cupy": getattr(cupy, "__version__", None),
        "blas": blas,
        "threads": {"numba": numba["threads"], "blas": [b["num_threads"] for b in blas]},
        "numba_cache": numba["cache"] or "off: no writable cache folder, kernels compile in "
                       "every process (set NUMBA_CACHE_DIR to a private writable folder)",
        "threading": {"numba_layer": numba["layer"], "tbb": numba["tbb"],
                      "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT")},
        "script_environment": dict(COMMAND_ENV),
        "advice": _advice(numba, blas),
    }


def _advice(numba, blas):
    """Settings that would speed up the CPU backend here."""
    advice = []
    openblas = any(pool["internal_api"] == "openblas" and (pool["num_threads"] or 1) > 1
                   for pool in blas)
    if openblas and "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        advice.append(OPENBLAS_ADVICE)
    if numba["layer"] != "tbb":
        advice.append(TBB_ADVICE)
    return advice


class _Unavailable:
    """Stands for the backend in the report when the one requested cannot be used."""

    name, device, graph_status, gemm_status = "unavailable", None, None, None

    def __init__(self, error):
        self.error = error
