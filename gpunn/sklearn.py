"""scikit-learn estimators: :class:`GpunnClassifier` and :class:`GpunnRegressor`.

Drop-in for ``MLPClassifier`` / ``MLPRegressor`` in a ``Pipeline``, ``cross_val_score`` or
``GridSearchCV``: hyperparameters in ``__init__`` (the same names where the two agree), ``fit``,
``partial_fit``, ``predict``, ``predict_proba``, ``score``. Needs the ``sklearn`` extra
(``pip install 'gpunn[sklearn]'``); ``import gpunn`` does not import scikit-learn.

Stopping follows ``MLPClassifier``: with ``early_stopping=False`` training stops when the
training loss has not improved by ``tol`` for ``n_iter_no_change`` epochs; with
``early_stopping=True`` a stratified (classifier) or random (regressor) ``validation_fraction``
is held out, training stops when its accuracy (classifier) or loss (regressor: the same order
as R^2) has not improved for ``n_iter_no_change`` epochs, and the best epoch's parameters are
kept. Either way at most ``max_iter`` epochs run.
"""

import contextlib
import inspect
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:  # not installed, or older than 1.6 (no validate_data)
    raise ImportError("gpunn.sklearn needs scikit-learn >= 1.6: install the 'sklearn' extra, "
                      "pip install 'gpunn[sklearn]'") from exc

from gpunn._checks import check_bool, check_choice, check_int, check_number, check_positive
from gpunn.backends import use_backend
from gpunn.backends.gemm_precision import check_precision
from gpunn.callbacks import EarlyStopping
from gpunn.layernorm import NORMS
from gpunn.layers import DEFAULT_INIT, check_dropout
from gpunn.model import MLP, Sequential
from gpunn.optim import OPTIMIZERS, get_optimizer
from gpunn.optim.clip import check_clip
from gpunn.sources import RowSource, as_rows, in_memory, is_streamed
from gpunn.train import MAX_EPOCHS
from gpunn.train import fit as gpunn_fit
from gpunn.weights import CLASS_WEIGHTS, check_sample_weight

__all__ = ["GpunnClassifier", "GpunnRegressor"]

_SEED_HIGH = 2**31 - 1
_L2_SOLVERS = ("sgd", "adam", "rmsprop")  # the optimizers whose weight_decay is coupled L2


