"""Backend selection (use_backend, GPUNN_BACKEND, the CUDA probe), info, and the array helpers.

Selection tests run inside a fresh ``contextvars.Context`` so a setter call cannot leak into
other tests; probe, import and CLI checks run in subprocesses, whose caches start empty.
"""

import contextvars
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import reference
from forced_threads import ForcedThreads
from gpunn.kernels import kernel_specs
from host_build import emulated_backend

import gpunn
from gpunn.backends import CHOICES, cuda_status, get_backend, use_backend
from gpunn.backends.cpu import (
    CpuBackend,
    load_tbb,
    numba_runtime,
    runs_parallel,
    set_numba_threads,
)

CUDA, CUDA_REASON = cuda_status()
INFO_KEYS = {"backend", "device", "cuda_unavailable_reason", "step_replay", "gemm", "python",
             "platform", "numpy", "numba", "cupy", "blas", "threads", "numba_cache",
             "threading", "script_environment", "advice"}


def _fresh(function, *args):
    """Run ``function`` in an empty context: no backend chosen by use_backend yet."""
    return contextvars.Context().run(function, *args)


def _python(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != "GPUNN_BACKEND"}
    environment.update(env)
    done = subprocess.run([sys.executable, *code], capture_output=True, text=True,
                          env=environment, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_use_backend_as_setter():
    def body():
        chosen = emulated_backend()
        gpunn.use_backend(chosen)
        assert get_backend() is chosen
        gpunn.use_backend("cpu")
        return get_backend()

    assert isinstance(_fresh(body), CpuBackend)


def test_use_backend_as_context_manager_restores_the_previous_choice():
    def body():
        outer, inner = emulated_backend(), CpuBackend()
        use_backend(outer)
        with use_backend(inner) as entered:
            assert entered is inner and get_backend() is inner
            with use_backend("cpu") as cpu:
                assert get_backend() is cpu and cpu.name == "cpu"
            assert get_backend() is inner
        assert get_backend() is outer

    _fresh(body)


def test_use_backend_is_per_thread():
    seen = {}

    def other_thread():
        seen["before"] = get_backend()
        use_backend(CpuBackend())
        seen["set"] = get_backend()

    def body():
        mine = emulated_backend()
        use_backend(mine)
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert seen["before"] is not mine
        assert isinstance(seen["set"], CpuBackend) and get_backend() is mine

    _fresh(body)


def test_unknown_backend_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"backend: expected one of \('auto', 'cpu', 'cuda'\), "
                                         r"got 'tpu'"):
        use_backend("tpu")
    with pytest.raises(TypeError, match="backend: expected a name .* got int"):
        use_backend(3)


def test_environment_variable_selects_and_rejects(monkeypatch):
    monkeypatch.setenv("GPUNN_BACKEND", "bogus")
    with pytest.raises(ValueError, match=r"GPUNN_BACKEND: expected one of .*'cuda'.* got 'bogus'"):
        _fresh(get_backend)
    monkeypatch.setenv("GPUNN_BACKEND", " CPU ")
    assert _fresh(get_backend).name == "cpu"
    monkeypatch.setenv("GPUNN_BACKEND", "auto")
    assert _fresh(get_backend).name == ("cuda" if CUDA is not None else "cpu")
    assert set(CHOICES) == {"auto", "cpu", "cuda"}


def test_asking_for_cuda(monkeypatch):
    monkeypatch.setenv("GPUNN_BACKEND", "cuda")
    if CUDA is not None:
        assert _fresh(get_backend) is CUDA and _fresh(use_backend, "cuda").backend is CUDA
        return
    assert CUDA_REASON
    for ask in (lambda: _fresh(get_backend), lambda: _fresh(use_backend, "cuda")):
        with pytest.raises(RuntimeError, match="backend 'cuda' was requested but cannot be "
                                               "used: ") as raised:
            ask()
        assert CUDA_REASON in str(raised.value)


