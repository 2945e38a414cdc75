"""The scikit-learn estimators fit streamed data (a path, a memory map, an h5py-like dataset)
through fit's streaming path: the bits of the in-memory fit for the same batches."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from gpunn.sklearn import GpunnClassifier, GpunnRegressor  # noqa: E402

N, D = 240, 5


@pytest.fixture()
def data(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N, D)).astype(np.float32)
    labels = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    np.save(tmp_path / "X.npy", X)
    return tmp_path, X, labels


def fitted(estimator, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y, **kw)


@pytest.mark.parametrize("kind", ["path", "memmap", "h5py"])
def test_classifier_on_a_source_equals_in_memory(data, kind):
    path, X, y = data
    if kind == "path":
        source = str(path / "X.npy")
    elif kind == "memmap":
        source = np.load(path / "X.npy", mmap_mode="r")
    else:
        h5py = pytest.importorskip("h5py")
        source = h5py.File(path / "d.h5", "w").create_dataset("X", data=X)
    kw = {"hidden_layer_sizes": (8,), "max_iter": 3, "shuffle": False, "random_state": 0,
          "batch_size": 32}
    w = np.linspace(0.5, 2.0, N)
    expected = fitted(GpunnClassifier(**kw), X, y, sample_weight=w)
    got = fitted(GpunnClassifier(**kw), source, y, sample_weight=w)
    np.testing.assert_array_equal(got.model_.params.host(), expected.model_.params.host())
    assert got.n_features_in_ == D and list(got.classes_) == ["a", "b", "c"]
    np.testing.assert_array_equal(got.predict(X), expected.predict(X))


def test_early_stopping_holds_out_the_last_rows(data):
    import gpunn

    path, X, y = data
    values = X @ np.arange(1.0, D + 1)
    np.save(path / "t.npy", values)
    kw = {"hidden_layer_sizes": (8,), "max_iter": 4, "shuffle": False, "random_state": 0,
          "early_stopping": True, "validation_fraction": 0.25, "n_iter_no_change": 50}
    reg = fitted(GpunnRegressor(**kw), path / "X.npy", path / "t.npy")
    model = gpunn.MLP([D, 8, 1], seed=reg._init_seed)
    history = gpunn.fit(model, X, values, epochs=4, batch_size=180, shuffle=False,
                        validation_split=0.25, progress=False,
                        optimizer=gpunn.optim.get_optimizer("adam", 0.001))
    assert reg.validation_scores_ == history.val_loss
    np.testing.assert_array_equal(reg.model_.params.host(), model.params.host())


def test_partial_fit_streams_and_checks_the_features(data):
    path, X, y = data
    clf = GpunnClassifier(hidden_layer_sizes=(8,), random_state=0)
    clf.partial_fit(path / "X.npy", y, classes=["a", "b", "c"])
    np.save(path / "X4.npy", X[:, :4])
    with pytest.raises(ValueError, match=r"X: expected 5 features, as in the first fit, got 4"):
        clf.partial_fit(path / "X4.npy", y)
    assert clf.n_iter_ == 1


def test_bad_streamed_inputs_are_refused_by_name(data):
    path, X, y = data
    clf = GpunnClassifier(hidden_layer_sizes=(8,), max_iter=1)
    with pytest.raises(ValueError, match=r"y: expected 240 rows, as X has, got shape \(239,\)"):
        clf.fit(path / "X.npy", y[:-1])
    with pytest.raises(ValueError, match=r"X: .* no such file"):
        clf.fit(path / "none.npy", y)
    np.save(path / "w.npy", np.full(N, np.nan))
    with pytest.raises(ValueError, match=r"sample_weight: expected finite weights"):
        clf.fit(path / "X.npy", y, sample_weight=path / "w.npy")
    np.save(path / "flat.npy", X[:, 0])
    with pytest.raises(ValueError, match=r"X: expected a 2-D array of rows, got shape \(240,\)"):
        clf.fit(path / "flat.npy", y)
    assert not hasattr(clf, "model_") or not hasattr(clf, "_model")


def test_a_validation_fraction_holding_out_no_row_is_refused(data):
    path, X, y = data
    clf = GpunnClassifier(early_stopping=True, validation_fraction=0.001)
    with pytest.raises(ValueError, match=r"validation_fraction: expected a held-out part of "
                                         r"the 240 rows"):
        clf.fit(path / "X.npy", y)


def test_predict_streams_a_source_a_block_at_a_time(data):
    """Sequential.predict / predict_proba and the estimators' predict take sources too (read a
    block at a time): the numbers of the array in memory."""
    import gpunn

    path, X, y = data
    clf = fitted(GpunnClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0),
                 path / "X.npy", y)
    np.testing.assert_array_equal(clf.predict(path / "X.npy"), clf.predict(X))
    np.testing.assert_allclose(clf.predict_proba(np.load(path / "X.npy", mmap_mode="r")),
                               clf.predict_proba(X), rtol=1e-6)
    assert clf.score(path / "X.npy", y) == clf.score(X, y)
    model = gpunn.MLP([D, 4, 2], seed=0)
    np.testing.assert_allclose(model.predict(path / "X.npy"), model.predict(X), rtol=1e-6)
    np.save(path / "X4.npy", X[:, :4])
    with pytest.raises(ValueError, match=r"X: expected rows of 5 features, as in fit, got "
                                         r"shape \(240, 4\)"):
        clf.predict(path / "X4.npy")
    with pytest.raises(ValueError, match=r"X: expected 5 features"):
        model.predict(path / "X4.npy")
