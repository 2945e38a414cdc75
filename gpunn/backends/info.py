"""``gpunn.info()``: what gpunn runs on and why."""

import platform
import sys


def info():
    """Return a dict: backend, device, why CUDA is not used, library versions, BLAS, threads.

    Returns:
        dict with keys ``backend`` ("unavailable" when the requested one cannot work, with
        ``backend_error`` saying why), ``device``, ``cuda_unavailable_reason``, ``step_replay``
        (CUDA graphs, or eager replay and why), ``python``, ``numpy``, ``numba``, ``cupy``,
        ``blas`` (threadpoolctl's view) and ``threads``.
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
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "numba": numba["version"],
        "cupy": getattr(cupy, "__version__", None),
        "blas": blas,
        "threads": {"numba": numba["threads"], "blas": [b["num_threads"] for b in blas]},
    }


class _Unavailable:
    """Stands for the backend in the report when the one requested cannot be used."""

    name, device, graph_status = "unavailable", None, None

    def __init__(self, error):
        self.error = error
