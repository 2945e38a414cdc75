"""``gpunn train --npy/--parquet``: the data file streamed (:mod:`gpunn.sources`), never loaded
whole, so a file larger than memory trains as ``fit`` streams it.

The targets are a column of the file (``--target``: a ``.npy`` column index or a Parquet column
name, default the last column) or a separate ``--targets`` file of the same rows. One pass
before training reads the file a block at a time: it checks every value is finite and computes
the training rows' feature means and standard deviations (float64, blocks merged by Chan's
formula), and collects the targets (one value a row, held in memory: labels are encoded and the
task inferred from them as for the other formats). Held-out rows are the file's LAST rows, not
a stratified sample: ``--test-size`` of all rows for the final score and ``--val-split`` of the
rest for validation (fit's ``validation_split``), as Keras takes them; shuffle a file sorted by
class first. Features are standardized a chunk at a time as they are read.
"""

import numpy as np

from gpunn import tabular
from gpunn.row_views import MappedRows, RangeRows, blocks, split_columns
from gpunn.sources import open_rows


def _open(args):
    """``(X, y, features, target)``: the feature and target sources of the data file."""
    if args.parquet:
        full = open_rows(args.parquet, argument="--parquet")
        names = list(full.columns)
        target = None if args.targets else (args.target or names[-1])
        if target is not None and target not in names:
            raise ValueError(f"--target: expected a column of {args.parquet!r} {names}, got "
                             f"{target!r}")
        features = [c for c in names if c != target]
        if not features:
            raise ValueError(f"--parquet: expected feature columns besides the target "
                             f"{target!r}, got only it in {args.parquet!r}")
        X = open_rows(args.parquet, columns=features, argument="--parquet")
        y = None if target is None else \
            open_rows(args.parquet, columns=[target], argument="--target")
        return X, y, features, target
    source = open_rows(args.npy, argument="--npy")
    if len(source.shape) != 2:
        raise ValueError(f"--npy: expected a 2-D array of rows, got shape {source.shape}")
    if args.targets:
        if args.target is not None:
            raise ValueError(f"--target: expected no column with --targets (the targets are "
                             f"that file), got {args.target!r}")
        return source, None, [f"x{i}" for i in range(source.shape[1])], None
    try:
        column = source.shape[1] - 1 if args.target is None else int(args.target)
    except ValueError:
        raise ValueError(f"--target: expected a column index for a .npy file, got "
                         f"{args.target!r}") from None
    X, y = split_columns(source, column, "--npy", "--target")
    return X, y, [f"x{i}" for i in range(X.shape[1])], str(column % source.shape[1])


def _targets_file(path, n, flag):
    """The separate ``--targets`` file: one value per row of the data (1-D, or one column)."""
    y = open_rows(path, argument="--targets")
    if len(y.shape) == 2 and y.shape[1] != 1:
        raise ValueError(f"--targets: expected one target per row (a 1-D array or one "
                         f"column), got shape {y.shape} in {path!r}")
    if len(y) != n:
        raise ValueError(f"--targets: expected {n} rows, as {flag} has, got {len(y)} in "
                         f"{path!r}")
    return y


def scan(X, y, n_train, flag, target_flag):
    """One pass over the rows: ``(mean, std, targets)``: the first ``n_train`` rows' feature
    statistics (float64; a zero deviation reads 1) and every row's target; ValueError naming
    ``flag`` (features) or ``target_flag`` (targets) and the row for a NaN/inf value."""
    count, mean, m2, parts = 0, np.zeros(X.shape[1]), np.zeros(X.shape[1]), []
    for start, stop, rows in blocks(X):
        rows = np.asarray(rows, np.float64)
        bad = ~np.isfinite(rows)
        if bad.any():
            row = start + int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(f"{flag}: expected finite values, got {int(bad.sum())} NaN/inf "
                             f"in rows {start} to {stop - 1}, first in row {row}")
        part = np.asarray(y.read(start, stop)).reshape(stop - start)
        if part.dtype.kind == "f" and not np.isfinite(part).all():
            row = start + int(np.flatnonzero(~np.isfinite(part))[0])
            raise ValueError(f"{target_flag}: expected finite targets, got "
                             f"{part[row - start]} in row {row}")
        parts.append(part)
        rows = rows[:max(0, min(stop, n_train) - start)]
        if len(rows):  # Chan et al.: merge this block's mean and squared deviations
            m, block_mean = len(rows), rows.mean(axis=0)
            delta = block_mean - mean
            mean = mean + delta * m / (count + m)
            m2 = m2 + ((rows - block_mean) ** 2).sum(axis=0) + delta ** 2 * count * m / (count + m)
            count += m
    std = np.sqrt(m2 / count)
    std[std == 0] = 1.0
    return mean, std, np.concatenate(parts)


def held_out(n, test_size):
    """Rows of the final test part: the last ``test_size`` of ``n`` (0: none)."""
    if not 0 <= test_size < 1:
        raise ValueError(f"--test-size: expected a fraction in [0, 1), got {test_size}")
    n_test = int(n * test_size)
    if test_size and not 1 <= n_test < n:
        raise ValueError(f"--test-size: expected a fraction leaving rows on both sides, got "
                         f"{test_size} of {n} rows")
    return n_test


def load(args, data_class):
    """The streamed :class:`gpunn.cli_data.Data`: sources for the features (standardized as
    read), targets in memory."""
    flag = "--parquet" if args.parquet else "--npy"
    X, y, features, target = _open(args)
    n = len(X)
    target_flag = "--target"
    if y is None:
        y, target, target_flag = _targets_file(args.targets, n, flag), "target", "--targets"
    n_test = held_out(n, args.test_size)
    mean, std, values = scan(X, y, n - n_test, flag, target_flag)
    task = tabular.infer_task(values, args.task)
    classes = None
    if task == "classification":
        classes, values = tabular.encode_labels(values)

    def standardized(rows):
        return (np.asarray(rows, np.float64) - mean) / std

    def part(start, stop):
        return MappedRows(RangeRows(X, start, stop), standardized, dtype=np.float64)

    data = data_class(args.parquet or args.npy, task, part(0, n - n_test), values[:n - n_test],
                      classes=classes, features=features, target=target)
    if n_test:
        data.X_test, data.y_test = part(n - n_test, n), values[n - n_test:]
    data.input_mean, data.input_std = mean, std
    if task == "regression":
        train = data.y_train.astype(np.float64)
        data.target_mean = np.atleast_1d(train.mean())
        data.target_std = np.atleast_1d(train.std() or 1.0)
        data.y_train = (train - data.target_mean[0]) / data.target_std[0]
        if n_test:
            data.y_test = (data.y_test.astype(np.float64) - data.target_mean[0]) \
                / data.target_std[0]
    return data
