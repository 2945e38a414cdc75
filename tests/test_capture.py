"""Graph capture, streams and device memory on the cuda-emulated backend (review items 1, 4, 9).

The emulation (``host_streams``) states the CUDA rules gpunn relies on: work on the legacy
stream while a blocking stream captures fails, work on a capturing stream is recorded and not
run. What it assumes is named there; the GPU check (benchmarks/gpu_check.sh) settles it.
"""

import threading
from types import SimpleNamespace

import numpy as np
import pytest
from host_build import emulated_backend
from host_streams import CAPTURE_IMPLICIT, HostStreams

import gpunn
from gpunn.backends.cuda import CupyStreams
from gpunn.step import TrainStep


def _data(n=30, n_in=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    return rng.normal(size=(n, n_in)) + y[:, None], y


def _train(backend, hidden, seed):
    """Float32 training (fp32 GEMMs) of one model; its history and parameters."""
    X, y = _data(seed=seed)
    with gpunn.use_backend(backend):
        model = gpunn.MLP([5, hidden, 3], activation="relu", output="softmax", seed=seed)
        history = gpunn.fit(model, X, y, lr=0.05, epochs=3, batch_size=7, seed=seed)
        return history.loss, backend.to_numpy(model.flat_params)


def _train_while_another_thread_captures(streams):
    """Thread "a" trains; in the middle of its first capture, thread "b" trains a model of
    its own on the same backend, start to end. Both results, and any error of each."""
    backend = emulated_backend(streams=streams)
    results, errors = {}, {}

    def job(name, hidden, seed):
        try:
            results[name] = _train(backend, hidden, seed)
        except Exception as exc:  # reported by the test
            errors[name] = exc

    def run_b_once():
        streams.while_capturing.clear()  # b's own captures run undisturbed
        other = threading.Thread(target=job, args=("b", 6, 2))
        other.start()
        other.join()

    streams.while_capturing.append(run_b_once)
    job("a", 8, 1)
    return backend, results, errors


def test_two_threads_train_while_one_captures():
    """Review item 1 (seen on an H200 with GridSearchCV(n_jobs=2)): each thread captures on a
    non-blocking stream of its own, so the other's work neither fails nor lands in its graph;
    both trainings give what each gives alone, bit for bit, and both were captured."""
    backend, results, errors = _train_while_another_thread_captures(HostStreams())
    assert errors == {}
    assert backend.captures >= 2 and backend.graph_status.startswith("CUDA graphs")
    assert "capture failed" not in backend.graph_status
    for name, hidden, seed in (("a", 8, 1), ("b", 6, 2)):
        alone = _train(emulated_backend(), hidden, seed)
        assert results[name][0] == alone[0], name
        np.testing.assert_array_equal(results[name][1], alone[1], err_msg=name)


def test_the_emulation_catches_a_blocking_capture_stream():
    """The check above can fail: with blocking capture streams (gpunn's first design), the
    other thread's legacy-stream work fails as it did on the H200."""
    _, _, errors = _train_while_another_thread_captures(HostStreams(capture_blocking=True))
    assert CAPTURE_IMPLICIT in str(errors.get("b"))


def test_work_on_a_capturing_stream_is_recorded_not_run():
    streams = HostStreams()
    stream, ran = streams.capture_stream(), []
    with stream:
        stream.begin_capture()
        streams.run(ran.append, (1,))
        graph = stream.end_capture()
    assert ran == []
    graph.launch(streams.current())
    graph.launch(streams.current())
    assert ran == [1, 1]


def test_graph_replay_equals_eager_replay_to_the_bit():
    """What the GPU check's smoke test compares on hardware: use_graphs off replays the
    recorded launches eagerly; the numbers must not change."""
    backend = emulated_backend()
    graphs = _train(backend, 8, 3)
    captured = backend.captures
    backend.use_graphs = False
    assert backend.graph_status == "eager replay: CUDA graphs turned off (use_graphs = False)"
    eager = _train(backend, 8, 3)
    assert captured > 0 and backend.captures == captured
    assert graphs[0] == eager[0]
    np.testing.assert_array_equal(graphs[1], eager[1])


def test_synchronize_waits_for_the_whole_device():
    """Review item 4: eager kernels, GEMMs and graphs go to the current stream, which need not
    be the one a stream synchronize would wait for: synchronize waits for the device."""
    calls = []
    device = SimpleNamespace(synchronize=lambda: calls.append("device"))
    cuda = SimpleNamespace(Device=lambda: device, get_current_stream=lambda: pytest.fail(
        "synchronize must not wait for one stream only"))
    CupyStreams(SimpleNamespace(cuda=cuda)).synchronize()
    assert calls == ["device"]


def test_check_capture_reports_what_the_graph_did():
    backend = emulated_backend()
    assert backend.check_capture().startswith("CUDA graphs") and backend.captures == 1
    broken = emulated_backend(streams=HostStreams(fail_capture="no graphs on this driver"))
    assert "capture failed (RuntimeError: no graphs on this driver)" in broken.check_capture()


def test_emulated_device_memory_is_apart_from_the_host():
    """Review item 9: asarray and to_numpy copy, as on a GPU, so a host array written after
    the copy does not change the device array, nor the reverse."""
    backend = emulated_backend()
    host = np.arange(4.0)
    device = backend.asarray(host)
    host[0] = 99.0
    assert backend.to_numpy(device)[0] == 0.0
    back = backend.to_numpy(device)
    back[1] = 99.0
    assert backend.to_numpy(device)[1] == 1.0


def test_restore_order_reaches_the_device(backend):
    """A resumed run continues in the saved row order: restore_order must copy it to the
    device (on a GPU, the host order and the device order are different memory)."""
    X, y = _data(n=12)
    runs = []
    for restore in (False, True):
        model = gpunn.MLP([5, 4, 3], activation="tanh", output="softmax", seed=0)
        Xd, T, loss = model.prepare(X, y)
        step = TrainStep(model, loss, gpunn.SGD(lr=0.1), Xd, T, 5)
        if restore:
            step.shuffle(np.random.default_rng(4))
            step.restore_order(np.arange(12))
        step.begin_epoch([0.1] * step.n_steps)
        for k in range(step.n_steps):
            step.run(k)
        runs.append(step.read().totals)
    np.testing.assert_array_equal(runs[1], runs[0])


def test_every_gemm_kind_is_self_checked_and_a_failure_says_why():
    """Review item 5: the probe runs sgemm, dgemm and cublasGemmEx for tf32 and bf16 before
    use; a kind that raises or gives wrong numbers is named with the exception's text (here
    on the host cuBLAS, NumPy standing in for CuPy)."""
    from host_build import HostCublas

    from gpunn.backends.cuda_probe import gemm_self_checks as _gemm_self_checks

    class Broken(HostCublas):
        def gemm_ex(self, *args):
            if args[5].dtype == np.uint16:  # the bf16 operands
                raise RuntimeError("CUBLAS_STATUS_NOT_SUPPORTED")
            super().gemm_ex(*args)

        def _gemm(self, transa, transb, m, n, k, A, lda, B, ldb, C, ldc):
            super()._gemm(transa, transb, m, n, k, A, lda, B, ldb, C, ldc)
            if C.dtype == np.float64:
                C[0, 0] += 1

    streams = HostStreams()
    numpy_as_cupy = SimpleNamespace(**{name: getattr(np, name) for name in (
        "asarray", "zeros", "allclose", "float32", "float64", "uint32", "uint16")})
    assert _gemm_self_checks(HostCublas(streams), numpy_as_cupy, streams.legacy) == {}
    failures = _gemm_self_checks(Broken(streams), numpy_as_cupy, streams.legacy)
    assert failures == {"fp64": "wrong numbers: [[8.0, 10.0], [15.0, 22.0]]",
                        "bf16": "RuntimeError: CUBLAS_STATUS_NOT_SUPPORTED"}
