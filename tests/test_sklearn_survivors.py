"""The estimators' hyperparameters reach what they configure, pickles keep what they carry,
refusals name the estimator's parameter before any work, streamed data keeps its own checks.

Written for the mutants of gpunn/sklearn.py that survived the other tests in the whole-set run
of 2026-12-06 (benchmarks/MUTATION.md, "estimators, whole set"). Where a value passes through
to gpunn.fit, a spy on ``gpunn.sklearn.gpunn_fit`` reads what the estimator asked for; where it
configures the model or the optimizer, the fitted ones are read back.
"""

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning, DataConversionWarning  # noqa: E402

import gpunn.sklearn  # noqa: E402
from gpunn.backends.cpu import CpuBackend  # noqa: E402
from gpunn.schedules import get_schedule  # noqa: E402
from gpunn.sklearn import GpunnClassifier, GpunnRegressor  # noqa: E402

RNG = np.random.default_rng(1)
X = RNG.normal(size=(30, 3))
Y = (X[:, 0] > 0).astype(int)
Y3 = np.digitize(X[:, 0], [-0.4, 0.4])  # three classes
SMALL = {"hidden_layer_sizes": (4,), "learning_rate_init": 0.01, "random_state": 0,
         "batch_size": 8, "max_iter": 2}
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def fit_calls(monkeypatch):
    """The keyword arguments of every gpunn.fit call the estimators make (which still runs)."""
    calls, fit = [], gpunn.sklearn.gpunn_fit

    def spy(model, X, T, **kwargs):
        calls.append(dict(kwargs, X=X, T=T))
        return fit(model, X, T, **kwargs)

    monkeypatch.setattr(gpunn.sklearn, "gpunn_fit", spy)
    return calls


def _npy(tmp_path, name, array):
    path = tmp_path / f"{name}.npy"
    np.save(path, array)
    return str(path)


# --- what each hyperparameter configures -------------------------------------------------

def test_the_layer_options_reach_the_model():
    clf = GpunnClassifier(hidden_layer_sizes=(6, 6), activation="tanh", init="he_normal",
                          norm="layer", residual=True, dropout=0.25, precision="bf16",
                          **{k: v for k, v in SMALL.items() if k != "hidden_layer_sizes"})
    clf.fit(X, Y3)
    model = clf.model_
    assert [layer.activation for layer in model.layers] == ["tanh", "tanh", "identity"]
    assert {layer["init"] for layer in model.config()["layers"]} == {"he_normal"}
    assert [layer.residual for layer in model.layers] == [False, True, False]
    assert [layer.dropout for layer in model.layers] == [0.25, 0.25, 0.0]
    assert model.config()["layers"][1]["norm"] == "layer"
    assert model.precision == "bf16" and model.output == "softmax"


def test_alpha_and_clipping_reach_the_optimizer():
    for rows, batch_size in ((30, "auto"), (30, 8), (250, "auto")):
        x = RNG.normal(size=(rows, 3))
        clf = GpunnClassifier(alpha=0.3, clip_norm=2.0, clip_value=0.5,
                              **dict(SMALL, batch_size=batch_size)).fit(x, x[:, 0] > 0)
        hyper = clf._optimizer.state_dict()["hyperparameters"]
        expected_batch = min(200, rows) if batch_size == "auto" else batch_size
        assert hyper["weight_decay"] == pytest.approx(0.3 / expected_batch)
        assert hyper["clip_norm"] == 2.0 and hyper["clip_value"] == 0.5


def test_partial_fit_divides_alpha_by_the_batch_of_its_own_rows():
    reg = GpunnRegressor(alpha=0.3, **dict(SMALL, batch_size="auto"))
    reg.partial_fit(X, X[:, 0])
    assert reg._optimizer.state_dict()["hyperparameters"]["weight_decay"] == pytest.approx(
        0.3 / 30)