class _GpunnMLP(BaseEstimator):
    """Shared by the classifier and the regressor: model building, training, pickling."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", solver="adam",
                 learning_rate_init=0.001, batch_size="auto", max_iter=200, shuffle=True,
                 tol=1e-4, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 random_state=None, init=DEFAULT_INIT, schedule=None, dtype="float32",
                 backend=None, verbose=0, norm=None, residual=False, precision="fp32",
                 dropout=0.0, alpha=0.0, clip_norm=None, clip_value=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.init = init
        self.schedule = schedule
        self.dtype = dtype
        self.backend = backend
        self.verbose = verbose
        self.norm = norm
        self.residual = residual
        self.precision = precision
        self.dropout = dropout
        self.alpha = alpha
        self.clip_norm = clip_norm
        self.clip_value = clip_value

    # --- subclass hooks: targets in and predictions out ---------------------------------

    def _encode_targets(self, y, first):
        raise NotImplementedError

    def _output_spec(self):
        """``(n_out, output)`` of the model for the encoded targets."""
        raise NotImplementedError

    def _class_weight(self, incremental):
        """gpunn.fit's ``class_weight`` (keys: class indices), or None: the classifier's."""
        return None

    # --- training ------------------------------------------------------------------------

    def _check_params(self):
        """Refuse a bad hyperparameter by its own name before anything changes (gpunn.fit's
        names, such as ``epochs`` and ``lr``, mean nothing to the caller)."""
        if isinstance(self.solver, str):
            check_choice("solver", self.solver, OPTIMIZERS)
        check_positive("learning_rate_init", self.learning_rate_init)
        check_int("max_iter", self.max_iter, low=1, high=MAX_EPOCHS)
        check_bool("shuffle", self.shuffle)
        check_number("tol", self.tol, low=0.0)
        check_bool("early_stopping", self.early_stopping)
        check_number("validation_fraction", self.validation_fraction, 0.0, 1.0,
                      low_open=bool(self.early_stopping), high_open=True)
        check_int("n_iter_no_change", self.n_iter_no_change, low=1)
        if self.norm is not None:
            check_choice("norm", self.norm, NORMS)
        check_bool("residual", self.residual)
        check_precision(self.precision)
        check_dropout("dropout", self.dropout)
        if check_number("alpha", self.alpha, low=0.0) and self._solver_name() not in _L2_SOLVERS:
            raise ValueError(f"alpha: expected 0 with solver {self._solver_name()!r} (alpha is "
                             f"an L2 penalty, for the solvers {list(_L2_SOLVERS)}), got "
                             f"{self.alpha!r}")
        check_clip("clip_norm", self.clip_norm)
        check_clip("clip_value", self.clip_value)
        self._sizes(1, 1)
        self._batch_size(1)

    @contextlib.contextmanager
    def _unchanged_on_error(self, trained_in_place=False):
        """A fit or partial_fit that raises leaves every attribute as it was (``classes_``,
        ``model_``, ``n_features_in_``, ...), so a failed refit cannot pair new labels with
        the old model. ``trained_in_place``: the existing model trains (partial_fit), so its
        parameters and optimizer state are copied first and put back too."""
        saved = dict(self.__dict__)
        model = saved.get("_model") if trained_in_place else None
        if model is not None:
            params, optimizer_state = model.params.host(), self._optimizer.state_dict()
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            if model is not None:
                model.params.load_host(params)
                self._optimizer.load_state_dict(optimizer_state, model=model)
            raise

    def _backend_context(self):
        return contextlib.nullcontext() if self.backend is None else use_backend(self.backend)

    def _sizes(self, n_features, n_out):
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if np.isscalar(hidden) else list(hidden)
        if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
               for h in hidden):
            raise ValueError(f"hidden_layer_sizes: expected positive integers, "
                             f"got {self.hidden_layer_sizes!r}")
        return [n_features, *(int(h) for h in hidden), n_out]

    def _solver_name(self):
        return self.solver.lower() if isinstance(self.solver, str) else self.solver

    def _l2(self, n_rows):
        """The optimizer keywords of ``alpha``: scikit-learn's penalty ``alpha / 2 ||W||^2``
        per batch, divided by its rows, adds ``alpha W / rows`` to the gradient of the
        weights (not the biases): coupled weight decay ``alpha / batch_size``."""
        if not self.alpha:
            return {}
        return {"weight_decay": float(self.alpha) / self._batch_size(n_rows)}

    def _initialize(self, n_features, n_rows):
        rng = check_random_state(self.random_state)
        self._init_seed, self._fit_seed = (int(s) for s in rng.randint(0, _SEED_HIGH, 2))
        n_out, output = self._output_spec()
        with self._backend_context():
            self._model = MLP(self._sizes(n_features, n_out), activation=self.activation,
                              output=output, dtype=self.dtype, seed=self._init_seed,
                              init=self.init, norm=self.norm, residual=self.residual,
                              precision=self.precision, dropout=self.dropout)
        clip = {k: v for k, v in (("clip_norm", self.clip_norm),
                                  ("clip_value", self.clip_value)) if v is not None}
        self._optimizer = get_optimizer(self.solver, self.learning_rate_init,
                                        **self._l2(n_rows), **clip)
        self._calls = 0

    def _batch_size(self, n):
        if isinstance(self.batch_size, str) and self.batch_size == "auto":
            return min(200, n)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)):
            raise ValueError(f"batch_size: expected 'auto' or a positive integer, "
                             f"got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {self.batch_size}")
        return min(int(self.batch_size), n)

    def _stopper(self):
        if self.early_stopping:
            monitor = "val_accuracy" if self._model.output is not None else "val_loss"
            return EarlyStopping(monitor, patience=self.n_iter_no_change, min_delta=self.tol,
                                 restore_best=True)
        return EarlyStopping("loss", patience=self.n_iter_no_change, min_delta=self.tol)

    def _split(self, X, T, w):
        """``(X, T, w, validation_data)``: the held-out fraction (with its weights ``w``, if
        any) when early stopping; for streamed ``X``, None: fit holds out its last rows."""
        if not self.early_stopping or isinstance(X, RowSource):
            return X, T, w, None
        stratify = T if self._model.output is not None else None
        parts = (X, T) if w is None else (X, T, w)
        try:
            split = train_test_split(*parts, test_size=self.validation_fraction,
                                     stratify=stratify, random_state=self._fit_seed)
        except ValueError as exc:  # its message names test_size, or no parameter
            raise ValueError(f"validation_fraction: expected a held-out part of the "
                             f"{X.shape[0]} rows that early_stopping can use, got "
                             f"{self.validation_fraction} ({exc})") from None
        X, T = split[0], split[2]
        if w is None:
            return X, T, None, (split[1], split[3])
        return X, T, split[4], (split[1], split[3], split[5])

    def _train(self, X, T, epochs, stopper=None, sample_weight=None, incremental=False):
        """Run ``epochs`` epochs of gpunn.fit on the model, continuing its optimizer."""
        X, T, sample_weight, validation = (self._split(X, T, sample_weight) if stopper is not None
                                           else (X, T, sample_weight, None))
        self._calls += 1
        split = (self.validation_fraction if stopper is not None and self.early_stopping
                 and isinstance(X, RowSource) else None)  # streamed: fit holds out the tail
        rows = X.shape[0] - (0 if split is None else int(X.shape[0] * split))
        if not 1 <= rows < X.shape[0] and split is not None:
            raise ValueError(f"validation_fraction: expected a held-out part of the "
                             f"{X.shape[0]} rows that early_stopping can use, got {split}")
        with self._backend_context():
            history = gpunn_fit(
                self._model, X, T, optimizer=self._optimizer, epochs=epochs,
                batch_size=self._batch_size(rows), shuffle=bool(self.shuffle),
                schedule=self.schedule, validation_data=validation,
                seed=(self._fit_seed + self._calls) % _SEED_HIGH,
                callbacks=[] if stopper is None else [stopper], verbose=self.verbose,
                sample_weight=sample_weight, class_weight=self._class_weight(incremental),
                validation_split=split)
        self.history_ = history
        self.loss_curve_ = list(getattr(self, "loss_curve_", [])) + list(history.loss)
        self.loss_ = history.loss[-1]
        self.best_loss_ = min(self.loss_curve_)
        self.n_iter_ = getattr(self, "n_iter_", 0) + len(history.epoch)
        if history.val_loss:
            self.validation_scores_ = list(history.val_accuracy or history.val_loss)
            self.best_validation_score_ = stopper.best
        return history

    def fit(self, X, y, sample_weight=None):
        """Train a new model on ``(X, y)`` for at most ``max_iter`` epochs.

        Args:
            X: ``(n_samples, n_features)`` numbers, or data streamed a chunk at a time as
                :func:`gpunn.fit` streams it (a ``.npy`` or Parquet path, a folder of shards,
                a ``numpy.memmap``, an h5py dataset or zarr array): never loaded whole. Then
                ``early_stopping`` holds out the LAST ``validation_fraction`` of the rows (not
                a stratified sample; fit's ``validation_split``) and shuffling permutes chunks
                and rows within them (:mod:`gpunn.staging`).
            y: labels (classifier, any hashable type) or targets (regressor, 1-D or 2-D); an
                array, or a source as ``X`` (read whole: one value a row).
            sample_weight: a non-negative weight per sample (an array, or a source read
                whole), or None. Each mini-batch's loss is the weighted mean
                ``sum(w l) / sum(w)`` (as ``MLPClassifier``); with ``early_stopping`` the
                held-out samples keep theirs and weight the validation score.

        Returns:
            self.
        """
        self._check_params()
        with self._unchanged_on_error():
            X, y = self._validate(X, y, reset=True)
            sample_weight = check_sample_weight(in_memory(sample_weight, "sample_weight"),
                                                X.shape[0])
            T = self._encode_targets(y, first=True)
            self._class_weight(incremental=False)  # refused before the model is built
            for name in ("loss_curve_", "n_iter_", "validation_scores_",
                         "best_validation_score_"):
                self.__dict__.pop(name, None)
            self._initialize(X.shape[1], X.shape[0])
            stopper = self._stopper()
            self._train(X, T, self.max_iter, stopper, sample_weight)
        if stopper.stopped_epoch == 0:
            warnings.warn(f"{type(self).__name__}: max_iter={self.max_iter} epochs reached and "
                          "the optimization has not converged yet.", ConvergenceWarning,
                          stacklevel=2)
        return self

    def _partial_fit(self, X, y, first, sample_weight=None):
        self._check_params()
        with self._unchanged_on_error(trained_in_place=not first):
            X, y = self._validate(X, y, reset=first)
            sample_weight = check_sample_weight(in_memory(sample_weight, "sample_weight"),
                                                X.shape[0])
            T = self._encode_targets(y, first=first)
            self._class_weight(incremental=True)  # refused before the model is built
            if first:
                self._initialize(X.shape[1], X.shape[0])
            self._train(X, T, 1, sample_weight=sample_weight, incremental=True)
        return self

    def _validate(self, X, y="no_validation", reset=False):
        if is_streamed(X) and not (isinstance(y, str) and y == "no_validation"):
            return self._streamed(X, y, reset)
        kwargs = {"dtype": (np.float64, np.float32), "reset": reset}
        if isinstance(y, str) and y == "no_validation":
            return validate_data(self, X, **kwargs)
        multi = isinstance(self, RegressorMixin)
        return validate_data(self, X, y, multi_output=multi, y_numeric=multi, **kwargs)

    def _streamed(self, X, y, reset):
        """``(X source, y)`` for streamed ``X`` (:mod:`gpunn.sources`): its row shape checked
        as ``validate_data`` checks an array's (``n_features_in_`` set on ``reset``), ``y``
        read whole."""
        X = as_rows(X, "X")
        if len(X.shape) != 2:
            raise ValueError(f"X: expected a 2-D array of rows, got shape {X.shape}")
        if reset:
            self.n_features_in_ = X.shape[1]
            self.__dict__.pop("feature_names_in_", None)
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X: expected {self.n_features_in_} features, as in the first "
                             f"fit, got {X.shape[1]}")
        y = np.asarray(in_memory(y, "y"))
        if y.ndim not in (1, 2) or len(y) != len(X):
            raise ValueError(f"y: expected {len(X)} rows, as X has, got shape {y.shape}")
        return X, y

    def _outputs(self, X, probabilities):
        check_is_fitted(self, "_model")
        if is_streamed(X):  # predicted a block at a time (Sequential.predict)
            X = as_rows(X, "X")
            if X.shape[1:] != (self.n_features_in_,):
                raise ValueError(f"X: expected rows of {self.n_features_in_} features, as in "
                                 f"fit, got shape {X.shape}")
        else:
            X = self._validate(X)
        with self._backend_context():
            if probabilities:
                return self._model.predict_proba(X)
            return self._model.predict(X)

    # --- pickling: the model as its config and host parameters ----------------------------

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: the estimator keeps its model
        model = state.pop("_model", None)
        if model is not None:
            state["_model_config"] = model.config()
            state["_model_params"] = model.params.host()
        optimizer = state.pop("_optimizer", None)
        if optimizer is not None:
            state["_optimizer_state"] = optimizer.state_dict()
        return state

    def __setstate__(self, state):
        state = dict(state)
        config, params = state.pop("_model_config", None), state.pop("_model_params", None)
        optimizer_state = state.pop("_optimizer_state", None)
        super().__setstate__(state)
        if config is None:
            return
        with self._backend_context():
            model = Sequential.from_config(config)
        model.params.load_host(params)
        self._model = model
        if optimizer_state is not None:
            optimizer = get_optimizer(optimizer_state["name"], optimizer_state["base_lr"],
                                      **optimizer_state["hyperparameters"])
            optimizer.load_state_dict(optimizer_state, model=model)
            self._optimizer = optimizer

    @property
    def model_(self):
        """The trained :class:`~gpunn.MLP` (raises NotFittedError before ``fit``)."""
        check_is_fitted(self, "_model")
        return self._model


class GpunnClassifier(ClassifierMixin, _GpunnMLP):
    """MLP classifier trained by gpunn (GPU via CuPy, or the CPU), scikit-learn compatible.

    Labels may be of any type (strings, 1..10, ...): ``classes_`` holds them sorted. Two
    classes train one sigmoid unit (binary cross-entropy), more a softmax. ``predict_proba``
    is ``(n, n_classes)``, binary included.

    Args:
        hidden_layer_sizes: units of the hidden layers, e.g. ``(100,)`` or ``(64, 64)``.
        activation: a gpunn hidden activation: ``"relu"``, ``"leaky_relu"``, ``"gelu"``,
            ``"gelu_tanh"``, ``"silu"``, ``"tanh"``, ``"sigmoid"`` or ``"identity"``.
        solver: gpunn optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, ``"momentum"``,
            ``"rmsprop"``.
        learning_rate_init: learning rate.
        batch_size: ``"auto"`` (``min(200, n_samples)``) or rows per mini-batch (clipped to
            n_samples).
        max_iter: most epochs per ``fit``.
        shuffle: reshuffle the rows every epoch.
        tol, n_iter_no_change: stop when the monitored value has not improved by ``tol`` for
            ``n_iter_no_change`` epochs (see the module docstring).
        early_stopping, validation_fraction: hold out a stratified fraction to monitor.
        random_state: int, RandomState or None: seeds of the initialization and shuffling.
        init: weight initialization (``gpunn.layers.INITS``).
        schedule: a gpunn learning-rate schedule name or object, or None.
        dtype: ``"float32"`` or ``"float64"`` (parameters and computation).
        backend: ``None`` (gpunn's current choice), ``"auto"``, ``"cpu"`` or ``"cuda"``.
        verbose: 0, 1 or 2, as in :func:`gpunn.fit`.
        norm: None or ``"layer"``: LayerNorm on the input of every layer after the first.
        residual: hidden layers after the first as pre-norm residual blocks (equal
            ``hidden_layer_sizes``, at least two); see :class:`gpunn.MLP`.
        precision: what the GEMMs compute in, ``"fp32"``, ``"tf32"`` or ``"bf16"`` (float32
            only; see :class:`gpunn.Sequential`).
        class_weight: None, ``"balanced"`` (``n_samples / (n_classes * bincount(y))``, as
            scikit-learn) or a dict ``{label: weight}`` (labels not listed weigh 1). It
            multiplies ``sample_weight`` in training; the validation score of
            ``early_stopping`` uses ``sample_weight`` only. ``partial_fit`` takes a dict only:
            "balanced" needs all of ``y`` at once.
        alpha: L2 penalty with scikit-learn's meaning (``alpha / 2 ||W||^2`` per mini-batch,
            divided by its rows; weights only, not biases): coupled ``weight_decay = alpha /
            batch_size`` for the solvers sgd, adam and rmsprop (the last, partial batch uses
            the full batch's divisor). Default 0, not scikit-learn's 1e-4: gpunn's estimators
            trained without a penalty before this option. ``History.loss`` and ``loss_`` are
            the data loss, without the penalty term scikit-learn adds.
        dropout: drop probability of every hidden layer's outputs while training (inverted
            dropout, as Keras' ``Dropout(rate)`` after each hidden ``Dense``; scikit-learn's
            MLP has none); the masks are seeded by ``random_state``. 0 (default): none.
        clip_norm, clip_value: clip the gradient of every step to this global norm
            (PyTorch's ``clip_grad_norm_``) / clamp its entries to ``[-clip_value,
            clip_value]`` (``clip_grad_value_``), on the device before the update; None
            (default): no clipping. See :mod:`gpunn.optim.clip`.

    Attributes:
        classes_, n_features_in_, n_iter_, loss_, loss_curve_, best_loss_, history_ (the
        last gpunn History), model_ (the gpunn MLP), validation_scores_ and
        best_validation_score_ (accuracy) with early stopping.
    """

    def __init__(self, *args, class_weight=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weight = class_weight

    # scikit-learn reads the hyperparameters from the signature: the shared ones and this one.
    __init__.__signature__ = inspect.signature(_GpunnMLP.__init__).replace(parameters=[
        *inspect.signature(_GpunnMLP.__init__).parameters.values(),
        inspect.Parameter("class_weight", inspect.Parameter.KEYWORD_ONLY, default=None)])

    def _class_weight(self, incremental):
        """``class_weight`` with the class indices gpunn.fit's labels are as keys."""
        weights = self.class_weight
        if weights is None:
            return None
        if isinstance(weights, str):
            check_choice("class_weight", weights, CLASS_WEIGHTS)
            if incremental:
                raise ValueError("class_weight: expected a dict in partial_fit ('balanced' "
                                 "needs all of y at once; compute it once, e.g. with "
                                 "sklearn.utils.class_weight.compute_class_weight), got "
                                 "'balanced'")
            return weights
        if not isinstance(weights, dict):
            raise TypeError(f"class_weight: expected None, 'balanced' or a dict {{label: "
                            f"weight}}, got {type(weights).__name__}")
        classes = set(self.classes_.tolist())
        unknown = [k for k in weights if k not in classes]
        if unknown:
            raise ValueError(f"class_weight: expected keys among classes_ "
                             f"{self.classes_.tolist()}, got {unknown!r}")
        return {int(np.searchsorted(self.classes_, k)): v for k, v in weights.items()}

    def _encode_targets(self, y, first):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first:
            classes = np.unique(y) if getattr(self, "_pending_classes", None) is None \
                else self._pending_classes
            if len(classes) < 2:
                raise ValueError(f"y: expected samples of at least 2 classes, got 1 class "
                                 f"({classes[0]!r})")
            self.classes_ = classes
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if unseen.size:
            raise ValueError(f"y: expected labels among classes_ {self.classes_.tolist()}, "
                             f"got {unseen.tolist()}")
        return np.searchsorted(self.classes_, y)

    def _output_spec(self):
        k = len(self.classes_)
        return (1, "sigmoid") if k == 2 else (k, "softmax")

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch on ``(X, y)``; the first call needs ``classes`` (all labels to expect).
        ``sample_weight`` as in :meth:`fit`.

        Returns:
            self.
        """
        first = not hasattr(self, "_model")
        if first:
            if classes is None:
                raise ValueError("classes: expected every label of the problem on the first "
                                 "call to partial_fit, got None")
            self._pending_classes = np.unique(column_or_1d(classes))
        try:
            return self._partial_fit(X, y, first, sample_weight)
        finally:
            self.__dict__.pop("_pending_classes", None)

    def predict_proba(self, X):
        """Class probabilities, ``(n_samples, n_classes)`` in the order of ``classes_``."""
        P = self._outputs(X, probabilities=True)
        return np.hstack([1.0 - P, P]) if len(self.classes_) == 2 else P

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable label of every row, of the type of ``classes_``."""
        P = self.predict_proba(X)
        return self.classes_[np.argmax(P, axis=1)]


class GpunnRegressor(RegressorMixin, _GpunnMLP):
    """MLP regressor (mean squared error) trained by gpunn, scikit-learn compatible.

    ``y`` may be 1-D (``predict`` returns 1-D) or 2-D for several outputs. Arguments as for
    :class:`GpunnClassifier` (but ``class_weight``); with ``early_stopping`` the validation
    loss is monitored.
    """

    def _encode_targets(self, y, first):
        y = np.asarray(y, dtype=np.float64)
        if first:
            self._y_ndim = y.ndim
            self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        elif (1 if y.ndim == 1 else y.shape[1]) != self.n_outputs_:
            raise ValueError(f"y: expected {self.n_outputs_} target columns, got shape "
                             f"{y.shape}")
        return y.reshape(len(y), -1)

    def _output_spec(self):
        return self.n_outputs_, None

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch on ``(X, y)``, continuing the model and its optimizer state;
        ``sample_weight`` as in :meth:`fit`.

        Returns:
            self.
        """
        return self._partial_fit(X, y, not hasattr(self, "_model"), sample_weight)

    def predict(self, X):
        """Predicted targets: ``(n_samples,)`` when fitted on 1-D ``y``, else 2-D."""
        Y = self._outputs(X, probabilities=False)
        return Y[:, 0] if self._y_ndim == 1 else Y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
