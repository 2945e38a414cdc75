"""The data side of ``gpunn train`` and ``gpunn predict``: load, split, scale, save, predict.

What ``train`` learns about the data (feature names, the target, the task, the label classes,
the scaling statistics) goes into the checkpoint's ``extra`` metadata under ``"gpunn_cli"``;
the scaling is also folded into the saved model (:func:`gpunn.tabular.fold_scaling`), so the
file predicts from raw rows with ``gpunn predict`` and with ``gpunn.load(path).predict``.
"""

import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import numpy as np

from gpunn import cli_stream, datasets, tabular, tabular_read
from gpunn.sources import RowSource

META_KEY = "gpunn_cli"


@dataclass
class Data:
    """Training data after the CLI's preprocessing, and what is needed to undo it."""

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray = None
    y_test: np.ndarray = None
    features: list = field(default_factory=list)
    target: str = None
    classes: list = None
    input_mean: np.ndarray = None
    input_std: np.ndarray = None
    target_mean: np.ndarray = None
    target_std: np.ndarray = None

    def output_spec(self):
        """``(n_out, output)`` of the model for this task."""
        if self.task == "regression":
            return 1, None
        return (1, "sigmoid") if len(self.classes) == 2 else (len(self.classes), "softmax")

    def describe(self):
        """One line: rows, features, classes or target."""
        test = "" if self.X_test is None else f" / {len(self.X_test)} test"
        what = (f"{len(self.classes)} classes" if self.task == "classification"
                else f"regression of {self.target!r}")
        return (f"{self.name}, {len(self.X_train)} train{test} rows, "
                f"{self.X_train.shape[1]} features, {what}")

    def scores(self, model):
        """Accuracy (classes) or R^2 and RMSE in the target's units (regression)."""
        parts = [("train", self.X_train, self.y_train)]
        if self.X_test is not None:
            parts.append(("test", self.X_test, self.y_test))
        words = []
        for label, X, y in parts:
            predicted = model.predict(X)  # a streamed source a block at a time
            if self.task == "classification":
                words.append(f"{label} accuracy {np.mean(predicted == y):.4f}")
            else:
                p, t = (np.ravel(a) * self.target_std[0] + self.target_mean[0]
                        for a in (predicted, y))
                r2 = 1 - np.sum((t - p) ** 2) / max(np.sum((t - t.mean()) ** 2), 1e-300)
                rmse = np.sqrt(np.mean((t - p) ** 2))
                words.append(f"{label} R2 {r2:.4f}  {label} RMSE {rmse:.4g}")
        return "  ".join(words)

    def metadata(self):
        """The JSON-ready record stored in the checkpoint."""
        def plain(a):
            return None if a is None else np.asarray(a, np.float64).tolist()

        return {"task": self.task, "features": self.features, "target": self.target,
                "classes": self.classes, "input_mean": plain(self.input_mean),
                "input_std": plain(self.input_std), "target_mean": plain(self.target_mean),
                "target_std": plain(self.target_std), "scaling_folded_into_model": True}


def _source(args):
    for kind in ("csv", "npz", "npy", "parquet"):
        if getattr(args, kind, None):
            return getattr(args, kind)
    return None


def load(args):
    """Read, encode, split and standardize the data of ``gpunn train`` into a :class:`Data`."""
    path = _source(args)
    if getattr(args, "targets", None) and not (args.npy or args.parquet):
        raise ValueError(f"--targets: expected with --npy or --parquet (a CSV or .npz holds "
                         f"its targets), got {args.targets!r} with "
                         f"{'--dataset' if path is None else path!r}")
    if args.npy or getattr(args, "parquet", None):
        return cli_stream.load(args, Data)
    if path is None:
        name = args.dataset or "digits"
        X, y = datasets.load(name, seed=args.seed)
        features, target, task = [f"x{i}" for i in range(X.shape[1])], "y", "classification"
    else:
        X, y, features, target = tabular_read.read_table(path, args.target)
        name, task = path, tabular.infer_task(y, args.task)
    _check_scalable(X, features)
    data = _split(args, name, task, X, y)
    data.features, data.target = features, target
    return data


