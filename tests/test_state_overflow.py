"""Optimizer state that overflows with finite gradients (issue 19 item 1): unscaled inputs
(millisecond timestamps) or a huge weight decay square to inf in Adam's and RMSprop's v, which
froze those parameters while fit returned normally, and a checkpoint of the run could not be
loaded. The update kernels hold the entries whose new parameter or state would be NaN/inf at
their previous values and flag the step, so fit stops with TrainingDiverged naming the step,
with the model and the state finite: a checkpoint written after the error loads."""

import numpy as np
import pytest

import gpunn


def timestamps():
    """Regression on unscaled millisecond timestamps: loss and gradients are finite in float32
    (the loss about 1e24), the gradients' squares are not."""
    rng = np.random.default_rng(0)
    X = np.column_stack([1.7e12 + rng.uniform(0, 1e9, 32), rng.normal(size=32)])
    return X, X[:, 1:] * 3.0


def normal_data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(32, 2))
    return X, X[:, :1] - X[:, 1:]


CASES = {
    "adam-timestamps": (lambda: gpunn.Adam(lr=1e-3), timestamps),
    "rmsprop-timestamps": (lambda: gpunn.RMSprop(lr=1e-3), timestamps),
    "adam-weight_decay_1e30": (lambda: gpunn.Adam(lr=1e-3, weight_decay=1e30), normal_data),
}


def host(model, array):
    return np.array(model.backend.to_numpy(array))


@pytest.mark.parametrize("case", CASES)
def test_overflowing_state_stops_training_with_everything_finite(backend, case, tmp_path):
    make_optimizer, data = CASES[case]
    X, y = data()
    model = gpunn.MLP([2, 8, 1], activation="relu", dtype="float32", seed=0)
    before = host(model, model.flat_params).copy()
    optimizer = make_optimizer()
    with pytest.raises(gpunn.TrainingDiverged, match="parameters or optimizer state NaN/inf") as e:
        gpunn.fit(model, X, y, optimizer=optimizer, epochs=3, batch_size=8)
    assert e.value.bad_update and (e.value.epoch, e.value.step) == (1, 1)
    assert np.isfinite(e.value.loss)
    assert "kept their previous values" in str(e.value)
    params = host(model, model.flat_params)
    state = {name: host(model, a) for name, a in optimizer.state.items()}
    assert np.isfinite(params).all()
    assert state and all(np.isfinite(a).all() for a in state.values())
    # The first step started from zero state: the entries whose v would have overflowed kept
    # v = 0 and their initial parameters; every other entry took the step.
    held = state["v"] == 0
    assert held.any() and (~held).any()
    np.testing.assert_array_equal(params[held], before[held])
    assert (params[~held] != before[~held]).all()
    path = tmp_path / "after.safetensors"
    gpunn.save_checkpoint(path, model, optimizer)
    restored = gpunn.load_checkpoint(path)
    np.testing.assert_array_equal(host(restored.model, restored.model.flat_params), params)
    for name, array in restored.optimizer.state.items():
        np.testing.assert_array_equal(host(restored.model, array), state[name])
