"""What the estimators' fit and partial_fit leave behind: curves that accumulate, a new shuffle
each call, no label of an earlier problem kept, whole messages.

Written for the mutants of gpunn/sklearn.py that survived the other tests
(benchmarks/MUTATION.md).
"""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import gpunn.sklearn  # noqa: E402
from gpunn.sklearn import GpunnClassifier, GpunnRegressor  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(24, 3))
Y = (X[:, 0] > 0).astype(int)
SMALL = {"hidden_layer_sizes": (4,), "learning_rate_init": 0.01, "random_state": 0,
         "batch_size": 8}


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def test_partial_fit_accumulates_the_loss_curve_and_the_epochs():
    clf = GpunnClassifier(**SMALL)
    last = []
    for _ in range(3):
        clf.partial_fit(X, Y, classes=[0, 1])
        last.append(clf.history_.loss[-1])
    assert clf.n_iter_ == 3 and clf.loss_curve_ == last and clf.best_loss_ == min(last)
    clf.fit(X, Y)  # a fit starts the curve again
    assert clf.loss_curve_ == clf.history_.loss and clf.n_iter_ == len(clf.history_.epoch)


def test_each_partial_fit_call_shuffles_with_a_new_seed(monkeypatch):
    """Calls on the same rows must not see them in the same order every epoch."""
    seeds, fit = [], gpunn.sklearn.gpunn_fit

    def spy(*args, seed, **kwargs):
        seeds.append(seed)
        return fit(*args, seed=seed, **kwargs)

    monkeypatch.setattr(gpunn.sklearn, "gpunn_fit", spy)
    for _ in range(2):
        clf = GpunnRegressor(**SMALL)
        for _ in range(3):
            clf.partial_fit(X, X[:, 0])
    assert len(set(seeds[:3])) == 3 and seeds[:3] == seeds[3:]  # new each call; reproducible


def test_a_fit_after_partial_fit_takes_the_labels_of_its_own_y():
    clf = GpunnClassifier(**SMALL)
    clf.partial_fit(X, Y, classes=[0, 1, 2])
    words = np.where(Y == 1, "yes", "no")
    clf.fit(X, words)
    assert clf.classes_.tolist() == ["no", "yes"] and set(clf.predict(X)) <= {"no", "yes"}
    assert clf.predict_proba(X).shape == (24, 2)


def test_balanced_class_weight_in_partial_fit_is_refused_with_what_to_do():
    clf = GpunnClassifier(class_weight="balanced", **SMALL)
    with pytest.raises(ValueError) as caught:
        clf.partial_fit(X, Y, classes=[0, 1])
    assert str(caught.value) == (
        "class_weight: expected a dict in partial_fit ('balanced' needs all of y at once; "
        "compute it once, e.g. with sklearn.utils.class_weight.compute_class_weight), got "
        "'balanced'")
    assert not hasattr(clf, "classes_")


def test_the_convergence_warning_names_max_iter_and_points_at_the_caller():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        GpunnClassifier(max_iter=2, **SMALL).fit(X, Y)
    (warning,) = [w for w in caught if w.category is ConvergenceWarning]
    assert str(warning.message) == ("GpunnClassifier: max_iter=2 epochs reached and the "
                                    "optimization has not converged yet.")
    assert warning.filename == __file__  # shown at the caller's fit call


@pytest.mark.parametrize("name, value", [("norm", "batch"), ("dropout", 1.5)])
def test_a_bad_layer_option_is_refused_by_its_own_name(name, value):
    with pytest.raises(ValueError, match=rf"^{name}: expected .*, got {value!r}"):
        GpunnClassifier(**{name: value}, **SMALL).fit(X, Y)


def test_one_epoch_without_change_is_a_valid_patience_counted_as_mlpclassifier_counts():
    """tol larger than any loss: no epoch after the first improves; MLPClassifier stops once
    more than n_iter_no_change epochs have not."""
    from sklearn.neural_network import MLPClassifier

    settings = {"n_iter_no_change": 1, "max_iter": 50, "tol": 10.0}
    clf = GpunnClassifier(**settings, **SMALL).fit(X, Y)
    peer = MLPClassifier(**settings, **SMALL).fit(X, Y)
    assert clf.n_iter_ == peer.n_iter_ == 3
