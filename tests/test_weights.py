"""sample_weight and class_weight in fit: the weighted mean per batch, against PyTorch step for
step and float64 references; argument checks; resume; validation weights."""

import numpy as np
import pytest
import reference as ref

import gpunn
from gpunn.losses import get_loss
from gpunn.weights import batch_rescaled, class_weights, row_weights

ROWS, BATCH, EPOCHS, SEED = 40, 8, 4, 3  # 20 steps
SIZES = [5, 7, 3]


def data(loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(ROWS, SIZES[0])).astype(np.float32)
    w = rng.uniform(0.0, 3.0, ROWS)
    w[::7] = 0.0
    if loss == "cross_entropy":
        return X, rng.integers(0, SIZES[-1], ROWS), w
    if loss == "bce":
        return X, rng.integers(0, 2, (ROWS, 1)).astype(np.float32), w
    return X, rng.normal(size=(ROWS, SIZES[-1])).astype(np.float32), w


def fit_batches():
    """The row batches fit takes: the documented default_rng(seed) shuffle of every epoch."""
    rng, order, batches = np.random.default_rng(SEED), np.arange(ROWS), []
    for _ in range(EPOCHS):
        rng.shuffle(order)
        batches += [order[k:k + BATCH].copy() for k in range(0, ROWS, BATCH)]
    return batches


# (output, loss, n_out, torch functional loss, class_weight)
TASKS = [
    ("softmax", "cross_entropy", 3, "cross_entropy", None),
    ("softmax", "cross_entropy", 3, "cross_entropy", {0: 0.5, 2: 4.0}),
    ("sigmoid", "bce", 1, "binary_cross_entropy_with_logits", "balanced"),
    (None, "mse", 3, "mse_loss", None),
]


@pytest.mark.parametrize("output, loss, n_out, torch_loss, class_weight", TASKS,
                         ids=["xent-sample", "xent-sample-class", "bce-balanced", "mse-sample"])
def test_weighted_fit_matches_torch_for_20_steps(backend, output, loss, n_out, torch_loss,
                                                 class_weight):
    """fit's steps (weights gathered in the recorded step) against torch's reduction='none'
    terms times the weights over their sum; class weights through torch's own weight=."""
    torch = pytest.importorskip("torch")
    X, y, w = data(loss)
    model = gpunn.MLP([SIZES[0], SIZES[1], n_out], activation="tanh", output=output, seed=1)
    net = torch.nn.Sequential(torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.Tanh(),
                              torch.nn.Linear(SIZES[1], n_out))
    with torch.no_grad():
        for layer, linear in zip(model.layers, net[::2]):
            linear.weight.copy_(torch.from_numpy(backend.to_numpy(layer.W).T.copy()))
            linear.bias.copy_(torch.from_numpy(backend.to_numpy(layer.b).copy()))
    history = gpunn.fit(model, X, y, optimizer="adam", lr=0.02, epochs=EPOCHS,
                        batch_size=BATCH, seed=SEED, record_steps=True, sample_weight=w,
                        class_weight=class_weight)
    per_class = None
    if class_weight is not None:
        labels = y.reshape(-1).astype(np.int64)
        per_class = torch.tensor(class_weights(class_weight, labels, max(n_out, 2)),
                                 dtype=torch.float32)
    optimizer, losses = torch.optim.Adam(net.parameters(), lr=0.02), []
    target = torch.from_numpy(y).long() if loss == "cross_entropy" else torch.from_numpy(y)
    function = getattr(torch.nn.functional, torch_loss)
    for rows in fit_batches():
        optimizer.zero_grad()
        sw = torch.from_numpy(w[rows])
        if loss == "cross_entropy":
            terms = function(net(torch.from_numpy(X[rows])), target[rows], weight=per_class,
                             reduction="none").double()
            total = sw * (1.0 if per_class is None else per_class[target[rows]])
        else:
            terms = function(net(torch.from_numpy(X[rows])), target[rows],
                             reduction="none").double().mean(dim=1)
            total = sw * (1.0 if per_class is None else per_class[target[rows, 0].long()])
            terms = terms * (1.0 if per_class is None else per_class[target[rows, 0].long()])
        value = (terms * sw).sum() / total.sum()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    ref.assert_close(history.step_loss, losses, np.float32, scale=10.0, err_msg="losses")
    for layer, linear in zip(model.layers, net[::2]):
        ref.assert_close(backend.to_numpy(layer.W), linear.weight.detach().numpy().T,
                         np.float32, scale=10.0, err_msg="W")


