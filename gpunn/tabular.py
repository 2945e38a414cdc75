"""Your own data for the command line (read by :mod:`gpunn.tabular_read`): infer the task,
encode labels, and fold the CLI's feature (and target) scaling into a trained model so that
the saved file takes raw rows.

Folding: with standardized inputs ``x' = (x - mean) / std``, the first layer computes
``x' W + b = x (W / std[:, None]) + (b - (mean / std) W)``, so a model whose first layer holds
those values computes the same outputs from raw ``x``. A standardized regression target
``y' = (y - mean) / std`` folds into the last layer the same way: ``W std``, ``b std + mean``.
The statistics are also kept in the checkpoint's ``extra`` metadata, for the record.
"""

import csv
import io
import re
import sys

import numpy as np

from gpunn._checks import check_choice
from gpunn._files import atomic_write

TASKS = ("auto", "classification", "regression")
# Integer-valued targets with at most this many distinct values count as class labels.
MAX_AUTO_CLASSES = 20


def infer_task(y, task="auto"):
    """``"classification"`` or ``"regression"``: as given, or inferred from the targets.

    Inferred: text labels, or integer values with at most ``MAX_AUTO_CLASSES`` distinct ones,
    are classes; other numbers are a regression target. Text that is all numbers (a CSV column
    writing ``3`` and ``3.0``) is inferred from its numbers.
    """
    task = check_choice("--task", task, TASKS)
    if task != "auto":
        return task
    numbers = as_numbers(y)
    if numbers is None:
        return "classification"
    integral = bool(np.all(numbers == np.round(numbers)))
    return "classification" if integral and len(np.unique(y)) <= MAX_AUTO_CLASSES \
        else "regression"


def as_numbers(y):
    """``y`` as finite numbers (itself when numeric, text parsed as by ``float``), or None
    when some label is not a finite number."""
    if y.dtype.kind in "biuf":
        return y
    try:
        numbers = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return numbers if np.isfinite(numbers).all() else None


def encode_labels(y):
    """``(classes, codes)``: the sorted distinct labels (JSON-ready) and ``y`` as 0..K-1."""
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"target: expected at least 2 classes, got {len(classes)}")
    labels = [_plain(c) for c in classes.tolist()]
    return labels, codes.astype(np.int64)


def _plain(value):
    """Integral floats as ints, so labels read back as written (``3``, not ``3.0``), where
    that is exact: past 2**53 a float stays one (``1e+23``, not the int it rounded to)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2.0 ** 53:
        return int(value)
    return value


def fold_scaling(model, input_mean, input_std, target_mean=None, target_std=None):
    """A copy of ``model`` that takes raw inputs (and gives raw targets): see the module doc.

    Args:
        model: trained on ``(x - input_mean) / input_std`` (and targets scaled likewise).
        input_mean, input_std: per-feature statistics.
        target_mean, target_std: per-output statistics of a scaled regression target.

    Returns:
        A new :class:`~gpunn.Sequential` of the same architecture and dtype.
    """
    folded = model.copy()
    params = folded.params.host()
    mean, std = np.asarray(input_mean, np.float64), np.asarray(input_std, np.float64)
    _fold(params, folded.param_ranges, 0, lambda W, b: (W / std[:, None], b - (mean / std) @ W))
    if target_mean is not None:
        t_mean, t_std = np.asarray(target_mean, np.float64), np.asarray(target_std, np.float64)
        _fold(params, folded.param_ranges, len(folded.layers) - 1,
              lambda W, b: (W * t_std, b * t_std + t_mean))
    folded.params.load_host(params)
    return folded


def _fold(params, ranges, i, change):
    """Replace layer ``i``'s ``W``, ``b`` in the host ``params`` by ``change(W, b)``, computed
    in float64 and rounded to the parameters' dtype."""
    ranges = {name: (start, stop) for name, start, stop in ranges}
    (w_start, w_stop), (b_start, b_stop) = ranges[f"W{i}"], ranges[f"b{i}"]
    n_out = b_stop - b_start
    W = params[w_start:w_stop].astype(np.float64).reshape(-1, n_out)
    W, b = change(W, params[b_start:b_stop].astype(np.float64))
    params[w_start:w_stop], params[b_start:b_stop] = W.ravel(), b


def write_predictions(path, columns):
    """Write ``{name: values}`` as CSV to ``path`` atomically (a full disk keeps the previous
    file), or to stdout for None.

    Args:
        path: a file path, a :class:`gpunn._files.Target` checked before the work, or None.
        columns: ``{name: values}``, all of one length.
    """
    names = list(columns)
    rows = zip(*(columns[name] for name in names))
    if path is None:
        _write_rows(sys.stdout, names, rows)
        return

    def write(binary):
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        _write_rows(text, names, rows)
        text.flush()
        text.detach()  # the binary file stays open for atomic_write to fsync

    atomic_write(path, write, name="--out")


def _write_rows(file, names, rows):
    writer = csv.writer(file)
    writer.writerow([neutralize_formula(name) for name in names])
    for row in rows:
        writer.writerow([_format(v) for v in row])


# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# ... except a plain signed number (a label "-1" is a number to a spreadsheet, not a formula).
_SIGNED_NUMBER = re.compile(r"[+-]([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def neutralize_formula(cell):
    """A text cell a spreadsheet would run as a formula (it starts with ``= + - @``, a tab or
    a carriage return, and is not a plain signed number such as ``-1``), with a single quote
    put before it, as OWASP recommends; any other value (numbers included) as it is."""
    if isinstance(cell, (str, np.str_)) and cell.startswith(FORMULA_STARTS) \
            and not _SIGNED_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def _format(value):
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return neutralize_formula(value)
