"""fit with checkpoints: exact resume, when checkpoints are written, non-finite steps."""

import json
import math
import os

import numpy as np
import pytest

import gpunn
from gpunn.checkpoint import resume as fit_checkpoints


def blobs(n=22, n_in=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    return rng.normal(size=(n, n_in)) + y[:, None], y


def classifier(seed=0):
    return gpunn.MLP([4, 6, 3], activation="tanh", output="softmax", dtype="float32", seed=seed)


def schedule():
    return gpunn.InverseTime(0.05, per="step")


def run(model, epochs, **kwargs):
    X, y = blobs()
    return gpunn.fit(model, X, y, optimizer="adam", lr=0.05, epochs=epochs, batch_size=5,
                     schedule=schedule(), seed=3, record_steps=True, **kwargs)


def params(model):
    return np.array(model.backend.to_numpy(model.flat_params))


def test_five_plus_five_epochs_equal_ten_bit_for_bit(backend, tmp_path):
    straight = classifier()
    expected = run(straight, 10)
    path = tmp_path / "run.npz"
    run(classifier(), 5, checkpoint_path=path)
    resumed = classifier(seed=9)  # other initial weights: the checkpoint must replace them
    history = run(resumed, 10, resume_from=path)
    np.testing.assert_array_equal(params(resumed), params(straight))
    assert history.epoch == list(range(1, 11)) and history.loss == expected.loss
    assert history.step_loss == expected.step_loss and history.lr == expected.lr
    saved = gpunn.load_checkpoint(path)
    assert saved.epoch == 5 and saved.optimizer.t == 25


def test_checkpoints_every_k_epochs_and_after_the_last(backend, tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(fit_checkpoints, "save_checkpoint",
                        lambda path, *args, epoch, **kwargs: saved.append(epoch))
    run(classifier(), 5, checkpoint_every=2, checkpoint_path=tmp_path / "a.npz")
    assert saved == [2, 4, 5]
    saved.clear()
    run(classifier(), 5, checkpoint_every=2, checkpoint_path=tmp_path / "a.npz",
        callbacks=[lambda epoch, history, model: epoch == 3])
    assert saved == [2, 3]
    saved.clear()
    run(classifier(), 3, checkpoint_path=tmp_path / "a.npz")
    assert saved == [3]


def test_resuming_a_finished_run_trains_nothing(backend, tmp_path):
    model = classifier()
    run(model, 3, checkpoint_path=tmp_path / "a.npz")
    again = classifier(seed=5)
    history = run(again, 3, resume_from=tmp_path / "a.npz")
    assert history.epoch == [1, 2, 3]
    np.testing.assert_array_equal(params(again), params(model))


@pytest.mark.parametrize("kwargs, match", [
    ({"optimizer": "sgd", "lr": 0.1}, "optimizer: expected 'adam' as saved, got 'sgd'"),
    ({"schedule": gpunn.InverseTime(0.1, per="step")}, "schedule: expected"),
    ({"batch_size": 4}, "batch_size: expected 5 as saved, got 4"),
    ({"X": blobs(n=20)[0], "y": blobs(n=20)[1]}, "n_samples: expected 22 as saved, got 20"),
])
def test_resuming_with_other_settings_names_them(backend, tmp_path, kwargs, match):
    run(classifier(), 2, checkpoint_path=tmp_path / "a.npz")
    kwargs = dict(kwargs)
    X, y = kwargs.pop("X", blobs()[0]), kwargs.pop("y", blobs()[1])
    settings = {"optimizer": "adam", "lr": 0.05, "batch_size": 5, "schedule": schedule(),
                **kwargs}
    model = classifier(seed=7)
    before = params(model)
    with pytest.raises(gpunn.CheckpointError, match=match):
        gpunn.fit(model, X, y, epochs=4, resume_from=tmp_path / "a.npz", **settings)
    np.testing.assert_array_equal(params(model), before)  # a refused resume changes nothing


def rewrite_header(path, **changes):
    """Change the gpunn header of a checkpoint, keeping its checksums consistent."""
    from safetensors import safe_open
    from safetensors.numpy import save

    from gpunn import checkpoint

    with safe_open(path, framework="np") as handle:
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
        header = json.loads(handle.metadata()["gpunn"])
    arrays.update(changes.pop("arrays", {}))
    header.update(changes, crc32={k: checkpoint.crc(v) for k, v in arrays.items()})
    text = json.dumps(header)
    path.write_bytes(save(arrays, metadata={"gpunn": text,
                                            "gpunn.crc32": checkpoint.text_crc(text)}))
    return header


@pytest.mark.parametrize("change, match", [
    (lambda h: {"arrays": {"fit.order": np.zeros(22, np.int64)}},
     "fit.order: expected a permutation of the 22 rows"),
    (lambda h: {"epoch": 3}, r"history.epoch: expected 3 entries \(epochs 1 to 3"),
    (lambda h: {"history": dict(h["history"], loss=h["history"]["loss"][:1])},
     "history.loss: expected 2 entries"),
    (lambda h: {"rng_state": dict(h["rng_state"], state={"state": -1, "inc": 1})},
     "rng_state: "),
    (lambda h: {"optimizer": dict(h["optimizer"], lr=float("nan"))}, "lr: expected a finite"),
], ids=["order", "epoch", "history", "rng", "lr"])
def test_a_damaged_fit_checkpoint_is_refused_before_anything_changes(backend, tmp_path, change,
                                                                     match):
    path = tmp_path / "a.npz"
    run(classifier(), 2, checkpoint_path=path)
    rewrite_header(path, **change(gpunn.load_checkpoint(path) and _header(path)))
    model, optimizer = classifier(seed=7), gpunn.Adam(lr=0.05)
    before = params(model)
    with pytest.raises(gpunn.CheckpointError, match=match):
        X, y = blobs()
        gpunn.fit(model, X, y, optimizer=optimizer, epochs=4, batch_size=5,
                  schedule=schedule(), resume_from=path)
    np.testing.assert_array_equal(params(model), before)
    assert optimizer.t == 0 and optimizer.state == {}


def test_a_checkpoint_with_the_old_history_names_resumes_the_same(tmp_path):
    """Files written before History.cost became History.loss keep resuming, bit for bit."""
    straight = classifier()
    expected = run(straight, 4)
    path = tmp_path / "old.npz"
    run(classifier(), 2, checkpoint_path=path)
    saved = _header(path)["history"]
    old = {{"loss": "cost", "step_loss": "step_cost"}.get(k, k): v for k, v in saved.items()}
    assert rewrite_header(path, history=old)["history"]["cost"] == saved["loss"]
    resumed = classifier(seed=9)
    history = run(resumed, 4, resume_from=path)
    np.testing.assert_array_equal(params(resumed), params(straight))
    assert history.loss == expected.loss and history.step_loss == expected.step_loss


def test_history_cost_is_a_deprecated_alias_of_loss():
    history = gpunn.History(epoch=[1], loss=[0.5], step_loss=[0.7, 0.3])
    with pytest.warns(DeprecationWarning, match="History.cost is deprecated"):
        assert history.cost is history.loss
    with pytest.warns(DeprecationWarning, match="History.step_cost is deprecated"):
        assert history.step_cost is history.step_loss
    assert gpunn.History.from_dict({"cost": [0.5], "epoch": [1]}).loss == [0.5]


def _header(path):
    from safetensors import safe_open

    with safe_open(path, framework="np") as handle:
        return json.loads(handle.metadata()["gpunn"])


def test_resuming_from_a_model_only_checkpoint_is_refused(backend, tmp_path):
    gpunn.save_checkpoint(tmp_path / "m.npz", classifier())
    with pytest.raises(gpunn.CheckpointError, match="expected a checkpoint written by fit"):
        run(classifier(), 4, resume_from=tmp_path / "m.npz")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"checkpoint_every": 2}, ValueError, "checkpoint_every: expected checkpoint_path too"),
    ({"checkpoint_every": 0, "checkpoint_path": "a.npz"}, ValueError,
     r"checkpoint_every: expected an integer in \[1, inf\], got 0"),
    ({"checkpoint_path": 3}, TypeError, "checkpoint_path: expected a file path, got int"),
    ({"on_nonfinite": "ignore"}, ValueError, r"on_nonfinite: expected one of \['raise', 'skip'\]"),
])
def test_bad_checkpoint_arguments_name_the_argument(backend, kwargs, error, match):
    with pytest.raises(error, match=match):
        run(classifier(), 2, **kwargs)


