"""fit: batches, shuffling, schedules, history, callbacks, progress, divergence, allocations."""

import json
import tracemalloc

import numpy as np
import pytest
import reference as ref
from conftest import _make

import gpunn
from gpunn.optim import get_optimizer
from gpunn.step import TrainStep


def blobs(n=40, n_in=5, n_classes=3, seed=0):
    """Separable-ish classes: Gaussian inputs around fixed class centres; ``seed`` draws rows."""
    centres = np.random.default_rng(100).normal(size=(n_classes, n_in)) * 2
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    return centres[y] + rng.normal(size=(n, n_in)), y


def classifier(dtype="float64", seed=0, n_in=5, n_classes=3):
    return gpunn.MLP([n_in, 8, n_classes], activation="tanh", output="softmax", dtype=dtype,
                     seed=seed)


def test_training_lowers_the_cost_and_records_history(backend):
    X, y = blobs()
    model = classifier()
    history = gpunn.fit(model, X, y, lr=0.05, epochs=6, batch_size=8,
                        validation_data=blobs(seed=1))
    assert history.epoch == [1, 2, 3, 4, 5, 6]
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert all(b > a for a, b in zip(history.seconds, history.seconds[1:]))
    assert all(rate > 0 for rate in history.samples_per_second) and history.lr == [0.05] * 6
    assert len(history.val_loss) == 6 and history.val_accuracy[-1] >= 0.8
    assert history.step_loss == []
    assert (history.backend, history.batch_size, history.n_samples) == (backend.name, 8, 40)
    json.dumps(history.as_dict())


@pytest.mark.parametrize("batch_size, steps", [(None, 1), (1, 10), (4, 3), (10, 1)])
def test_batches_per_epoch_keep_the_last_partial_batch(backend, batch_size, steps):
    X, y = blobs(n=10)
    history = gpunn.fit(classifier(), X, y, epochs=2, batch_size=batch_size, record_steps=True)
    assert len(history.step_loss) == 2 * steps


def manual_training(X, y, optimizer, epochs, batch_size, seed, shuffle):
    """What fit promises, written out: host permutation per epoch, batches, step, update."""
    model, rng, order, costs = classifier(), np.random.default_rng(seed), np.arange(len(y)), []
    optimizer = get_optimizer(optimizer, lr=0.1)
    for _ in range(epochs):
        if shuffle:
            rng.shuffle(order)
        for start in range(0, len(y), batch_size):
            rows = order[start:start + batch_size]
            costs.append(model.loss_and_grad(X[rows], y[rows]))
            optimizer.step(model)
    return model, costs


@pytest.mark.parametrize("optimizer, batch_size, shuffle", [
    ("sgd", 5, True), ("adam", 5, True), ("adam", 5, False), ("adam", None, True)])
def test_fit_is_the_documented_loop(backend, optimizer, batch_size, shuffle):
    X, y = blobs(n=22)
    model = classifier()
    history = gpunn.fit(model, X, y, optimizer=optimizer, lr=0.1, epochs=3,
                        batch_size=batch_size, seed=7, shuffle=shuffle, record_steps=True)
    # One batch of all rows is not shuffled: the order cannot change its gradient.
    expected, costs = manual_training(X, y, optimizer, 3, batch_size or 22, seed=7,
                                      shuffle=shuffle and batch_size is not None)
    ref.assert_close(history.step_loss, costs, np.float64)
    ref.assert_close(backend.to_numpy(model.flat_params),
                     backend.to_numpy(expected.flat_params), np.float64)


def test_same_seed_same_curve_on_every_backend(backend):
    X, y = blobs(n=30)

    def curve(seed):
        history = gpunn.fit(classifier(), X, y, epochs=3, batch_size=4, seed=seed,
                            record_steps=True)
        return history.step_loss

    here = curve(3)
    with gpunn.use_backend(_make("cpu")):
        on_cpu = curve(3)
    ref.assert_close(here, on_cpu, np.float64)
    assert curve(3) == here and curve(4) != here


def test_full_batch_gradient_descent_matches_torch(backend):
    torch = pytest.importorskip("torch")
    X, y = blobs(n=25)
    model = classifier(seed=2)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    net = net.double()
    with torch.no_grad():
        for layer, linear in zip(model.layers, net[::2]):
            linear.weight.copy_(torch.tensor(backend.to_numpy(layer.W).T))
            linear.bias.copy_(torch.tensor(backend.to_numpy(layer.b)))
    history = gpunn.fit(model, X, y, optimizer="sgd", lr=0.5, epochs=5)
    optimizer, costs = torch.optim.SGD(net.parameters(), lr=0.5), []
    for _ in range(5):
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(net(torch.tensor(X)), torch.tensor(y))
        value.backward()
        optimizer.step()
        costs.append(value.item())
    ref.assert_close(history.loss, costs, np.float64, scale=10.0)
    for layer, linear in zip(model.layers, net[::2]):
        ref.assert_close(backend.to_numpy(layer.W), linear.weight.detach().numpy().T,
                         np.float64, scale=10.0)