def _check_scalable(X, features):
    """Refuse a feature whose mean or spread overflows float64 (values near 1.8e308), by
    name: standardizing it would give inf and then an error about NaN/inf inputs."""
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~(np.isfinite(X.mean(axis=0)) & np.isfinite(X.std(axis=0)))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(f"data: expected feature column {features[j]!r} to have a finite "
                         f"mean and spread in float64, got values up to "
                         f"{float(np.abs(X[:, j]).max()):.4g}; scale it down")


def _split(args, name, task, X, y):
    classes = None
    if task == "classification":
        classes, y = tabular.encode_labels(y)
    elif tabular.as_numbers(y) is None:
        bad = next(label for label in y if tabular.as_numbers(np.array([label])) is None)
        raise ValueError(f"--task regression: expected numeric targets, got values such as "
                         f"{bad!r}")
    else:
        y = tabular.as_numbers(y)
    if args.test_size == 0:
        X_train, X_test, y_train, y_test = X, None, y, None
    else:
        X_train, X_test, y_train, y_test = datasets.train_test_split(
            X, y, args.test_size, args.seed, stratify=task == "classification",
            name="--test-size")
    data = Data(name, task, X_train, y_train, X_test, y_test, classes=classes)
    data.input_mean, data.input_std = X_train.mean(axis=0), X_train.std(axis=0)
    data.input_std[data.input_std == 0] = 1.0
    scaled = datasets.standardize(X_train, *([] if X_test is None else [X_test]))
    data.X_train, data.X_test = scaled[0], (scaled[1] if X_test is not None else None)
    if task == "regression":
        y_train = y_train.astype(np.float64)
        data.target_mean, data.target_std = np.atleast_1d(y_train.mean()), \
            np.atleast_1d(y_train.std() or 1.0)
        data.y_train = (y_train - data.target_mean[0]) / data.target_std[0]
        if y_test is not None:
            data.y_test = (y_test.astype(np.float64) - data.target_mean[0]) / data.target_std[0]
    return data


def validation(args, data, say=print):
    """``(validation_data, validation_split, name, callbacks)`` for fit; holds out
    ``--val-split`` if asked.

    With a validation split the training rows are shuffled (seeded) first and the last
    fraction is held out, so data sorted by class still validates on every class; streamed
    data (:mod:`gpunn.cli_stream`) holds out its last rows (fit's ``validation_split``).
    """
    from gpunn.callbacks import EarlyStopping

    fraction = args.val_split
    if fraction is None and args.early_stopping is not None:
        fraction = 0.1
        say("early stopping: validating on 0.1 of the training rows (--val-split)")
    if fraction is None:
        test = None if data.X_test is None else (data.X_test, data.y_test)
        return test, None, "test", []
    if not 0 < fraction < 1:
        raise ValueError(f"--val-split: expected a fraction in (0, 1), got {fraction}")
    callbacks = []
    if args.early_stopping is not None:
        callbacks.append(EarlyStopping("val_loss", patience=args.early_stopping,
                                       restore_best=True))
    if isinstance(data.X_train, RowSource):
        n_val = int(len(data.X_train) * fraction)
        if not 1 <= n_val < len(data.X_train):
            raise ValueError(f"--val-split: expected a fraction leaving rows on both sides, "
                             f"got {fraction} of {len(data.X_train)} rows")
        return None, fraction, "val", callbacks
    order = np.random.default_rng(args.seed).permutation(len(data.X_train))
    n_val = int(len(order) * fraction)
    if not 1 <= n_val < len(order):
        raise ValueError(f"--val-split: expected a fraction leaving rows on both sides, got "
                         f"{fraction} of {len(order)} rows")
    val, train = order[len(order) - n_val:], order[:len(order) - n_val]
    X_val, y_val = data.X_train[val], data.y_train[val]
    data.X_train, data.y_train = data.X_train[train], data.y_train[train]
    return (X_val, y_val), None, "val", callbacks