def test_import_gpunn_does_not_import_cupy():
    code = ("import sys, gpunn; gpunn.get_backend(); "
            "print(sorted(m for m in ('cupy', 'numba') if m in sys.modules))")
    done = _python(["-c", code], GPUNN_BACKEND="cpu")
    assert done.stdout.strip() == "[]"


PROBE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from gpunn.backends import cuda_status, get_backend
    backend, reason = cuda_status()
    chosen = get_backend()
print(json.dumps({"warnings": [str(w.message) for w in caught], "reason": reason,
                  "cuda": backend is not None, "chosen": chosen.name}))
"""


def test_probing_cuda_neither_raises_nor_warns():
    report = json.loads(_python(["-W", "error", "-c", PROBE]).stdout)
    assert report["warnings"] == []
    assert report["cuda"] == (CUDA is not None)
    assert report["chosen"] == ("cuda" if report["cuda"] else "cpu")
    assert (report["reason"] is None) == report["cuda"]


def test_info_reports_backend_reason_and_versions():
    report = _fresh(gpunn.info)
    assert set(report) == INFO_KEYS
    assert report["backend"] == get_backend().name
    assert report["cuda_unavailable_reason"] == CUDA_REASON
    assert report["numpy"] == np.__version__
    assert isinstance(report["threads"]["numba"], int) and report["threads"]["numba"] >= 1


def test_info_command_line():
    text = _python(["-m", "gpunn.cli", "info"], GPUNN_BACKEND="cpu").stdout
    lines = dict(line.strip().split(": ", 1) for line in text.splitlines())
    assert set(lines) == INFO_KEYS and lines["backend"] == "cpu"
    report = json.loads(_python(["-m", "gpunn.cli", "info", "--json"]).stdout)
    assert set(report) == INFO_KEYS
    assert report["cuda_unavailable_reason"] == CUDA_REASON


def test_info_advises_on_threads_and_openblas(monkeypatch):
    from gpunn.backends import info as info_module

    runtime = {"layer": "omp", "tbb": None}
    openblas = [{"internal_api": "openblas", "num_threads": 2}]
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    assert info_module._advice(runtime, openblas) == [info_module.OPENBLAS_ADVICE,
                                                      info_module.TBB_ADVICE]
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "4")
    assert info_module._advice({"layer": "tbb", "tbb": "/lib/libtbb.so.12"}, openblas) == []
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT")
    mkl = [{"internal_api": "mkl", "num_threads": 2}]
    assert info_module._advice({"layer": "tbb", "tbb": "/lib/libtbb.so.12"}, mkl) == []
    report = _fresh(gpunn.info)
    assert report["threading"]["numba_layer"] == numba_runtime()["layer"]


LAYER = """
import json, sys
if sys.argv[1] == "torch first":
    import torch
