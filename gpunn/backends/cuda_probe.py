"""Whether the CUDA backend can run here, and the backend if so: the probe the backend registry
(:data:`gpunn.backends.BACKENDS`) calls for ``cuda``. Imports CuPy only when called."""


def _smoke_test(backend):
    """Compile one kernel and run it and one matmul; the reason it failed, or None."""
    import numpy as np

    x = backend.asarray(np.array([[1.0, -2.0], [3.0, 0.5]], dtype=np.float32))
    y = backend.matmul(x, x, out=backend.empty((2, 2), np.float32))
    backend.kernel("act_bwd", backend.asarray(np.ones(4, np.float32)), 0, y.reshape(-1))
    got = backend.to_numpy(y)
    if not np.allclose(got, [[-5.0, -3.0], [4.5, -5.75]]):
        return f"smoke test gave wrong numbers: {got.tolist()}"
    return None


def gemm_self_checks(blas, cupy, stream):
    """Run each GEMM kind gpunn uses once on 2x2 operands against CuPy's matmul.

    Returns:
        ``{kind: reason}`` of the kinds that failed (raised or gave wrong numbers).
    """
    from gpunn.backends.gemm_precision import GEMM_EX_TYPES

    a64 = cupy.asarray([[1.0, 2.0], [3.0, 4.0]])
    expected = a64 @ a64  # a read column-major is a.T; (a.T @ a.T) read back row-major: a @ a
    operands = {"fp32": a64.astype(cupy.float32), "fp64": a64, "tf32": a64.astype(cupy.float32),
                "bf16": (a64.astype(cupy.float32).view(cupy.uint32) >> 16).astype(cupy.uint16)}
    failures = {}
    for kind, a in operands.items():
        c = cupy.zeros((2, 2), dtype=cupy.float64 if kind == "fp64" else cupy.float32)
        try:
            if kind in ("fp32", "fp64"):
                blas.gemm(0, 0, 2, 2, 2, a, 2, a, 2, c, 2, stream)
            else:
                operand, output, compute = GEMM_EX_TYPES[kind]
                blas.gemm_ex(0, 0, 2, 2, 2, a, operand, 2, a, operand, 2, c, output, 2,
                             compute, stream)
            stream.synchronize()
            if not bool(cupy.allclose(c, expected)):
                failures[kind] = f"wrong numbers: {c.tolist()}"
        except Exception as exc:
            failures[kind] = f"{type(exc).__name__}: {exc}"
    return failures


def _cublas(cupy):
    """``(blas, note)``: the capturable cuBLAS binding, each GEMM kind self-checked, and what
    to say about it; blas None when nvmath-python is absent, fails to start or fails the
    fp32/fp64 check (GEMMs then go through CuPy's matmul and steps are not captured). A tf32
    or bf16 GEMM that fails its check is emulated instead, and the note says why."""
    from gpunn._compat import import_nvmath_cublas
    from gpunn.backends.cublas import Cublas

    binding, reason = import_nvmath_cublas()
    if binding is None:
        return None, f"{reason} (pip install nvmath-python)"
    try:
        blas = Cublas(binding, cupy)
        failures = gemm_self_checks(blas, cupy, cupy.cuda.get_current_stream())
    except Exception as exc:  # a binding that cannot find or start cuBLAS
        return None, f"nvmath-python's cuBLAS could not start ({type(exc).__name__}: {exc})"
    if "fp32" in failures or "fp64" in failures:
        return None, "cuBLAS GEMM self-check failed: " + "; ".join(
            f"{kind}: {why}" for kind, why in failures.items())
    blas.gemm_ex_precisions = tuple(k for k in ("tf32", "bf16") if k not in failures)
    note = "; ".join(f"{kind} GEMMs emulated, cublasGemmEx self-check failed ({why})"
                     for kind, why in failures.items()) or None
    return blas, note


def probe():
    """``(CudaBackend, None)`` when CuPy imports, a device answers and the smoke test passes
    (kernels compile and run, the GEMMs self-check, capture works or says why not); else
    ``(None, the reason)``. Never raises or warns; :func:`gpunn.backends.cuda_status` caches it.
    """
    from gpunn._compat import cuda_device_count, import_cupy
    from gpunn.backends.cuda import CudaBackend, CupyStreams, NvrtcLoader

    cupy, reason = import_cupy()
    if cupy is None:
        return None, reason
    count, reason = cuda_device_count(cupy)
    if not count:
        return None, reason
    try:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        blas, note = _cublas(cupy)
        backend = CudaBackend(cupy, NvrtcLoader(cupy), device=f"cuda:{cupy.cuda.Device().id} "
                              f"({name})", max_blocks=props["multiProcessorCount"] * 32,
                              blas=blas, streams=CupyStreams(cupy), blas_note=note)
        reason = _smoke_test(backend)
        if reason is None:
            backend.check_capture()
    except Exception as exc:
        return None, f"CUDA smoke test failed ({type(exc).__name__}: {exc})"
    return (None, reason) if reason else (backend, None)