def poison_gradients(monkeypatch, model, calls):
    """Make the gradient of the ``calls``-th training steps (from 1) NaN, the loss finite;
    returns the parameters seen before every step.

    The step is recorded and replayed on the device, so the poison is a device array added to
    the gradient by one more recorded launch (axpy); the host sets it before each step."""
    be = model.backend
    seen, poison = [], be.zeros(model.flat_grads.shape, model.dtype)
    backward, run_step = model.backward_pass, gpunn.step.TrainStep.run

    def poisoned_backward(X, views):
        backward(X, views)
        be.kernel("axpy", poison, 1.0, model.flat_grads)

    def counted_run(self, k):
        seen.append(params(model))
        be.copy_from_host(poison[3:4], [np.nan if len(seen) in calls else 0.0])
        run_step(self, k)

    monkeypatch.setattr(model, "backward_pass", poisoned_backward)
    monkeypatch.setattr(gpunn.step.TrainStep, "run", counted_run)
    return seen


def test_a_nonfinite_gradient_stops_before_the_update(backend, monkeypatch):
    model = classifier()
    seen = poison_gradients(monkeypatch, model, {7})
    with pytest.raises(gpunn.TrainingDiverged, match="epoch 2, step 2: the gradient has NaN/inf "
                                                     "entries") as caught:
        run(model, 3)
    assert math.isfinite(caught.value.loss) and math.isfinite(caught.value.last_finite_loss)
    np.testing.assert_array_equal(params(model), seen[6])
    assert not np.array_equal(seen[6], seen[5])