def test_the_fit_options_reach_gpunn_fit(fit_calls, capsys):
    schedule = get_schedule("cosine", period=4)
    clf = GpunnClassifier(schedule=schedule, shuffle=False, verbose=1,
                          class_weight={0: 2.0, 2: 0.5}, **SMALL).fit(X, Y3)
    call = fit_calls[-1]
    assert call["batch_size"] == 8 and call["shuffle"] is False and call["verbose"] == 1
    assert call["schedule"] is schedule and call["epochs"] == 2
    assert call["class_weight"] == {0: 2.0, 2: 0.5}  # labels 0..2 are their own indices
    assert capsys.readouterr().out  # verbose=1 prints the epochs
    assert clf.loss_ == clf.loss_curve_[-1] == clf.history_.loss[-1]
    # "auto" takes min(200, rows); an explicit batch is clipped to the rows
    big = RNG.normal(size=(450, 3))
    GpunnRegressor(**dict(SMALL, batch_size="auto", max_iter=1)).fit(big, big[:, 0])
    GpunnRegressor(**dict(SMALL, batch_size=1000, max_iter=1)).fit(X, X[:, 0])
    assert [c["batch_size"] for c in fit_calls[-2:]] == [200, 30]
    assert [c["shuffle"] for c in fit_calls[-2:]] == [True, True]  # the default


def test_a_batch_of_one_row_and_a_hidden_layer_of_one_unit_are_valid(fit_calls):
    reg = GpunnRegressor(**dict(SMALL, hidden_layer_sizes=(1,), batch_size=1, max_iter=1))
    reg.fit(X, X[:, 0])
    assert fit_calls[-1]["batch_size"] == 1 and reg.model_.layers[0].n_out == 1
    scalar = GpunnRegressor(**dict(SMALL, hidden_layer_sizes=5, max_iter=1)).fit(X, X[:, 0])
    assert [layer.n_out for layer in scalar.model_.layers] == [5, 1]


def test_partial_fit_trains_on_every_row_even_with_early_stopping(fit_calls):
    clf = GpunnClassifier(early_stopping=True, **SMALL)
    clf.partial_fit(X, Y, classes=[0, 1])
    call = fit_calls[-1]
    assert call["X"].shape[0] == len(X) and call["validation_data"] is None


def test_early_stopping_counts_patience_from_n_iter_no_change_and_tol():
    """tol larger than any change: no epoch after the first improves, so each epoch of
    n_iter_no_change adds one epoch to the run, which stops long before max_iter (the
    regressor's validation loss, and the training loss, would improve for most of it)."""
    for estimator, early_stopping in ((GpunnRegressor, True), (GpunnClassifier, False)):
        runs = [estimator(**dict(SMALL, max_iter=50, tol=1e9, n_iter_no_change=patience,
                                 early_stopping=early_stopping)).fit(X, Y).n_iter_
                for patience in (2, 4)]
        assert runs[1] - runs[0] == 2 and runs[0] <= 4, (early_stopping, runs)


def test_the_held_out_rows_are_the_same_for_the_same_random_state():
    scores = [GpunnClassifier(**dict(SMALL, early_stopping=True, validation_fraction=0.3,
                                     random_state=5)).fit(X, Y3).validation_scores_
              for _ in range(2)]
    assert scores[0] == scores[1]
    splits = {tuple(GpunnClassifier(**dict(SMALL, early_stopping=True,
                                           validation_fraction=0.3, random_state=seed))
                    .fit(X, Y3).validation_scores_) for seed in range(6)}
    assert len(splits) > 1  # the split follows random_state


def test_the_regressor_holds_out_a_random_part_with_early_stopping():
    """Continuous targets cannot be stratified: the regressor's split is a random one."""
    reg = GpunnRegressor(**dict(SMALL, early_stopping=True, validation_fraction=0.2))
    reg.fit(X, X[:, 0])
    assert len(reg.validation_scores_) == reg.n_iter_ == 2


def test_a_held_out_part_too_small_to_stratify_is_refused_with_the_row_count():
    with pytest.raises(ValueError, match=r"^validation_fraction: expected a held-out part of "
                                         r"the 30 rows that early_stopping can use, got 0.05"):
        GpunnClassifier(**dict(SMALL, early_stopping=True, validation_fraction=0.05)) \
            .fit(X, Y3)


def test_a_refit_without_early_stopping_drops_the_validation_scores():
    clf = GpunnClassifier(**dict(SMALL, early_stopping=True)).fit(X, Y)
    assert hasattr(clf, "validation_scores_") and hasattr(clf, "best_validation_score_")
    clf.set_params(early_stopping=False).fit(X, Y)
    assert not hasattr(clf, "validation_scores_")
    assert not hasattr(clf, "best_validation_score_")


def test_the_backend_option_chooses_the_backend():
    backend = CpuBackend()
    clf = GpunnClassifier(backend=backend, **SMALL).fit(X, Y)
    assert clf.model_.backend is backend


