"""Dense, Sequential, MLP: flat layout, seeded init, forward and backprop vs float64 references."""

import numpy as np
import pytest
import reference as ref

import gpunn
from gpunn.layers import ACTIVATIONS
from gpunn.params import ALIGN

OUTPUT_OF = {"bce": "sigmoid", "cross_entropy": "softmax", "mse": None}
# Tolerance multipliers for a whole forward + backward chain. Measured: scale 1 passes on cpu and
# cuda-emulated; float32 keeps a margin for cuBLAS and NVRTC's FMA contraction on a GPU.
CHAIN_SCALE = {np.dtype(np.float32): 4.0, np.dtype(np.float64): 1.0}


def make_targets(loss, n, n_out, seed=1):
    rng = np.random.default_rng(seed)
    if loss == "cross_entropy":
        return rng.integers(0, n_out, size=n)
    if loss == "bce":
        return rng.integers(0, 2, size=(n, n_out)).astype(np.float64)
    return rng.normal(size=(n, n_out))


def host_params(model):
    """``[(W, b), ...]`` of ``model`` as float64 NumPy arrays."""
    to_host = model.backend.to_numpy
    return [(to_host(layer.W).astype(np.float64), to_host(layer.b).astype(np.float64))
            for layer in model.layers]


def inputs(n, n_in, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, n_in)).astype(dtype)


def test_parameters_are_views_of_one_aligned_flat_buffer(backend):
    model = gpunn.MLP([3, 5, 2], activation="tanh")
    names = [name for name, _, _ in model.param_ranges]
    assert names == ["W0", "W1", "b0", "b1"]  # decayed weights first: one decay boundary
    assert model.params.decay_end == dict((n, a) for n, a, _ in model.param_ranges)["b0"]
    assert all(start % ALIGN == 0 for _, start, _ in model.param_ranges)
    assert model.n_params == 3 * 5 + 5 + 5 * 2 + 2
    assert model.flat_grads.shape == model.flat_params.shape
    ranges = {name: (start, stop) for name, start, stop in model.param_ranges}
    for name, p, g in zip(["W0", "b0", "W1", "b1"], model.parameters(), model.gradients()):
        start, stop = ranges[name]
        p[...] = 7.0
        g[...] = -3.0
        flat_p = backend.to_numpy(model.flat_params)
        flat_g = backend.to_numpy(model.flat_grads)
        assert np.all(flat_p[start:stop] == 7.0) and np.all(flat_g[start:stop] == -3.0)
    gaps = np.ones(model.flat_params.size, dtype=bool)
    for _, start, stop in model.param_ranges:
        gaps[start:stop] = False
    assert gaps.any() and np.all(backend.to_numpy(model.flat_params)[gaps] == 0.0)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_initialization_is_seeded_glorot_or_he(backend, dtype, activation):
    sizes, seed = [4, 6, 3], 5
    model = gpunn.MLP(sizes, activation=activation, dtype=dtype, seed=seed, init="auto")
    rng = np.random.default_rng(seed)
    for (W, b), n_in, n_out, act in zip(host_params(model), sizes[:-1], sizes[1:],
                                        [activation, "identity"]):
        if act == "relu":
            expected = rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_in, n_out))
        else:
            limit = np.sqrt(6.0 / (n_in + n_out))
            expected = rng.uniform(-limit, limit, size=(n_in, n_out))
        np.testing.assert_array_equal(W, expected.astype(dtype))
        np.testing.assert_array_equal(b, np.zeros(n_out))
    other = gpunn.MLP(sizes, activation=activation, dtype=dtype, seed=seed + 1, init="auto")
    assert not np.array_equal(host_params(other)[0][0], host_params(model)[0][0])


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_forward_matches_reference(backend, dtype, activation):
    model = gpunn.MLP([4, 6, 5, 3], activation=activation, dtype=dtype, seed=2)
    X = inputs(7, 4)
    out = model.forward(X)
    assert isinstance(out, backend.xp.ndarray) and out.dtype == dtype
    expected = ref.mlp_forward(host_params(model), [activation] * 2 + ["identity"], X)[-1]
    ref.assert_close(backend.to_numpy(out), expected, dtype, scale=CHAIN_SCALE[dtype])


@pytest.mark.parametrize("loss", list(OUTPUT_OF))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_loss_and_grad_match_manual_backprop(backend, dtype, activation, loss):
    model = gpunn.MLP([4, 6, 5, 3], activation=activation, output=OUTPUT_OF[loss], dtype=dtype,
                      seed=3)
    X, y = inputs(9, 4), make_targets(loss, 9, 3)
    value = model.loss_and_grad(X, y)
    expected, grads = ref.mlp_loss_and_grad(host_params(model), [activation] * 2 + ["identity"],
                                            X, y, loss)
    scale = CHAIN_SCALE[dtype]
    ref.assert_close(value, expected, dtype, scale=scale, err_msg="loss")
    for i, (layer, (dW, db)) in enumerate(zip(model.layers, grads)):
        ref.assert_close(backend.to_numpy(layer.dW), dW, dtype, scale=scale, err_msg=f"dW{i}")
        ref.assert_close(backend.to_numpy(layer.db), db, dtype, scale=scale, err_msg=f"db{i}")


