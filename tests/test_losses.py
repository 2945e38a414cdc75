"""Losses: values and dL/dZ against float64 references and torch; target validation."""

import numpy as np
import pytest
import reference as ref

import gpunn
from gpunn.losses import LOSSES, get_loss
from gpunn.weights import batch_rescaled
from gpunn.workspace import Workspace

TORCH_LOSSES = {"bce": "binary_cross_entropy_with_logits", "cross_entropy": "cross_entropy",
                "mse": "mse_loss"}
OUTPUT_OF = {"bce": "sigmoid", "cross_entropy": "softmax", "mse": None}


def targets(loss, n, n_out, rng):
    if loss == "cross_entropy":
        return rng.integers(0, n_out, size=n)
    if loss == "bce":
        return rng.integers(0, 2, size=(n, n_out)).astype(np.float64)
    return rng.normal(size=(n, n_out))


def run_loss(backend, loss, Z, y, dtype, weights=None):
    """The loss's mean and dL/dZ from its fused kernels, on ``backend``; ``weights`` per row
    (rescaled to mean 1 as a training step does), None for ones."""
    n, n_out = Z.shape
    T = backend.asarray(loss.targets(y, n, n_out, dtype))
    buffers = Workspace(backend, n, loss.buffer_specs(n_out, dtype)).rows(n)
    dZ = backend.empty(Z.shape, dtype)
    scale = loss.scale(n, n_out)
    W = np.ones(n) if weights is None else batch_rescaled(weights, np.arange(n), n)
    loss.forward_backward(backend, backend.asarray(Z, dtype), T, backend.asarray(W, dtype),
                          scale, dZ, buffers)
    total = backend.to_numpy(buffers["terms"]).astype(np.float64).sum()
    return total * scale, backend.to_numpy(dZ)


