"""Optimizer state that overflows with finite gradients (issue 19 item 1): unscaled inputs
(millisecond timestamps) or a huge weight decay square to inf in Adam's and RMSprop's v, which
froze those parameters while fit returned normally. The update kernels flag non-finite state as
they flag non-finite parameters, so fit stops with TrainingDiverged naming the step."""

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
def test_overflowing_state_stops_training_at_its_step(backend, case):
    make_optimizer, data = CASES[case]
    X, y = data()
    model = gpunn.MLP([2, 8, 1], activation="relu", dtype="float32", seed=0)
    optimizer = make_optimizer()
    with pytest.raises(gpunn.TrainingDiverged, match="parameters or optimizer state NaN/inf") as e:
        gpunn.fit(model, X, y, optimizer=optimizer, epochs=3, batch_size=8)
    assert e.value.bad_update and (e.value.epoch, e.value.step) == (1, 1)
    assert np.isfinite(e.value.loss)
    assert "holds those non-finite values" in str(e.value)
    # What the message says is true: the state overflowed (the parameters did not: an update
    # divided by sqrt(inf) is 0).
    assert not np.isfinite(host(model, optimizer.state["v"])).all()
    assert np.isfinite(host(model, model.flat_params)).all()
