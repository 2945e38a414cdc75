"""TrainStep: the recorded step replays exactly, divergence is caught on the device, and the
host reads the records only when asked."""

import re

import numpy as np
import pytest
import reference as ref
from gpunn.kernels import KERNEL_DIR

import gpunn
from gpunn.step import TrainStep


def blobs(n=40, n_in=5, n_classes=3, seed=0):
    centres = np.random.default_rng(100).normal(size=(n_classes, n_in)) * 2
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    return centres[y] + rng.normal(size=(n, n_in)), y


def classifier(dtype="float64"):
    return gpunn.MLP([5, 8, 3], activation="tanh", output="softmax", dtype=dtype, seed=0)


def params(model):
    return np.array(model.backend.to_numpy(model.flat_params))


def test_control_slots_are_read_from_the_cuda_header():
    header = (KERNEL_DIR / "step.cuh").read_text()
    defined = dict(re.findall(r"^#define GPUNN_(CTRL_\w+|STEP_\w+) (\d+)", header, re.M))
    import gpunn.kernels.step as twin

    from gpunn import control

    assert {"CTRL_T", "CTRL_K", "CTRL_BAD", "CTRL_BAD_UPDATE", "CTRL_HALT", "CTRL_SIZE",
            "STEP_APPLIED", "STEP_NONFINITE", "STEP_BAD_UPDATE", "STEP_HALTED"} <= set(defined)
    for name, value in defined.items():
        assert getattr(control, name) == int(value), name
        if name != "CTRL_SIZE":
            assert getattr(twin, name) == int(value), name


def test_replayed_steps_equal_eager_steps(backend):
    """Steps 3.. replay the recording (on CUDA: the graph); they must do what eager
    loss_and_grad + optimizer.step do on the same batches, including the last, smaller one."""
    X, y = blobs(n=23)
    model, manual = classifier(), classifier()
    Xd, T, loss = model.prepare(X, y)
    step = TrainStep(model, loss, gpunn.Adam(lr=0.05), Xd, T, global_batch=5)
    optimizer = gpunn.Adam(lr=0.05)
    rng = np.random.default_rng(1)
    for _ in range(3):
        step.shuffle(rng)
        step.begin_epoch([0.05] * step.n_steps)
        for k in range(step.n_steps):
            step.run(k)
        records = step.read()
        for k, (start, stop) in enumerate(step.bounds):
            rows = step.order[start:stop]
            value = manual.loss_and_grad(X[rows], y[rows])
            optimizer.step(manual)
            ref.assert_close(records.totals[k] / (stop - start), value, np.float64)
    assert (records.status == 0).all() and step.optimizer.t == optimizer.t == 15
    ref.assert_close(params(model), params(manual), np.float64)


def test_steps_must_run_in_order(backend):
    X, y = blobs(n=10)
    model = classifier()
    Xd, T, loss = model.prepare(X, y)
    step = TrainStep(model, loss, gpunn.SGD(lr=0.1), Xd, T, global_batch=4)
    step.begin_epoch([0.1] * 3)
    with pytest.raises(ValueError, match="k: expected step 0 of the epoch, got 1"):
        step.run(1)
    with pytest.raises(ValueError, match="lrs: expected 3 learning rates"):
        step.begin_epoch([0.1] * 2)


def test_an_overflowing_update_is_reported_honestly(backend):
    """Finite loss and gradient, an update beyond float32: fit raises, even when it is the last
    update of the fit, and the parameters the update would have overflowed keep their values."""
    X = np.random.default_rng(0).normal(size=(16, 3))
    y = X @ np.ones((3, 1)) + 3.0
    model = gpunn.MLP([3, 1], dtype="float32", seed=0)
    before = params(model).copy()
    with pytest.raises(gpunn.TrainingDiverged,
                       match="the update would have made parameters or optimizer state") as e:
        gpunn.fit(model, X, y, optimizer="sgd", lr=1e38, epochs=1)
    assert e.value.bad_update and (e.value.epoch, e.value.step) == (1, 1)
    assert "kept their previous values" in str(e.value)
    after = params(model)
    assert np.isfinite(after).all() and (after == before).any()  # held where it overflowed
    assert np.isfinite(e.value.loss)


def test_a_nonfinite_step_halts_updates_until_the_host_reads(backend, monkeypatch):
    """After a non-finite step no update is applied (the rest of the epoch still runs on the
    device); with check_every=1 the host stops right after it."""
    X = np.random.default_rng(0).normal(size=(16, 3)) * 10
    y = X @ np.array([[1.0], [2.0], [3.0]])
    runs = []
    original = TrainStep.run
    monkeypatch.setattr(TrainStep, "run", lambda self, k: (runs.append(k), original(self, k)))
    outcomes = {}
    for check_every in (None, 1):
        runs.clear()
        model = gpunn.MLP([3, 1], dtype="float32", seed=0)
        with pytest.raises(gpunn.TrainingDiverged) as caught:
            gpunn.fit(model, X, y, optimizer="sgd", lr=1e6, epochs=50, batch_size=2,
                      shuffle=False, check_every=check_every)
        outcomes[check_every] = (caught.value.epoch, caught.value.step, params(model),
                                 len(runs))
        assert np.isfinite(params(model)).all()
    (e1, s1, p1, n1), (e2, s2, p2, n2) = outcomes[None], outcomes[1]
    assert (e1, s1) == (e2, s2) and np.array_equal(p1, p2)
    assert n1 == e1 * 8 and n2 == (e2 - 1) * 8 + s2


def test_skipped_steps_leave_the_optimizer_count(backend):
    """A skipped step applies nothing, optimizer.t included (PyTorch's found_inf)."""
    X, y = blobs(n=12)
    model = classifier()
    Xd, T, loss = model.prepare(X, y)
    optimizer = gpunn.Adam(lr=0.01)
    step = TrainStep(model, loss, optimizer, Xd, T, global_batch=4, halt_on_nonfinite=False)
    poison = model.backend.zeros(model.flat_grads.shape, model.dtype)
    backward = model.backward_pass
    model.backward_pass = lambda X, views: (backward(X, views), model.backend.kernel(
        "axpy", poison, 1.0, model.flat_grads))
    step.begin_epoch([0.01] * 3)
    for k in range(3):
        model.backend.copy_from_host(poison[:1], [np.inf if k == 1 else 0.0])
        step.run(k)
    records = step.read()
    assert records.status.tolist() == [0, 1, 0] and optimizer.t == 2


def test_a_failed_graph_capture_falls_back_to_eager_replay():
    """Capture failing on some machine must never give a wrong result: the step is replayed
    eagerly and the reason is kept for gpunn info."""
    from host_build import emulated_backend
    from host_streams import HostStreams

    backend = emulated_backend(streams=HostStreams(fail_capture="capture unsupported"))
    assert backend.graph_status.startswith("CUDA graphs")
    X, y = blobs(n=12)
    with gpunn.use_backend(backend):
        model = classifier()
        history = gpunn.fit(model, X, y, lr=0.05, epochs=3, batch_size=5, seed=2)
    assert ("eager replay of steps with fp32/float64 GEMMs: capture failed (RuntimeError: "
            "capture unsupported)") in backend.graph_status
    assert backend.captures == 0
    from conftest import _make

    with gpunn.use_backend(_make("cuda-emulated")):
        reference_model = classifier()
        expected = gpunn.fit(reference_model, X, y, lr=0.05, epochs=3, batch_size=5, seed=2)
    assert history.loss == expected.loss
    np.testing.assert_array_equal(params(model), params(reference_model))