def test_schedules_set_the_rate_per_epoch_and_per_step(backend):
    X, y = blobs(n=12)
    by_epoch = gpunn.fit(classifier(), X, y, lr=0.1, epochs=4, batch_size=4,
                         schedule=gpunn.Exponential(0.5))
    np.testing.assert_allclose(by_epoch.lr, [0.1, 0.05, 0.025, 0.0125], rtol=1e-15)
    by_step = gpunn.fit(classifier(), X, y, lr=0.1, epochs=2, batch_size=4,
                        schedule=gpunn.InverseTime(1.0, per="step"))
    np.testing.assert_allclose(by_step.lr, [0.1 / 3, 0.1 / 6], rtol=1e-15)
    constant = gpunn.fit(classifier(), X, y, lr=0.1, epochs=2, schedule="constant")
    assert constant.lr == [0.1, 0.1]
    frozen = classifier()
    before = backend.to_numpy(frozen.flat_params).copy()
    gpunn.fit(frozen, X, y, optimizer="sgd", lr=0.1, epochs=2,
              schedule=gpunn.Exponential(1e-300))
    after = backend.to_numpy(frozen.flat_params)
    assert not np.array_equal(after, before)  # epoch 1 runs at lr0, epoch 2 at ~0


def test_callbacks_run_after_every_epoch_and_can_stop(backend):
    X, y = blobs(n=12)
    seen = []

    def record(epoch, history, model):
        seen.append((epoch, len(history.loss), model.n_out))

    history = gpunn.fit(classifier(), X, y, epochs=5,
                        callbacks=[record, lambda epoch, history, model: epoch == 3])
    assert seen == [(1, 1, 3), (2, 2, 3), (3, 3, 3)] and history.epoch == [1, 2, 3]


def test_progress_bar_only_when_asked_or_on_a_terminal(backend, capsys):
    X, y = blobs(n=12)
    gpunn.fit(classifier(), X, y, epochs=2, progress=True, validation_data=(X, y))
    assert "2/2" in capsys.readouterr().err
    for progress in (False, None):  # pytest's captured stderr is not a terminal
        gpunn.fit(classifier(), X, y, epochs=2, progress=progress)
        assert capsys.readouterr().err == ""


def test_history_plot_writes_a_png(backend, tmp_path):
    X, y = blobs(n=12)
    history = gpunn.fit(classifier(), X, y, epochs=3, validation_data=(X, y))
    history.plot(tmp_path / "cost.png")
    assert (tmp_path / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="History.plot: expected at least one recorded epoch"):
        gpunn.History().plot(tmp_path / "empty.png")


