"""gradcheck: backprop agrees with float64 central differences for every activation x loss."""

import numpy as np
import pytest

import gpunn
from gpunn.layers import ACTIVATIONS, Dense

OUTPUT_OF = {"bce": "sigmoid", "cross_entropy": "softmax", "mse": None}


def problem(loss, seed=0):
    """Tiny inputs and targets: 6 rows, 3 features, 3 outputs."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(6, 3))
    if loss == "cross_entropy":
        return X, rng.integers(0, 3, size=6)
    if loss == "bce":
        return X, rng.integers(0, 2, size=(6, 3))
    return X, rng.normal(size=(6, 3))


@pytest.mark.parametrize("loss", list(OUTPUT_OF))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_activation_and_loss(backend, dtype, activation, loss):
    # Relu's kink: with these seeds no pre-activation lies within eps of 0 (the smallest
    # |z| is 1.6e-3, measured), so central differences never straddle it.
    model = gpunn.MLP([3, 4, 4, 3], activation=activation, output=OUTPUT_OF[loss], dtype=dtype,
                      seed=1)
    X, y = problem(loss)
    error = gpunn.gradcheck(model, X, y, loss)
    assert error < 1e-7, f"relative error {error:.3g}"


def test_a_wrong_gradient_is_caught(backend, monkeypatch):
    model = gpunn.MLP([3, 4, 3], activation="tanh", output="softmax", seed=1)
    X, y = problem("cross_entropy")
    assert gpunn.gradcheck(model, X, y) < 1e-7
    monkeypatch.setattr(Dense, "activation_backward", lambda self, be, A, dA, dAh=None: None)
    assert gpunn.gradcheck(model, X, y) > 1e-2


def test_the_model_is_left_untouched(backend):
    model = gpunn.MLP([3, 4, 3], activation="sigmoid", output="softmax", dtype="float32")
    before = backend.to_numpy(model.flat_params).copy()
    gpunn.gradcheck(model, *problem("cross_entropy"))
    assert model.dtype == np.float32
    np.testing.assert_array_equal(backend.to_numpy(model.flat_params), before)


@pytest.mark.parametrize("eps, error", [(0.0, ValueError), (-1e-6, ValueError),
                                        ("small", TypeError)])
def test_bad_eps_is_refused(backend, eps, error):
    model = gpunn.MLP([3, 3], output="softmax")
    with pytest.raises(error, match="eps: expected"):
        gpunn.gradcheck(model, *problem("cross_entropy"), eps=eps)
