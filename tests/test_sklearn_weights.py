"""gpunn.sklearn: sample_weight, class_weight and precision reach gpunn.fit and the model."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

from gpunn.sklearn import GpunnClassifier, GpunnRegressor  # noqa: E402

SMALL = {"hidden_layer_sizes": (8,), "max_iter": 5, "learning_rate_init": 0.01,
         "random_state": 0, "batch_size": 16}


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array(["cat", "dog", "eel"])[rng.choice(3, n, p=[0.6, 0.3, 0.1])]
    X = rng.normal(size=(n, 4)) + (np.searchsorted(["cat", "dog", "eel"], y))[:, None]
    return X, y


def test_class_weight_by_label_is_the_same_sample_weight():
    """{label: weight} with string labels: the rows of that label weigh it, bit for bit."""
    X, y = blobs()
    by_class = GpunnClassifier(class_weight={"dog": 5.0, "eel": 0.5}, **SMALL).fit(X, y)
    w = np.where(y == "dog", 5.0, np.where(y == "eel", 0.5, 1.0))
    by_sample = GpunnClassifier(**SMALL).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(by_class.predict_proba(X), by_sample.predict_proba(X))
    assert by_class.loss_curve_ == by_sample.loss_curve_
    unweighted = GpunnClassifier(**SMALL).fit(X, y)
    assert unweighted.loss_curve_ != by_class.loss_curve_


def test_balanced_is_scikit_learns_sample_weight():
    X, y = blobs()
    balanced = GpunnClassifier(class_weight="balanced", **SMALL).fit(X, y)
    by_sample = GpunnClassifier(**SMALL).fit(X, y, sample_weight=compute_sample_weight(
        "balanced", y))
    np.testing.assert_allclose(balanced.predict_proba(X), by_sample.predict_proba(X),
                               rtol=1e-5, atol=1e-6)


def test_sample_weight_in_partial_fit_and_the_regressor():
    X, y = blobs()
    w = np.linspace(0.0, 2.0, len(y))
    a = GpunnClassifier(**SMALL).partial_fit(X, y, classes=["cat", "dog", "eel"],
                                             sample_weight=w)
    b = GpunnClassifier(**SMALL).partial_fit(X, y, classes=["cat", "dog", "eel"])
    assert a.loss_curve_ != b.loss_curve_
    t = X @ np.array([1.0, -2.0, 0.5, 3.0])
    r = GpunnRegressor(**SMALL).fit(X, t, sample_weight=w)
    s = GpunnRegressor(**SMALL).partial_fit(X, t, sample_weight=w)
    assert r.history_.weight_sum == pytest.approx(w.sum()) == s.history_.weight_sum


def test_early_stopping_splits_the_weights_along():
    X, y = blobs(n=80)
    w = np.r_[np.ones(40), np.full(40, 3.0)]
    est = GpunnClassifier(early_stopping=True, validation_fraction=0.25, **SMALL)
    est.fit(X, y, sample_weight=w)
    assert 0 < est.history_.weight_sum < w.sum()  # the training part's weights only
    assert len(est.validation_scores_) == est.n_iter_


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_precision_reaches_the_model(precision):
    X, y = blobs()
    est = GpunnClassifier(precision=precision, **SMALL).fit(X, y)
    assert est.model_.precision == precision
    assert est.get_params()["precision"] == precision


BAD = [
    ({"class_weight": {"cow": 2.0}}, {}, ValueError,
     r"class_weight: expected keys among classes_ \['cat', 'dog', 'eel'\], got \['cow'\]"),
    ({"class_weight": "even"}, {}, ValueError, "class_weight: expected one of"),
    ({"class_weight": [1, 2]}, {}, TypeError, "class_weight: expected None, 'balanced' or a"),
    ({"class_weight": {"dog": -1.0}}, {}, ValueError, "class_weight: expected non-negative"),
    ({}, {"sample_weight": np.ones(3)}, ValueError, "sample_weight: expected 60 weights"),
    ({}, {"sample_weight": -np.ones(60)}, ValueError, "sample_weight: expected non-negative"),
    ({"precision": "fp16"}, {}, ValueError, "precision: expected"),
]


@pytest.mark.parametrize("params, fit_kwargs, error, match", BAD,
                         ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_weights_and_precision_name_the_argument(params, fit_kwargs, error, match):
    X, y = blobs()
    with pytest.raises(error, match=match):
        GpunnClassifier(**params, **SMALL).fit(X, y, **fit_kwargs)


def test_partial_fit_refuses_balanced():
    X, y = blobs()
    est = GpunnClassifier(class_weight="balanced", **SMALL)
    with pytest.raises(ValueError, match="class_weight: expected a dict in partial_fit"):
        est.partial_fit(X, y, classes=["cat", "dog", "eel"])
    assert not hasattr(est, "model_") or not hasattr(est, "_model")


def test_the_regressor_has_no_class_weight():
    assert "class_weight" not in GpunnRegressor().get_params()
    assert GpunnClassifier(class_weight="balanced").get_params()["class_weight"] == "balanced"