@pytest.mark.parametrize("name", list(LOSSES))
def test_value_and_gradient_match_reference_and_torch(backend, dtype, name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    Z = (rng.normal(size=(7, 4)) * 3).astype(dtype)
    y = targets(name, 7, 4, rng)
    value, dZ = run_loss(backend, get_loss(name), Z, y, dtype)
    expected, expected_dZ = ref.loss_and_dZ(name, Z, y)
    ref.assert_close(value, expected, dtype, scale=4.0, err_msg="loss")
    ref.assert_close(dZ, expected_dZ, dtype, scale=4.0, err_msg="dZ")
    logits = torch.tensor(Z.astype(np.float64), requires_grad=True)
    target = torch.tensor(y) if name != "cross_entropy" else torch.tensor(y, dtype=torch.long)
    reduced = getattr(torch.nn.functional, TORCH_LOSSES[name])(logits, target)
    reduced.backward()
    ref.assert_close(value, reduced.item(), dtype, scale=4.0, err_msg="torch loss")
    ref.assert_close(dZ, logits.grad.numpy(), dtype, scale=4.0, err_msg="torch dZ")


@pytest.mark.parametrize("name", list(LOSSES))
def test_weighted_value_and_gradient_match_reference_and_torch(backend, dtype, name):
    """Per-row weights (a zero, a large one): the weighted mean sum(w l) / sum(w), against the
    float64 reference and torch's reduction='none' terms times the weights."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    Z = (rng.normal(size=(9, 3)) * 3).astype(dtype)
    y = targets(name, 9, 3, rng)
    w = rng.uniform(0.1, 4.0, 9)
    w[2], w[5] = 0.0, 40.0
    value, dZ = run_loss(backend, get_loss(name), Z, y, dtype, weights=w)
    expected, expected_dZ = ref.loss_and_dZ(name, Z, y, weights=w)
    ref.assert_close(value, expected, dtype, scale=4.0, err_msg="loss")
    ref.assert_close(dZ, expected_dZ, dtype, scale=4.0, err_msg="dZ")
    logits = torch.tensor(Z.astype(np.float64), requires_grad=True)
    target = torch.tensor(y) if name != "cross_entropy" else torch.tensor(y, dtype=torch.long)
    terms = getattr(torch.nn.functional, TORCH_LOSSES[name])(logits, target, reduction="none")
    per_row = terms.reshape(9, -1).mean(dim=1)
    reduced = (per_row * torch.tensor(w)).sum() / w.sum()
    reduced.backward()
    ref.assert_close(value, reduced.item(), dtype, scale=4.0, err_msg="torch loss")
    ref.assert_close(dZ, logits.grad.numpy(), dtype, scale=4.0, err_msg="torch dZ")
    assert not np.allclose(value, ref.loss_and_dZ(name, Z, y)[0])  # the weights mattered


def test_class_weights_match_torch_cross_entropy_weight(backend, dtype):
    """class_weight as row weights w_i = c[y_i] is CrossEntropyLoss(weight=c), mean reduction."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    Z = (rng.normal(size=(11, 4)) * 2).astype(dtype)
    y = rng.integers(0, 4, 11)
    c = np.array([0.5, 3.0, 1.0, 7.0])
    value, dZ = run_loss(backend, get_loss("cross_entropy"), Z, y, dtype, weights=c[y])
    logits = torch.tensor(Z.astype(np.float64), requires_grad=True)
    reduced = torch.nn.functional.cross_entropy(logits, torch.tensor(y), weight=torch.tensor(c))
    reduced.backward()
    ref.assert_close(value, reduced.item(), dtype, scale=4.0)
    ref.assert_close(dZ, logits.grad.numpy(), dtype, scale=4.0)


@pytest.mark.parametrize("name", ["bce", "cross_entropy"])
def test_extreme_logits_stay_finite(backend, dtype, name):
    Z = np.array([[-3e4, 0.0, 3e4], [5e3, -5e3, 1.0]], dtype=dtype)
    y = np.array([0, 2]) if name == "cross_entropy" else np.array([[1.0, 0, 0], [0, 1, 1]])
    value, dZ = run_loss(backend, get_loss(name), Z, y, dtype)
    expected, expected_dZ = ref.loss_and_dZ(name, Z, y)
    assert np.isfinite(value) and np.all(np.isfinite(dZ))
    ref.assert_close(value, expected, dtype)
    ref.assert_close(dZ, expected_dZ, dtype)


def test_default_loss_follows_the_output(backend):
    for output, name in (("sigmoid", "bce"), ("softmax", "cross_entropy"), (None, "mse")):
        model = gpunn.MLP([2, 2], output=output)
        assert get_loss(None, model).name == name


def test_loss_must_apply_the_models_output(backend):
    model = gpunn.MLP([3, 2], output="softmax")
    with pytest.raises(ValueError, match="loss: expected a loss for output='softmax' "
                                         r"\('cross_entropy'\), got 'mse'"):
        model.loss_and_grad(np.ones((2, 3)), np.zeros(2), loss="mse")


@pytest.mark.parametrize("loss, error, match", [
    ("hinge", ValueError, r"loss: expected one of \['bce', 'cross_entropy', 'mse'\], got 'hinge'"),
    (3, TypeError, "loss: expected a name in .* or a Loss, got int"),
])
def test_unknown_losses_are_refused(backend, loss, error, match):
    model = gpunn.MLP([3, 2], output="softmax")
    with pytest.raises(error, match=match):
        model.loss_and_grad(np.ones((2, 3)), np.zeros(2), loss=loss)


BAD_TARGETS = [
    ("bce", 1, [0.0, 0.5, 1.0, 1.0], ValueError,
     "y: expected binary targets 0/1 for loss 'bce', got 1 other values, e.g. 0.5"),
    ("bce", 1, [[0, 1], [1, 0], [0, 0], [1, 1]], ValueError,
     r"y: expected shape \(4, 1\) for loss 'bce'"),
    ("bce", 2, [0, 1, 1, 0], ValueError, r"y: expected shape \(4, 2\)"),
    ("cross_entropy", 3, [0, 1, 2, 3], ValueError,
     r"y: expected labels in \[0, 3\) for 3 output units, got values in \[0, 3\]"),
    ("cross_entropy", 3, [0, -1, 2, 1], ValueError, r"got values in \[-1, 2\]"),
    ("cross_entropy", 3, [0.0, 1.5, 2.0, 1.0], ValueError,
     ("y: expected integer class labels for loss 'cross_entropy', got non-integer values "
      "such as 1.5")),
    ("cross_entropy", 3, np.eye(4, 3), ValueError,
     r"y: expected shape \(4,\) of class labels for loss 'cross_entropy', got \(4, 3\)"),
    ("cross_entropy", 3, [0, 1, 2], ValueError, r"y: expected shape \(4,\)"),
    ("cross_entropy", 3, [0.0, np.nan, 1.0, 2.0], ValueError, "y: expected finite values"),
    ("mse", 2, np.ones((4, 3)), ValueError,
     (r"y: expected shape \(4, 2\) for loss 'mse' \(one row per row of X, one column per "
      r"output\), got \(4, 3\)")),
    ("mse", 1, [1.0, np.inf, 0.0, 2.0], ValueError, "y: expected finite values, got 1"),
    ("mse", 1, ["a", "b", "c", "d"], TypeError, "y: expected numeric data"),
    ("mse", 1, np.ones((4, 1, 1)), ValueError, r"y: expected a \(1, 2\)-D array"),
    ("mse", 1, [], ValueError, "y: expected a non-empty array"),
]


@pytest.mark.parametrize("loss, n_out, y, error, match", BAD_TARGETS,
                         ids=[f"{row[0]}-{i}" for i, row in enumerate(BAD_TARGETS)])
def test_bad_targets_name_the_argument(backend, loss, n_out, y, error, match):
    model = gpunn.MLP([3, n_out], output=OUTPUT_OF[loss])
    with pytest.raises(error, match=match):
        model.loss_and_grad(np.ones((4, 3)), y)


def test_accepted_target_forms(backend):
    X = np.random.default_rng(0).normal(size=(4, 3))
    softmax = gpunn.MLP([3, 3], output="softmax", dtype="float64")
    labels = softmax.loss_and_grad(X, np.array([0, 2, 1, 2]))
    for same in ([0, 2, 1, 2], np.array([[0], [2], [1], [2]]), np.array([0.0, 2.0, 1.0, 2.0])):
        assert softmax.loss_and_grad(X, same) == labels
    sigmoid = gpunn.MLP([3, 1], output="sigmoid", dtype="float64")
    bits = sigmoid.loss_and_grad(X, np.array([[1.0], [0.0], [0.0], [1.0]]))
    for same in ([1, 0, 0, 1], np.array([True, False, False, True])):
        assert sigmoid.loss_and_grad(X, same) == bits


def test_one_hot_targets_equal_labels_for_softmax(backend):
    X = np.random.default_rng(0).normal(size=(4, 3))
    model = gpunn.MLP([3, 3], output="softmax", dtype="float64")
    labels = np.array([0, 2, 1, 2])
    by_labels = model.loss_and_grad(X, labels)
    grads = backend.to_numpy(model.flat_grads).copy()
    assert model.loss_and_grad(X, np.eye(3)[labels]) == by_labels
    np.testing.assert_array_equal(backend.to_numpy(model.flat_grads), grads)


LABEL_HINTS = [
    ("softmax", 10, [1, 2, 10, 5], ValueError,
     r"got values in \[1, 10\]; map other labels to 0..K-1 first .*GpunnClassifier"),
    ("softmax", 3, ["a", "b", "c", "a"], TypeError,
     "y: expected numeric data, got dtype <U1 for loss 'cross_entropy'; map other labels"),
    ("sigmoid", 1, [1, 2, 2, 1], ValueError, "expected binary targets 0/1 .*; map other labels"),
    ("sigmoid", 1, ["y", "n", "y", "n"], TypeError, "for loss 'bce'; map other labels"),
]


@pytest.mark.parametrize("output, n_out, y, error, match", LABEL_HINTS,
                         ids=["labels-1-to-10", "string-labels",
                              "bce-1-2", "bce-strings"])
def test_label_errors_give_hints(output, n_out, y, error, match):
    model = gpunn.MLP([3, n_out], output=output)
    with pytest.raises(error, match=match):
        model.loss_and_grad(np.ones((4, 3)), y)
