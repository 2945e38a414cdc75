"""gradcheck: backprop agrees with float64 central differences for every activation x loss."""

import numpy as np
import pytest
import reference

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


# Largest per-tensor relative error of the model's own backprop (in its dtype) against float64
# central differences: float32 rounding gives ~1e-6 here; a wrong gradient gives ~1.
OWN_DTYPE_ERROR = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-7}


def numeric_gradients(params, activations, X, y, loss, eps=1e-6):
    """Float64 central differences of the reference loss (tests/reference.py) per tensor."""
    grads = []
    for layer in params:
        for tensor in layer:
            numeric = np.empty_like(tensor)
            for i in np.ndindex(tensor.shape):
                original, values = tensor[i], []
                for value in (original + eps, original - eps):
                    tensor[i] = value
                    Z = reference.mlp_forward(params, activations, X)[-1]
                    values.append(reference.loss_and_dZ(loss, Z, y)[0])
                tensor[i] = original
                numeric[i] = (values[0] - values[1]) / (2 * eps)
            grads.append(numeric)
    return grads


def relative_error(analytic, numeric):
    denominator = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return 0.0 if denominator == 0 else float(np.linalg.norm(analytic - numeric) / denominator)


@pytest.mark.parametrize("loss", list(OUTPUT_OF))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_activation_and_loss(backend, dtype, activation, loss):
    """gradcheck (which copies the model to float64) passes, and the model's own backprop in
    its dtype (float32 included) agrees with float64 central differences of the independent
    reference loss."""
    # Relu's kink: with these seeds no pre-activation lies within eps of 0 (the smallest
    # |z| is 1.6e-3, measured), so central differences never straddle it.
    model = gpunn.MLP([3, 4, 4, 3], activation=activation, output=OUTPUT_OF[loss], dtype=dtype,
                      seed=1)
    X, y = problem(loss)
    error = gpunn.gradcheck(model, X, y, loss)
    assert error < 1e-7, f"relative error {error:.3g}"

    to_host = backend.to_numpy
    params = [(to_host(layer.W).astype(np.float64), to_host(layer.b).astype(np.float64))
              for layer in model.layers]
    numeric = numeric_gradients(params, [activation] * 2 + ["identity"], X, y, loss)
    model.loss_and_grad(X, y, loss)
    own = [to_host(g) for layer in model.layers for g in (layer.dW, layer.db)]
    assert all(g.dtype == dtype for g in own)
    worst = max(relative_error(g.astype(np.float64), n) for g, n in zip(own, numeric))
    assert worst < OWN_DTYPE_ERROR[dtype], f"{dtype} backprop: relative error {worst:.3g}"


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