def test_skip_drops_nonfinite_steps_and_counts_them(backend, monkeypatch):
    model = classifier()
    seen = poison_gradients(monkeypatch, model, {2, 4})
    history = run(model, 2, on_nonfinite="skip")
    assert history.skipped_steps == 2 and len(seen) == 10
    np.testing.assert_array_equal(seen[2], seen[1])  # step 2's update was dropped
    assert all(math.isfinite(c) for c in history.loss) and np.all(np.isfinite(params(model)))
    assert len(history.step_loss) == 10


def test_a_huge_learning_rate_diverges_with_finite_parameters(backend):
    X = np.random.default_rng(0).normal(size=(16, 3))
    y = 1e4 * X @ np.ones((3, 1))
    model = gpunn.MLP([3, 8, 1], activation="relu", dtype="float32")
    with pytest.raises(gpunn.TrainingDiverged) as caught:
        gpunn.fit(model, X, y, optimizer="sgd", lr=1e6, epochs=20, batch_size=4)
    assert np.all(np.isfinite(params(model)))
    assert f"epoch {caught.value.epoch}, step {caught.value.step}" in str(caught.value)


@pytest.mark.parametrize("where, error", [("folder", ValueError), ("missing", FileNotFoundError),
                                          ("fifo", ValueError)])
def test_checkpoint_path_is_checked_before_the_first_epoch(tmp_path, where, error):
    path = {"folder": tmp_path, "missing": tmp_path / "no" / "run.npz",
            "fifo": tmp_path / "pipe"}[where]
    if where == "fifo":
        os.mkfifo(path)
    epochs = []
    with pytest.raises(error, match="checkpoint_path"):
        run(classifier(), 3, checkpoint_path=path,
            callbacks=[lambda epoch, history, model: epochs.append(epoch)])
    assert epochs == []