TORCH_LOSSES = {"bce": "binary_cross_entropy_with_logits", "cross_entropy": "cross_entropy",
                "mse": "mse_loss"}


@pytest.mark.parametrize("loss", list(OUTPUT_OF))
def test_gradients_match_torch_autograd(backend, dtype, loss):
    torch = pytest.importorskip("torch")
    activations = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh,
                   "identity": lambda z: z}
    acts = ["sigmoid", "relu", "tanh", "identity"]
    layers = [gpunn.Dense(a, b, act) for a, b, act in zip([4, 6, 5, 4], [6, 5, 4, 3], acts)]
    model = gpunn.Sequential(layers, output=OUTPUT_OF[loss], dtype=dtype, seed=4)
    X, y = inputs(10, 4), make_targets(loss, 10, 3)
    value = model.loss_and_grad(X, y, loss)
    params = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
              for W, b in host_params(model)]
    A = torch.tensor(X)
    for (W, b), act in zip(params, acts):
        A = activations[act](A @ W + b)
    target = torch.tensor(y) if loss != "cross_entropy" else torch.tensor(y, dtype=torch.long)
    expected = getattr(torch.nn.functional, TORCH_LOSSES[loss])(A, target)
    expected.backward()
    scale = CHAIN_SCALE[dtype]
    ref.assert_close(value, expected.item(), dtype, scale=scale, err_msg="loss")
    for layer, (W, b) in zip(model.layers, params):
        ref.assert_close(backend.to_numpy(layer.dW), W.grad.numpy(), dtype, scale=scale)
        ref.assert_close(backend.to_numpy(layer.db), b.grad.numpy(), dtype, scale=scale)


def test_smaller_batches_use_views_of_the_workspace(backend):
    model = gpunn.MLP([4, 6, 3], activation="tanh", output="softmax", dtype="float64")
    X, y = inputs(8, 4), make_targets("cross_entropy", 8, 3)
    model.loss_and_grad(X, y)
    arrays = dict(model._ws["cross_entropy"].arrays)
    value = model.loss_and_grad(X[:3], y[:3])
    ws = model._ws["cross_entropy"]
    assert ws.arrays == arrays and ws.capacity == 8
    expected, grads = ref.mlp_loss_and_grad(host_params(model), ["tanh", "identity"], X[:3],
                                            y[:3], "cross_entropy")
    ref.assert_close(value, expected, np.float64, scale=10.0)
    ref.assert_close(backend.to_numpy(model.layers[0].dW), grads[0][0], np.float64, scale=10.0)
    model.loss_and_grad(inputs(12, 4), make_targets("cross_entropy", 12, 3))
    assert model._ws["cross_entropy"].capacity == 12


def test_predict_softmax_labels_and_probabilities(backend):
    model = gpunn.MLP([4, 6, 3], activation="relu", output="softmax", dtype="float64", seed=1)
    X = inputs(11, 4)
    logits = ref.mlp_forward(host_params(model), ["relu", "identity"], X)[-1]
    proba = model.predict_proba(X)
    expected = np.exp(logits - ref.logsumexp_rows(logits)[:, None])
    ref.assert_close(proba, expected, np.float64, scale=10.0)
    np.testing.assert_array_equal(model.predict(X), np.argmax(logits, axis=1))
    np.testing.assert_array_equal(model.predict(X, batch_size=4), model.predict(X))
    assert model.predict(X).shape == (11,)


@pytest.mark.parametrize("n_out", [1, 3])
def test_predict_sigmoid_thresholds_at_one_half(backend, n_out):
    model = gpunn.MLP([4, 5, n_out], activation="tanh", output="sigmoid", dtype="float64")
    X = inputs(13, 4)
    logits = ref.mlp_forward(host_params(model), ["tanh", "identity"], X)[-1]
    proba = model.predict_proba(X)
    ref.assert_close(proba, ref.sigmoid(logits), np.float64, scale=10.0)
    labels = model.predict(X, batch_size=5)
    expected = (ref.sigmoid(logits) > 0.5).astype(np.int64)
    np.testing.assert_array_equal(labels, expected[:, 0] if n_out == 1 else expected)


def test_predict_regression_returns_outputs(backend):
    model = gpunn.MLP([4, 5, 2], activation="sigmoid", dtype="float64")
    X = inputs(6, 4)
    expected = ref.mlp_forward(host_params(model), ["sigmoid", "identity"], X)[-1]
    ref.assert_close(model.predict(X), expected, np.float64, scale=10.0)
    with pytest.raises(ValueError, match="predict_proba: expected a model with output"):
        model.predict_proba(X)


