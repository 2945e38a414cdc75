"""``gpunn.info()``: what gpunn runs on and why."""

import platform
import sys


def info():
    """Return a dict: backend, device, why CUDA is not used, library versions, BLAS, threads.

    Returns:
        dict with keys ``backend``, ``device``, ``cuda_unavailable_reason``, ``step_replay``
        (CUDA graphs, or eager replay and why), ``python``, ``numpy``, ``numba``, ``cupy``,
        ``blas`` (threadpoolctl's view) and ``threads``.
    """
    import numpy
    from threadpoolctl import threadpool_info

    from gpunn._compat import import_cupy
    from gpunn.backends import cuda_status, get_backend
    from gpunn.backends.cpu import numba_runtime

    backend = get_backend()
    numba = numba_runtime()  # starts Numba's threads as the backend would: passive workers
    _, reason = cuda_status()
    cupy, _ = import_cupy()
    blas = [
        {key: pool.get(key) for key in ("internal_api", "version", "architecture",
                                        "num_threads", "filepath")}
        for pool in threadpool_info() if pool.get("user_api") == "blas"
    ]
    return {
        "backend": backend.name,
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