def test_history_plot_without_matplotlib_names_the_extra(backend, monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    history = gpunn.History(epoch=[1], loss=[1.0], seconds=[0.1])
    with pytest.raises(ImportError, match=r"pip install -e '\.\[plot\]'"):
        history.plot(tmp_path / "cost.png")


def device_mallocs(xp, run):
    """How many arrays CuPy's memory pool hands out while ``run()`` runs."""
    class Count(xp.cuda.MemoryHook):
        name = "gpunn_test_count"
        calls = 0

        def malloc_preprocess(self, **kwargs):
            self.calls += 1

    with Count() as hook:
        run()
    return hook.calls


def assert_steps_allocate_nothing(backend, **model_kwargs):
    """Train an MLP 64-64-64 in 4096-row batches; after the warm-up and the first replay, two
    epochs must allocate nothing: no device malloc on a GPU (CuPy's pool counts them), under
    16 KiB of host memory elsewhere (tracemalloc). Every per-batch array is at least 32 KiB,
    so one would show. Returns the model."""
    rng = np.random.default_rng(0)
    n, rows = 2 * 4096 + 100, 4096
    X, y = rng.normal(size=(n, 64)), rng.integers(0, 64, size=n)
    model = gpunn.MLP([64, 64, 64], activation="relu", output="softmax", **model_kwargs)
    Xd, T, loss = model.prepare(X, y)
    trainer = TrainStep(model, loss, gpunn.Adam(), Xd, T, rows)
    trainer.shuffle(rng)

    def run():
        trainer.begin_epoch([1e-3] * trainer.n_steps)
        for k in range(trainer.n_steps):
            trainer.run(k)

    run()  # warm-up: workspaces, views, optimizer state, the recording
    run()  # the first replay (on CUDA: the graph capture)
    if backend.xp is not np:
        assert device_mallocs(backend.xp, run) == 0
        return model
    tracemalloc.start()
    try:
        run()
        run()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 and current < 16 * 1024, (current, peak)
    return model


def test_a_training_step_allocates_nothing(backend):
    # float64 batches (labels included). What remains is Python's own small objects (views,
    # argument lists; the host build's ctypes scalars until the garbage collector runs).
    assert_steps_allocate_nothing(backend, dtype="float64")


def test_divergence_stops_before_the_update(backend):
    X = np.random.default_rng(0).normal(size=(16, 3)) * 10
    y = X @ np.array([[1.0], [2.0], [3.0]])
    model = gpunn.MLP([3, 1], dtype="float32", seed=0)
    snapshots = []
    with pytest.raises(gpunn.TrainingDiverged) as caught:
        gpunn.fit(model, X, y, optimizer="sgd", lr=1e6, epochs=50, batch_size=4, shuffle=False,
                  callbacks=[lambda e, h, m: snapshots.append(backend.to_numpy(m.flat_params))])
    error = caught.value
    assert isinstance(error, FloatingPointError) and isinstance(error, RuntimeError)
    assert f"epoch {error.epoch}, step {error.step}" in str(error)
    assert error.epoch >= 1 and 1 <= error.step <= 4 and np.isfinite(error.last_finite_loss)
    params = backend.to_numpy(model.flat_params)
    assert np.all(np.isfinite(params))
    rows = slice(4 * (error.step - 1), 4 * error.step)
    assert not np.isfinite(model.loss_and_grad(X[rows], y[rows]))  # these params gave it
    assert len(snapshots) == error.epoch - 1


BAD_ARGUMENTS = [
    ({"epochs": 0}, ValueError, r"epochs: expected an integer in \[1, 10000000\], got 0"),
    ({"epochs": 2.5}, TypeError, "epochs: expected an integer, got float"),
    ({"batch_size": 0}, ValueError, r"batch_size: expected an integer in \[1, 10\], got 0"),
    ({"batch_size": 11}, ValueError, r"batch_size: expected an integer in \[1, 10\], got 11"),
    ({"optimizer": "nadam"}, ValueError, "optimizer: expected one of"),
    ({"lr": -0.1}, ValueError, "lr: expected a finite number"),
    ({"optimizer": gpunn.Adam(), "lr": 0.1}, ValueError, "optimizer: expected a name when lr"),
    ({"loss": "hinge"}, ValueError, "loss: expected one of"),
    ({"schedule": "polynomial"}, ValueError, "schedule: expected one of"),
    ({"shuffle": "yes"}, TypeError, "shuffle: expected True or False"),
    ({"seed": -1}, ValueError, "seed: expected an integer"),
    ({"progress": 1}, TypeError, "progress: expected True or False"),
    ({"callbacks": [1]}, TypeError, r"callbacks\[0\]: expected a callable"),
    ({"validation_data": np.ones((3, 5))}, TypeError, "validation_data: expected a pair"),
    ({"validation_data": (np.ones((3, 4)), [0, 1, 2])}, ValueError,
     "validation_data: X: expected 5 features"),
    ({"validation_data": (np.ones((3, 5)), [0, 1, 5])}, ValueError,
     r"validation_data: y: expected labels in \[0, 3\)"),
]


@pytest.mark.parametrize("kwargs, error, match", BAD_ARGUMENTS,
                         ids=[next(iter(row[0])) for row in BAD_ARGUMENTS])
def test_bad_arguments_name_the_argument(backend, kwargs, error, match):
    X, y = blobs(n=10)
    with pytest.raises(error, match=match):
        gpunn.fit(classifier(), X, y, **kwargs)


@pytest.mark.parametrize("X, y, error, match", [
    (np.ones((10, 4)), np.zeros(10, int), ValueError, "X: expected 5 features"),
    (np.ones((10, 5)), np.zeros(9, int), ValueError, r"y: expected shape \(10,\)"),
    (np.full((10, 5), np.nan), np.zeros(10, int), ValueError, "X: expected finite values"),
    (np.ones((0, 5)), np.zeros(0, int), ValueError, "X: expected a non-empty array"),
    (np.ones((10, 5), dtype=object), np.zeros(10, int), TypeError, "X: expected numeric"),
])
def test_bad_data_names_the_argument(backend, X, y, error, match):
    with pytest.raises(error, match=match):
        gpunn.fit(classifier(), X, y)


def test_lists_and_fortran_arrays_train_like_arrays(backend):
    X, y = blobs(n=12)
    expected = gpunn.fit(classifier(), X, y, epochs=2, batch_size=5).loss
    assert gpunn.fit(classifier(), X.tolist(), list(y), epochs=2, batch_size=5).loss == expected
    fortran = gpunn.fit(classifier(), np.asfortranarray(X), y, epochs=2, batch_size=5)
    assert fortran.loss == expected