def test_evaluate_gives_loss_and_accuracy(backend):
    model = gpunn.MLP([4, 6, 3], activation="tanh", output="softmax", dtype="float64", seed=2)
    X, y = inputs(10, 4), make_targets("cross_entropy", 10, 3)
    value, accuracy = model.evaluate(X, y, batch_size=3)
    ref.assert_close(value, model.loss_and_grad(X, y), np.float64, scale=10.0)
    assert accuracy == np.mean(model.predict(X) == y)
    regression = gpunn.MLP([4, 2], dtype="float64")
    assert regression.evaluate(X, inputs(10, 2))[1] is None


def test_copy_and_config_round_trip(backend):
    model = gpunn.MLP([3, 4, 2], activation="relu", output="sigmoid", dtype="float32", seed=6)
    model.layers[1].b[...] = 0.25
    twin = model.copy(dtype="float64")
    assert twin.dtype == np.float64 and twin.config()["layers"] == model.config()["layers"]
    np.testing.assert_array_equal(backend.to_numpy(twin.flat_params),
                                  backend.to_numpy(model.flat_params).astype(np.float64))
    twin.flat_params[...] = 0.0
    assert np.any(backend.to_numpy(model.flat_params) != 0.0)
    fresh = gpunn.Sequential.from_config(model.config())
    assert repr(fresh.layers) == repr(model.layers) and fresh.output == "sigmoid"


@pytest.mark.parametrize("build, error, match", [
    (lambda: gpunn.Dense(0, 3), ValueError, r"n_in: expected an integer in \[1, inf\], got 0"),
    (lambda: gpunn.Dense(3, 2, "softplus"), ValueError, "activation: expected one of"),
    (lambda: gpunn.Sequential([]), ValueError, "layers: expected a non-empty list"),
    (lambda: gpunn.Sequential(["dense"]), TypeError, "layers.0.: expected a Dense layer"),
    (lambda: gpunn.Sequential([gpunn.Dense(3, 4), gpunn.Dense(5, 2)]), ValueError,
     r"layers\[1\].n_in: expected 4 \(n_out of layers\[0\]\), got 5"),
    (lambda: gpunn.Sequential([gpunn.Dense(3, 2, "relu")], output="softmax"), ValueError,
     "layers.-1..activation: expected 'identity' with output='softmax'"),
    (lambda: gpunn.Sequential([gpunn.Dense(3, 2)], dtype="int32"), TypeError,
     "dtype: expected float32 or float64"),
    (lambda: gpunn.MLP([3]), ValueError, "sizes: expected a list"),
    (lambda: gpunn.MLP([3, 0]), ValueError, r"sizes\[1\]: expected an integer"),
    (lambda: gpunn.MLP([3, 2], output="tanh"), ValueError,
     "output: expected None, 'sigmoid' or 'softmax', got 'tanh'"),
    (lambda: gpunn.MLP([3, 2], seed=-1), ValueError, "seed: expected an integer"),
    (lambda: gpunn.MLP([3, 2], activation="swish"), ValueError, "activation: expected one of"),
    (lambda: gpunn.MLP([3, 2], output=["softmax"]), ValueError, "output: expected None"),
])
def test_bad_architectures_name_the_argument(backend, build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_a_layer_belongs_to_one_model(backend):
    layer = gpunn.Dense(3, 3, "tanh")
    gpunn.Sequential([layer])
    with pytest.raises(ValueError, match=r"layers\[0\]: expected a new Dense layer"):
        gpunn.Sequential([layer])
    twice = gpunn.Dense(3, 3, "tanh")
    with pytest.raises(ValueError, match=r"layers\[1\]: .* appears twice"):
        gpunn.Sequential([twice, twice])


@pytest.mark.parametrize("X, error, match", [
    (np.ones((5, 3)), ValueError, r"X: expected 4 features \(columns\), got shape \(5, 3\)"),
    (np.ones(4), ValueError, r"X: expected a 2-D array, got shape \(4,\)"),
    (np.ones((0, 4)), ValueError, "X: expected a non-empty array"),
    (np.array([[1.0, np.nan, 0.0, 0.0]]), ValueError, "X: expected finite values, got 1"),
    (np.array([[np.inf, 0.0, 0.0, 0.0]]), ValueError, "X: expected finite values"),
    (np.array([["a", "b", "c", "d"]]), TypeError, "X: expected numeric data, got dtype <U1"),
])
def test_bad_inputs_name_the_argument(backend, X, error, match):
    model = gpunn.MLP([4, 3, 2], output="softmax")
    for call in (lambda: model.loss_and_grad(X, np.zeros(len(X), int)),
                 lambda: model.predict(X), lambda: model.forward(X)):
        with pytest.raises(error, match=match):
            call()


def test_lists_fortran_and_strided_inputs_are_accepted(backend):
    model = gpunn.MLP([4, 5, 3], activation="tanh", output="softmax", dtype="float64")
    X, y = inputs(6, 4), make_targets("cross_entropy", 6, 3)
    expected = model.loss_and_grad(X, y)
    wide = np.zeros((6, 8))
    wide[:, ::2] = X
    for variant in (X.tolist(), np.asfortranarray(X), wide[:, ::2]):
        assert model.loss_and_grad(variant, list(y)) == expected
    ref.assert_close(model.loss_and_grad(X.astype(np.float32), y), expected, np.float32)