import gpunn
from gpunn.backends.cpu import numba_runtime
runtime = numba_runtime()
maps = open("/proc/self/maps").read()
print(json.dumps({**runtime, "omppool": "omppool" in maps, "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize("order", ["gpunn alone", "torch first"])
def test_numba_runs_on_the_tbb_wheel_whatever_was_imported_first(order):
    """With the tbb wheel installed, gpunn maps its library itself (Numba does not look in a
    virtual environment's lib/) and Numba's TBB layer runs, also after PyTorch, whose OpenMP
    runtime Numba's OpenMP layer would otherwise bind to."""
    if order == "torch first":
        pytest.importorskip("torch")
    if load_tbb() is None or not sys.platform.startswith("linux"):
        pytest.skip("needs the tbb wheel, and /proc/self/maps to see what is mapped")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING")}
    done = subprocess.run([sys.executable, "-c", LAYER, order], capture_output=True, text=True,
                          env=environment, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["layer"] == "tbb" and report["tbb"] == load_tbb()
    assert report["torch"] == (order == "torch first") and not report["omppool"]


def test_load_tbb_without_the_wheel_or_its_library(monkeypatch, tmp_path):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    assert load_tbb() is None
    broken = tmp_path / "libtbb.so.12"
    broken.write_text("not a shared library")

    class File:
        name = broken.name

        def locate(self):
            return broken

    monkeypatch.setattr(importlib.metadata, "files", lambda name: [File()])
    monkeypatch.setattr(sys, "platform", "linux")
    assert load_tbb() is None


def test_openmp_fallback_when_asked_for():
    done = _python(["-c", "from gpunn.backends.cpu import numba_runtime; "
                          "print(numba_runtime()['layer'], numba_runtime()['tbb'])"],
                   NUMBA_THREADING_LAYER="omp")
    assert done.stdout.split() == ["omp", "None"]


THREAD_CHOICE = """
import json, sys
from gpunn.backends.cpu import runs_parallel
from gpunn.kernels import kernel_specs
print(json.dumps({k: [runs_parallel(k, n) for n in map(int, sys.argv[1:])]
                  for k in sorted(kernel_specs())}))
"""
SIZES = [0, 1, 100, 4096, 10**4, 32768, 10**5, 131072, 10**6, 10**8]


def test_thread_choice_is_a_pure_function_of_kernel_and_size(dtype):
    """Which path runs depends on (kernel, n) alone: not on earlier launches, timings, the
    dtype or the process; small launches stay on the calling thread, large ones use all."""
    before = {k: [runs_parallel(k, n) for n in SIZES] for k in sorted(kernel_specs())}
    backend = CpuBackend()
    for n in (10, 50000, 300000):
        backend.kernel("act_bwd", np.ones(n, dtype), 1, np.ones(n, dtype))
    after = {k: [runs_parallel(k, n) for n in SIZES] for k in sorted(kernel_specs())}
    elsewhere = json.loads(_python(["-c", THREAD_CHOICE, *map(str, SIZES)]).stdout)
    assert before == after == elsewhere
    for choices in before.values():
        assert choices == sorted(choices) and not choices[3] and choices[-1]


def test_backend_follows_the_thread_choice(monkeypatch):
    """A launch runs its twin on all of Numba's threads exactly when runs_parallel says so."""
    import numba

    set_numba_threads(numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() < 2:
        pytest.skip("one CPU: every launch runs on one thread")
    seen = []
    backend = CpuBackend()
    backend._twins["act_bwd"] = lambda A, act, dZ: seen.append(numba.get_num_threads())
    sizes = [1, 1000, 10**4, 10**5, 1 << 22]
    for n in sizes:
        backend.kernel("act_bwd", np.ones(n, np.float32), 1, np.ones(n, np.float32))
    assert seen == [numba.get_num_threads() if runs_parallel("act_bwd", n) else 1
                    for n in sizes]
    assert 1 in seen and seen[-1] > 1
    forced = ForcedThreads(True)
    forced._twins["act_bwd"] = backend._twins["act_bwd"]
    forced.kernel("act_bwd", np.ones(1, np.float32), 1, np.ones(1, np.float32))
    assert seen[-1] > 1


def _matmul_bound(A, B, dtype):
    """Worst-case rounding of a k-term dot product: k eps (|A| @ |B|)."""
    k = A.shape[1]
    return k * np.finfo(dtype).eps * (np.abs(A) @ np.abs(B)) + np.finfo(dtype).tiny


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True),
                                              (True, True)])
def test_matmul_transposes_and_out(backend, dtype, trans_a, trans_b):
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((13, 37)), rng.standard_normal((37, 6))
    a = (A.T.copy() if trans_a else A).astype(dtype)
    b = (B.T.copy() if trans_b else B).astype(dtype)
    A, B = (a.T if trans_a else a).astype(np.float64), (b.T if trans_b else b).astype(np.float64)
    out = backend.empty((13, 6), dtype)
    result = backend.matmul(backend.asarray(a), backend.asarray(b), out=out,
                            trans_a=trans_a, trans_b=trans_b)
    assert result is out and result.dtype == dtype
    got = backend.to_numpy(out)
    assert (np.abs(got - A @ B) <= _matmul_bound(A, B, dtype)).all()
    fresh = backend.to_numpy(backend.matmul(backend.asarray(a), backend.asarray(b),
                                            trans_a=trans_a, trans_b=trans_b))
    np.testing.assert_array_equal(fresh, got)


def test_column_sums_as_a_gemv_with_ones(backend, dtype):
    """Bias gradients: ones(m) @ dZ, a 1-D left operand (one row), through every backend's
    GEMM path (on cuda-emulated, cuBLAS's column-major arguments)."""
    x = np.random.default_rng(4).standard_normal((41, 7)).astype(dtype)
    out = backend.zeros(7, dtype)
    ones = backend.asarray(np.ones(41, dtype))
    assert backend.matmul(ones, backend.asarray(x), out=out) is out
    bound = 41 * np.finfo(dtype).eps * np.abs(x.astype(np.float64)).sum(axis=0)
    expected = x.astype(np.float64).sum(axis=0)
    got = backend.to_numpy(out)
    assert got.dtype == dtype and (np.abs(got - expected) <= bound).all()
    total = backend.zeros(1, dtype)
    backend.matmul(backend.asarray(np.ones(x.size, dtype)), backend.asarray(x).reshape(-1, 1),
                   out=total)
    assert abs(backend.to_numpy(total)[0] - x.astype(np.float64).sum()) <= 41 * 7 * np.finfo(
        dtype).eps * np.abs(x).sum()


def test_recording_replays_the_same_launches(backend, dtype):
    """What a recorded step relies on: the tape holds the launches of its region (kernels and
    GEMMs, converted once) and replaying them repeats the work on the arrays they name."""
    rng = np.random.default_rng(5)
    a, b = backend.asarray(rng.standard_normal((5, 3)).astype(dtype)), backend.zeros(3, dtype)
    out = backend.zeros((5, 3), dtype)
    with backend.recording() as tape:
        backend.matmul(a, backend.asarray(np.eye(3, dtype=dtype)), out=out)
        backend.kernel("bias_act_fwd", b, 3, 2, out)
    assert len(tape.ops) == 2
    first = backend.to_numpy(out).copy()
    backend.copy_from_host(out, np.zeros((5, 3)))
    backend.replayable(tape)()
    np.testing.assert_array_equal(backend.to_numpy(out), first)
    np.testing.assert_array_equal(first, np.maximum(backend.to_numpy(a), 0))
    backend.kernel("act_bwd", a, 0, out)  # outside the region: not recorded
    assert len(tape.ops) == 2


def test_empty_zeros_asarray_to_numpy(backend, dtype):
    zeros = backend.zeros((3, 5), dtype)
    empty = backend.empty(7, dtype)
    assert isinstance(zeros, backend.xp.ndarray) and zeros.shape == (3, 5)
    assert zeros.dtype == dtype and empty.dtype == dtype and empty.shape == (7,)
    host = backend.to_numpy(zeros)
    assert isinstance(host, np.ndarray) and not host.any()
    strided = np.arange(12.0).reshape(3, 4)[:, ::2]
    converted = backend.asarray(strided, dtype=dtype)
    assert converted.flags.c_contiguous and converted.dtype == dtype
    reference.assert_close(backend.to_numpy(converted), strided, dtype)
    backend.synchronize()


@pytest.mark.parametrize("bad", [np.int32, "float16", object, "nope"])
def test_empty_and_zeros_reject_other_dtypes(backend, bad):
    for make in (backend.empty, backend.zeros):
        with pytest.raises(TypeError, match="dtype: expected float32 or float64, got"):
            make(3, bad)