def check_save(model, data):
    """Refuse ``--save`` before training if the record of ``data`` (feature names, classes,
    scaling) would not fit the checkpoint's header."""
    from gpunn.checkpoint import check_saveable

    try:
        check_saveable(model, **{META_KEY: data.metadata()})
    except ValueError as exc:
        classes = "" if data.classes is None else f", {len(data.classes)} class labels"
        raise ValueError(f"--save: expected the data's record ({len(data.features)} feature "
                         f"names{classes}) to fit a model file's header, got {exc}; rename "
                         "long columns or labels, or train without --save") from None


def save(path, model, data):
    """Save ``model`` with the scaling folded in and the preprocessing in ``extra``."""
    from gpunn.checkpoint import save_checkpoint

    folded = tabular.fold_scaling(model, data.input_mean, data.input_std,
                                  data.target_mean, data.target_std)
    save_checkpoint(path, folded, **{META_KEY: data.metadata()})


def predict_command(args):
    """``gpunn predict``: the saved model's predictions for the rows of a file, as CSV."""
    from gpunn._files import check_outputs
    from gpunn.backends import use_backend
    from gpunn.checkpoint import load_checkpoint

    inputs = {"--model": args.model, **{f"--{kind}": getattr(args, kind, None)
                                        for kind in ("csv", "npz", "npy")}}
    out = check_outputs({"--out": args.out}, inputs).get("--out")
    if args.out is None and sys.stdout is None:
        raise ValueError("--out: expected a file, or an open stdout to write the predictions "
                         "to, got neither (stdout is closed)")
    if args.backend is not None:
        use_backend(args.backend)
    saved = load_checkpoint(args.model)
    model = saved.model
    meta = _checked_meta(saved.extra.get(META_KEY), model, args.model)
    path = _source(args)
    target = None if meta is None else meta["target"]
    # labels compared as the file writes them (:func:`_accuracy`), not as pandas' numbers
    X, y, features, _ = tabular_read.read_table(
        path, target if not path.endswith(".npy") else "none", require_target=False,
        text_target=meta is not None and meta["classes"] is not None,
        columns=None if meta is None else meta["features"])
    if meta is not None and path.lower().endswith(".csv"):
        X = _select(path, X, features, meta["features"])
    columns = _prediction_columns(model, meta, X)
    tabular.write_predictions(out, columns)
    if args.out is not None:
        print(f"wrote {len(X)} predictions to {args.out}")
        if y is not None and meta is not None and meta["task"] == "classification":
            labels = columns[list(columns)[0]]
            print(f"accuracy {_accuracy(labels, y, meta['classes']):.4f} against column "
                  f"{meta['target']!r}")
    return 0


def _checked_meta(meta, model, path):
    """``gpunn train``'s record in a model file (or None for a file without one), checked
    before it is used: a crafted or damaged record is a CheckpointError naming the field."""
    from gpunn.checkpoint import CheckpointError

    if meta is None:
        return None

    def refuse(field, expected, got):
        raise CheckpointError(f"{path}: {META_KEY}{field}: expected {expected}, got {got!r}")

    if not isinstance(meta, dict):
        refuse("", "a dict (gpunn train's record)", type(meta).__name__)
    for key in ("task", "features", "target", "classes"):
        if key not in meta:
            refuse(f"[{key!r}]", "a value", "nothing")
    if meta["task"] not in ("classification", "regression"):
        refuse("['task']", "'classification' or 'regression'", meta["task"])
    features = meta["features"]
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features) \
            or len(features) != model.n_in:
        refuse("['features']", f"{model.n_in} column names (the model's inputs)", features)
    if meta["target"] is not None and not isinstance(meta["target"], str):
        refuse("['target']", "a column name or None", meta["target"])
    classes, n_classes = meta["classes"], max(model.n_out, 2)
    if classes is not None and (not isinstance(classes, list) or len(classes) != n_classes
                                or not all(isinstance(c, (str, int, float, bool))
                                           for c in classes)):
        refuse("['classes']", f"None or {n_classes} labels (the model's outputs)", classes)
    return meta