def test_integer_weights_equal_repeated_rows(backend):
    """Full batch: weight k is the row k times (float64, against an unweighted fit)."""
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(12, 4)), rng.integers(0, 3, 12)
    k = rng.integers(0, 4, 12)
    k[0] = 2
    weighted = gpunn.MLP([4, 5, 3], activation="tanh", output="softmax", dtype="float64")
    repeated = gpunn.MLP([4, 5, 3], activation="tanh", output="softmax", dtype="float64")
    a = gpunn.fit(weighted, X, y, optimizer="sgd", lr=0.3, epochs=5, batch_size=None,
                  sample_weight=k)
    b = gpunn.fit(repeated, np.repeat(X, k, axis=0), np.repeat(y, k), optimizer="sgd", lr=0.3,
                  epochs=5, batch_size=None)
    ref.assert_close(a.loss, b.loss, np.float64, scale=10.0)
    ref.assert_close(backend.to_numpy(weighted.flat_params),
                     backend.to_numpy(repeated.flat_params), np.float64, scale=10.0)


def test_scaling_every_weight_by_a_power_of_two_changes_no_bit(backend):
    """sum(w l) / sum(w): a constant weight is no weight (4 rescales to exactly 1)."""
    X, y, _ = data("cross_entropy")
    runs = []
    for w in (None, np.full(ROWS, 4.0)):
        model = gpunn.MLP([5, 7, 3], activation="relu", output="softmax", seed=2)
        runs.append((gpunn.fit(model, X, y, epochs=2, batch_size=BATCH, sample_weight=w,
                               record_steps=True).step_loss,
                     backend.to_numpy(model.flat_params).copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_batch_rescaled_has_mean_one_per_batch_and_keeps_zero_batches_zero():
    w = np.array([1.0, 3.0, 0.0, 0.0, 2.0, 6.0, 5.0])
    order = np.array([0, 4, 2, 3, 1, 5, 6])  # batches {0, 4}, {2, 3}, {1, 5}, {6}
    rescaled = batch_rescaled(w, order, 2)
    np.testing.assert_allclose(rescaled, [2 / 3, 2 * 3 / 9, 0, 0, 4 / 3, 2 * 6 / 9, 1.0])


def test_balanced_is_scikit_learns_formula():
    utils = pytest.importorskip("sklearn.utils.class_weight")
    y = np.array([0, 0, 0, 1, 2, 2, 0, 1, 2, 0])
    expected = utils.compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(class_weights("balanced", y, 3), expected)
    # An absent class weighs 1: it weights no row (scikit-learn refuses classes not in y).
    np.testing.assert_allclose(class_weights("balanced", np.array([0, 0, 2]), 3),
                               [3 / 4, 1.0, 3 / 2])


def test_class_and_sample_weights_multiply():
    T = np.array([0.0, 1.0, 1.0, 2.0])
    w = row_weights([1.0, 2.0, 0.5, 1.0], {1: 3.0}, T, get_loss("cross_entropy"), 3)
    np.testing.assert_array_equal(w, [1.0, 6.0, 1.5, 1.0])


BAD = [
    ({"sample_weight": np.ones(39)}, ValueError,
     r"sample_weight: expected 40 weights \(one per row of X\), got 39"),
    ({"sample_weight": np.ones((40, 1))}, ValueError, "sample_weight: expected a 1-D array"),
    ({"sample_weight": np.r_[-1.0, np.ones(39)]}, ValueError,
     "sample_weight: expected non-negative weights, got -1.0 at index 0"),
    ({"sample_weight": np.r_[np.ones(5), np.nan, np.ones(34)]}, ValueError,
     "sample_weight: expected finite weights, got 1 NaN/inf, first at index 5"),
    ({"sample_weight": np.zeros(40)}, ValueError,
     "sample_weight: expected at least one positive weight, got all zeros"),
    ({"sample_weight": ["a"] * 40}, TypeError, "sample_weight: expected numeric data"),
    ({"class_weight": {3: 1.0}}, ValueError,
     r"class_weight: expected keys among the classes 0..2, got \[3\]"),
    ({"class_weight": {"a": 1.0}}, ValueError, r"class_weight: expected keys .*got \['a'\]"),
    ({"class_weight": {0: -2.0}}, ValueError, "class_weight: expected non-negative weights"),
    ({"class_weight": {0: 0.0, 1: 0.0, 2: 0.0}}, ValueError,
     "class_weight: expected at least one positive weight"),
    ({"class_weight": "even"}, ValueError, "class_weight: expected one of"),
    ({"class_weight": [1.0, 2.0, 3.0]}, TypeError,
     "class_weight: expected 'balanced' or a dict"),
    ({"class_weight": {0: "x"}}, TypeError, r"class_weight\[0\]: expected a number"),
    ({"validation_data": (np.zeros((3, 5)), np.zeros(3), np.ones(2))}, ValueError,
     r"validation_data\[2\]: expected 3 weights"),
]


@pytest.mark.parametrize("kwargs, error, match", BAD,
                         ids=[f"{next(iter(row[0]))}-{i}" for i, row in enumerate(BAD)])
def test_bad_weights_are_refused_before_any_work(backend, kwargs, error, match):
    X, y, _ = data("cross_entropy")
    model = gpunn.MLP(SIZES, output="softmax")
    before = backend.to_numpy(model.flat_params).copy()
    with pytest.raises(error, match=match):
        gpunn.fit(model, X, y, epochs=1, batch_size=BATCH, **kwargs)
    np.testing.assert_array_equal(backend.to_numpy(model.flat_params), before)


def test_class_weight_needs_one_label_per_row(backend):
    model = gpunn.MLP([5, 3], output=None)
    with pytest.raises(ValueError, match="class_weight: expected a loss with one class label "
                                         "per row .*got 'mse' with 3 outputs"):
        gpunn.fit(model, np.zeros((4, 5)), np.zeros((4, 3)), class_weight="balanced")


def test_weighted_validation_loss_and_accuracy(backend):
    """validation_data's third part weights val_loss (weighted mean) and val_accuracy."""
    X, y, w = data("cross_entropy")
    model = gpunn.MLP(SIZES, activation="relu", output="softmax", dtype="float64")
    history = gpunn.fit(model, X[:30], y[:30], epochs=1, batch_size=BATCH,
                        validation_data=(X[30:], y[30:], w[30:]))
    params = [(backend.to_numpy(layer.W), backend.to_numpy(layer.b)) for layer in model.layers]
    logits = ref.mlp_forward(params, ["relu", "identity"], X[30:])[-1]
    expected, _ = ref.loss_and_dZ("cross_entropy", logits, y[30:], w[30:])
    ref.assert_close(history.val_loss[-1], expected, np.float64)
    right = np.argmax(logits, axis=1) == y[30:]
    assert history.val_accuracy[-1] == pytest.approx(w[30:][right].sum() / w[30:].sum())
    assert model.evaluate(X[30:], y[30:], sample_weight=w[30:]) == pytest.approx(
        (history.val_loss[-1], history.val_accuracy[-1]))


def test_validation_split_keeps_the_weights_of_the_held_out_rows(backend):
    X, y, w = data("cross_entropy")
    model = gpunn.MLP(SIZES, output="softmax", dtype="float64")
    history = gpunn.fit(model, X, y, epochs=1, batch_size=BATCH, sample_weight=w,
                        validation_split=0.25)
    assert history.weight_sum == pytest.approx(w[:30].sum())
    val_loss, _ = model.evaluate(X[30:], y[30:], sample_weight=w[30:])
    assert history.val_loss[-1] == pytest.approx(val_loss)


def test_resume_continues_a_weighted_run_bit_for_bit(backend, tmp_path):
    X, y, w = data("cross_entropy")

    def run(epochs, **kwargs):
        model = gpunn.MLP(SIZES, output="softmax", seed=kwargs.pop("seed", 0))
        history = gpunn.fit(model, X, y, epochs=epochs, batch_size=BATCH, seed=5,
                            sample_weight=w, class_weight="balanced", record_steps=True,
                            **kwargs)
        return model, history

    straight, expected = run(6)
    run(3, checkpoint_path=tmp_path / "w.npz")
    resumed, history = run(6, resume_from=tmp_path / "w.npz", seed=9)
    np.testing.assert_array_equal(backend.to_numpy(resumed.flat_params),
                                  backend.to_numpy(straight.flat_params))
    assert history.step_loss == expected.step_loss
    model = gpunn.MLP(SIZES, output="softmax")
    with pytest.raises(gpunn.CheckpointError, match="weight_sum: expected .* as saved, got None"):
        gpunn.fit(model, X, y, epochs=6, batch_size=BATCH, seed=5, record_steps=True,
                  resume_from=tmp_path / "w.npz")


def test_model_loss_and_grad_take_sample_weight(backend):
    X, y, w = data("cross_entropy")
    model = gpunn.MLP(SIZES, activation="tanh", output="softmax", dtype="float64")
    params = [(backend.to_numpy(layer.W), backend.to_numpy(layer.b)) for layer in model.layers]
    value = model.loss_and_grad(X, y, sample_weight=w)
    expected, grads = ref.mlp_loss_and_grad(params, ["tanh", "identity"], X, y,
                                            "cross_entropy", weights=w)
    ref.assert_close(value, expected, np.float64)
    for (dW, db), layer in zip(grads, model.layers):
        ref.assert_close(backend.to_numpy(layer.dW), dW, np.float64)
        ref.assert_close(backend.to_numpy(layer.db), db, np.float64)
    assert model.loss(X, y, sample_weight=w) == pytest.approx(value)