def test_constructor_arguments_are_kept_as_given():
    clf = GpunnClassifier((7,), "tanh", schedule="cosine", backend="cpu")
    params = clf.get_params()
    assert params["hidden_layer_sizes"] == (7,) and params["activation"] == "tanh"
    assert params["schedule"] == "cosine" and params["backend"] == "cpu"


# --- pickles -------------------------------------------------------------------------------

@pytest.mark.parametrize("estimator", [GpunnClassifier, GpunnRegressor])
def test_an_unfitted_estimator_pickles(estimator):
    restored = pickle.loads(pickle.dumps(estimator(**SMALL)))
    assert restored.get_params() == estimator(**SMALL).get_params()
    assert not hasattr(restored, "_model") and not hasattr(restored, "_optimizer")


def test_a_pickle_keeps_the_optimizer_with_its_hyperparameters_and_state():
    clf = GpunnClassifier(**dict(SMALL, solver="rmsprop", learning_rate_init=0.02, alpha=0.1,
                                 clip_norm=1.5)).fit(X, Y)
    restored = pickle.loads(pickle.dumps(clf))
    before, after = clf._optimizer.state_dict(), restored._optimizer.state_dict()
    assert after["name"] == "rmsprop" and after["base_lr"] == 0.02
    assert after["hyperparameters"] == before["hyperparameters"]
    # one more epoch from the pickle trains to the same bits as from the original
    clf.partial_fit(X, Y)
    restored.partial_fit(X, Y)
    np.testing.assert_array_equal(restored.model_.params.host(), clf.model_.params.host())


# --- refusals: by the estimator's own names, before any work -------------------------------

@pytest.mark.parametrize("name, value, message", [
    ("alpha", -0.5, r"^alpha: expected a finite number in \[0.0, inf\]"),
    ("clip_norm", -1.0, r"^clip_norm: "),
    ("clip_value", 0.0, r"^clip_value: "),
    ("residual", "yes", r"^residual: "),
    ("validation_fraction", 1.0, r"^validation_fraction: expected a finite number in "
                                 r"\[0.0, 1.0\)"),
    ("hidden_layer_sizes", (True,), r"^hidden_layer_sizes: expected positive integers"),
    ("hidden_layer_sizes", ("8",), r"^hidden_layer_sizes: expected positive integers"),
])
def test_a_bad_hyperparameter_is_refused_before_the_data_is_read(name, value, message):
    """The data is bad too: the hyperparameter's refusal must come first."""
    with pytest.raises((ValueError, TypeError), match=message):
        GpunnClassifier(**{name: value}).fit(np.full((4, 2), np.nan), [0, 1, 0, 1])


def test_alpha_with_a_solver_without_coupled_l2_names_the_solver():
    with pytest.raises(ValueError, match=r"^alpha: expected 0 with solver 'adamw'"):
        GpunnClassifier(solver="adamw", alpha=0.1).fit(X, Y)
    GpunnClassifier(**dict(SMALL, solver="Adam", alpha=0.1)).fit(X, Y)  # any case
    optimizer = gpunn.optim.get_optimizer("adamw", 0.01)
    with pytest.raises(ValueError, match=r"^alpha: expected 0 with solver <"):
        GpunnClassifier(solver=optimizer, alpha=0.1).fit(X, Y)


def test_a_class_weight_of_another_type_is_named_by_its_type():
    with pytest.raises(TypeError, match=r"class_weight: expected None, 'balanced' or a dict "
                                        r"\{label: weight\}, got list"):
        GpunnClassifier(class_weight=[1.0, 2.0], **SMALL).fit(X, Y)


def test_balanced_class_weight_in_partial_fit_is_refused_before_random_state_is_used():
    state = np.random.RandomState(3)
    before = state.get_state()[1].copy()
    with pytest.raises(ValueError, match="class_weight: expected a dict in partial_fit"):
        GpunnClassifier(**dict(SMALL, class_weight="balanced", random_state=state)) \
            .partial_fit(X, Y, classes=[0, 1])
    np.testing.assert_array_equal(state.get_state()[1], before)


def test_partial_fit_without_classes_says_what_it_needs():
    with pytest.raises(ValueError, match=r"^classes: expected every label of the problem on "
                                         r"the first call to partial_fit, got None$"):
        GpunnClassifier(**SMALL).partial_fit(X, Y)


def test_partial_fit_takes_the_classes_given_not_those_of_the_first_batch():
    clf = GpunnClassifier(**SMALL).partial_fit(X, Y, classes=[0, 1, 2])
    assert clf.classes_.tolist() == [0, 1, 2] and clf.model_.output == "softmax"
    clf.partial_fit(X, Y3)  # label 2 arrives later