def _accuracy(labels, y, classes):
    """The fraction of predicted ``labels`` (of the ``classes`` ``gpunn train`` saved) equal
    to the file's ``y``: as numbers where both are numbers (``7`` equals ``7.0``), else as
    text (a cell that is no class as written is compared stripped of surrounding blanks, as
    training stripped them unless that merged two labels)."""
    if tabular.as_numbers(y) is not None and not any(isinstance(c, str) for c in classes or []):
        return float(np.mean([_same_number(label, cell) for label, cell in zip(labels, y)]))
    known = {str(c) for c in classes or []}
    cells = [cell if cell in known else cell.strip() for cell in map(str, y)]
    return float(np.mean([str(label) == cell for label, cell in zip(labels, cells)]))


def _same_number(label, cell):
    """Whether a number ``cell`` (or the text of one) equals the class ``label`` exactly: text
    as the decimal it writes against an integer label (``9007199254740993.0`` is 2**53 + 1,
    not 2**53), as a float against a float label (the class a float64 column gave)."""
    if isinstance(cell, str):
        if isinstance(label, float):
            return float(cell) == label
        try:
            return Decimal(cell.strip()) == label  # exact, and cheap for any exponent
        except InvalidOperation:
            return float(cell) == label
    if isinstance(cell, (np.integer, int)):
        return int(cell) == label
    return float(cell) == label  # Python compares a float and an int exactly


def _select(path, X, have, want):
    index = {name: i for i, name in enumerate(have)}  # a dict: 100k columns, not 100k^2
    missing = [name for name in want if name not in index]
    if missing:
        shown = ", ".join(repr(name[:60]) for name in missing[:5])
        raise ValueError(f"{path}: expected the model's {len(want)} feature columns, missing "
                         f"{len(missing)}: {shown}{', ...' if len(missing) > 5 else ''}")
    return X[:, [index[name] for name in want]]


def _prediction_columns(model, meta, X):
    name = "prediction" if meta is None or meta["target"] is None else meta["target"]
    if model.output is None:
        Y = model.predict(X)
        return {name: Y[:, 0]} if Y.shape[1] == 1 else \
            {f"{name}_{j}": Y[:, j] for j in range(Y.shape[1])}
    P = model.predict_proba(X)
    if model.output == "sigmoid" and P.shape[1] == 1:
        P = np.hstack([1 - P, P])
    classes = list(range(P.shape[1])) if meta is None or meta["classes"] is None \
        else meta["classes"]
    labels = [classes[k] for k in np.argmax(P, axis=1)]
    return {name: labels, **{f"proba_{c}": P[:, j] for j, c in enumerate(classes)}}


def parse_class_weight(text):
    """``--class-weight``: None, ``"balanced"`` or ``{label text: weight}`` from
    ``LABEL=WEIGHT,...`` (checked before any data is read)."""
    if text is None or text.strip().lower() == "balanced":
        return None if text is None else "balanced"
    weights = {}
    for pair in text.split(","):
        label, sep, value = (part.strip() for part in pair.partition("="))
        try:
            if not (label and sep) or label in weights:
                raise ValueError
            weights[label] = float(value)
        except ValueError:
            raise ValueError(f"--class-weight: expected 'balanced' or LABEL=WEIGHT,... with "
                             f"each label once, such as 3=2.5,7=0.5, got {text!r}") from None
    return weights


def class_weight(parsed, data):
    """fit's ``class_weight`` for ``data``: ``"balanced"``, or the parsed labels' classes."""
    if parsed is None:
        return None
    if data.task != "classification":
        raise ValueError(f"--class-weight: expected a classification task, got {data.task}")
    if parsed == "balanced":
        return parsed
    names = [str(c) for c in data.classes]
    unknown = [label for label in parsed if label not in names]
    if unknown:
        raise ValueError(f"--class-weight: expected labels among the classes {names}, got "
                         f"{unknown}")
    return {names.index(label): weight for label, weight in parsed.items()}
