"""After fit returns or raises, every parameter is finite. An update that overflows (finite
learning rate and gradient, an infinite step) is the case a check before the update cannot see;
the update kernel itself holds the entries it would make non-finite and flags the step."""

import numpy as np
import pytest
import reference  # noqa: I001 - tests/reference.py

import gpunn


def overflowing_problem():
    """Full-batch regression whose first SGD update overflows float32: gradients far above 1
    and lr = 3e38, which float32 can hold (so hyperparameter validation lets it through)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 3))
    y = 1e3 * X @ np.ones((3, 1))
    model = gpunn.MLP([3, 4, 1], activation="tanh", dtype="float32", seed=0)
    return model, X, y


def params(model):
    return np.array(model.backend.to_numpy(model.flat_params))


def test_the_problem_overflows_only_through_the_update(backend):
    model, X, y = overflowing_problem()
    model.loss_and_grad(X, y)
    grads = np.array(backend.to_numpy(model.flat_grads))
    assert np.all(np.isfinite(grads)) and np.abs(grads).max() > 1.0
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(3e38) * np.float32(np.abs(grads).max()))
    gpunn.SGD(lr=3e38).check_dtype(np.float32)  # representable: not refused up front


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_an_overflowing_last_update_is_reported_or_not_applied(backend):
    model, X, y = overflowing_problem()
    try:
        gpunn.fit(model, X, y, optimizer="sgd", lr=3e38, epochs=1, batch_size=None)
    except gpunn.TrainingDiverged as exc:
        assert "NaN/inf" in str(exc) and "parameters" in str(exc)
    assert np.all(np.isfinite(params(model)))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("on_nonfinite", ["raise", "skip"])
def test_what_fit_says_about_the_parameters_is_true(backend, on_nonfinite):
    """Returned or raised: every parameter is finite, and the error says that the update was
    held exactly when it was."""
    model, X, y = overflowing_problem()
    try:
        gpunn.fit(model, X, y, optimizer="sgd", lr=3e38, epochs=3, batch_size=8,
                  on_nonfinite=on_nonfinite)
    except gpunn.TrainingDiverged as exc:
        said_held = "those entries kept their previous values" in str(exc)
        assert said_held == exc.bad_update
    assert np.all(np.isfinite(params(model)))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("on_nonfinite", ["raise", "skip"])
def test_an_overflowing_update_stops_fit_at_its_step(backend, on_nonfinite):
    """The first full-batch SGD update (lr 1e36) overflows float32 in two thirds of
    the parameters (gradients 107 to 2969): fit stops at epoch 1, step 1 with a bad-update
    error, and the model holds that update except where the float64 reference ``p - lr * g``
    (tests/reference.py's gradient) leaves float32's range: there the entries kept their
    previous values, as the message says. An update held without a flag fails here."""
    model, X, y = overflowing_problem()
    lr, to_host = 1e36, backend.to_numpy
    before = [(to_host(layer.W).astype(np.float64), to_host(layer.b).astype(np.float64))
              for layer in model.layers]
    _, grads = reference.mlp_loss_and_grad(before, ["tanh", "identity"], X, y, "mse")
    held = "those entries kept their previous values"
    with pytest.raises(gpunn.TrainingDiverged, match=held) as e:
        gpunn.fit(model, X, y, optimizer="sgd", lr=lr, epochs=3, batch_size=None,
                  on_nonfinite=on_nonfinite)
    assert e.value.bad_update and (e.value.epoch, e.value.step) == (1, 1)
    overflowed = 0
    for layer, (W, b), (dW, db) in zip(model.layers, before, grads):
        for got, p, g in ((to_host(layer.W), W, dW), (to_host(layer.b), b, db)):
            expected = p - lr * g
            beyond = np.abs(expected) > np.finfo(np.float32).max
            overflowed += int(beyond.sum())
            np.testing.assert_array_equal(got[beyond], p[beyond].astype(np.float32))
            np.testing.assert_allclose(got[~beyond], expected[~beyond], rtol=1e-4)
    assert 0 < overflowed < model.n_params


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_a_model_holding_nan_before_fit_is_refused_by_name(backend, bad):
    """Not 'training diverged ... try a smaller learning rate': the parameters were bad before
    the first step, and nothing is trained or changed."""
    model, X, y = overflowing_problem()
    values = params(model)
    values[[0, 5]] = bad
    model.params.load_host(values)
    with pytest.raises(ValueError, match=r"model: expected finite parameters before training, "
                                         r"got 2 of 21 NaN/inf") as e:
        gpunn.fit(model, X, y, epochs=1)
    assert "learning rate" not in str(e.value)
    np.testing.assert_array_equal(params(model), values)