def test_a_column_of_labels_warns_as_scikit_learn_does(tmp_path):
    with pytest.warns(DataConversionWarning):
        GpunnClassifier(**SMALL).fit(X, Y[:, None])
    with pytest.warns(DataConversionWarning):  # streamed X: y is checked by the estimator
        GpunnClassifier(**SMALL).fit(_npy(tmp_path, "X", X), Y[:, None])


def test_the_convergence_warning_says_which_estimator_did_not_converge():
    with pytest.warns(ConvergenceWarning) as caught:
        GpunnRegressor(**SMALL).fit(X, X[:, 0])
    assert str(caught[0].message) == ("GpunnRegressor: max_iter=2 epochs reached and the "
                                      "optimization has not converged yet.")


def test_predict_log_proba_of_a_certain_class_is_minus_inf_without_a_warning():
    clf = GpunnClassifier(**dict(SMALL, learning_rate_init=0.5, max_iter=30)).fit(X * 50, Y)
    far = np.array([[1e4, 0.0, 0.0], [-1e4, 0.0, 0.0]])
    assert (clf.predict_proba(far) == 0.0).any()  # saturated: a probability of exactly 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_p = clf.predict_log_proba(far)
    assert np.isneginf(log_p).any()


def test_partial_fit_of_the_regressor_checks_the_target_columns():
    Y2 = np.column_stack([X[:, 0], X[:, 1]])
    reg = GpunnRegressor(**SMALL).partial_fit(X, Y2)
    reg.partial_fit(X, Y2)  # the same two columns
    assert reg.n_outputs_ == 2 and reg.predict(X).shape == (30, 2)
    with pytest.raises(ValueError, match=r"^y: expected 2 target columns, got shape \(30, 3\)"):
        reg.partial_fit(X, np.column_stack([Y2, X[:, 2]]))


# --- streamed data ---------------------------------------------------------------------------

def test_streamed_data_keeps_its_names_in_every_message(tmp_path):
    x_path, missing = _npy(tmp_path, "X", X), str(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match=r"^X: expected a data file or folder"):
        GpunnClassifier(**SMALL).fit(missing, Y)
    with pytest.raises(ValueError, match=r"^y: expected a data file or folder"):
        GpunnClassifier(**SMALL).fit(x_path, missing)
    for method in ("fit", "partial_fit"):
        with pytest.raises(ValueError, match=r"^sample_weight: expected a data file or folder"):
            kwargs = {"classes": [0, 1]} if method == "partial_fit" else {}
            getattr(GpunnClassifier(**SMALL), method)(X, Y, sample_weight=missing, **kwargs)
    clf = GpunnClassifier(**SMALL).fit(X, Y)
    with pytest.raises(ValueError, match=r"^X: expected a data file or folder"):
        clf.predict(missing)


def test_y_as_a_path_trains_as_y_in_memory(tmp_path):
    x_path, y_path = _npy(tmp_path, "X", X), _npy(tmp_path, "y", Y)
    from_path = GpunnClassifier(**SMALL).fit(x_path, y_path)
    in_memory = GpunnClassifier(**SMALL).fit(x_path, Y)
    np.testing.assert_array_equal(from_path.model_.params.host(), in_memory.model_.params.host())


def test_a_streamed_regressor_takes_two_target_columns(tmp_path):
    Y2 = np.column_stack([X[:, 0], X[:, 1]])
    reg = GpunnRegressor(**SMALL).fit(_npy(tmp_path, "X", X), Y2)
    assert reg.predict(X).shape == (30, 2)


def test_a_streamed_refit_drops_the_feature_names_of_a_dataframe(tmp_path):
    pandas = pytest.importorskip("pandas")
    clf = GpunnClassifier(**SMALL).fit(pandas.DataFrame(X, columns=["a", "b", "c"]), Y)
    assert clf.feature_names_in_.tolist() == ["a", "b", "c"]
    clf.fit(_npy(tmp_path, "X", X), Y)
    assert not hasattr(clf, "feature_names_in_")


def test_streamed_early_stopping_may_leave_a_single_training_row(tmp_path):
    x = RNG.normal(size=(10, 3))
    reg = GpunnRegressor(**dict(SMALL, early_stopping=True, validation_fraction=0.9))
    reg.fit(_npy(tmp_path, "X", x), x[:, 0])  # 9 rows held out, 1 trains
    assert reg.n_iter_ >= 1
