"""Per-row loss weights: ``sample_weight`` and ``class_weight`` checked, combined, rescaled.

A row's weight is ``sample_weight[i] * class_weight[y_i]`` (either alone when the other is
not given), as scikit-learn's classifiers combine them. The loss of a batch is the weighted
mean ``sum_i w_i l_i / sum_i w_i`` over its rows, as PyTorch's
``CrossEntropyLoss(weight=...)`` (``reduction="mean"``) and scikit-learn's
``MLPClassifier.fit(sample_weight=...)``: scaling every weight by the same factor changes
nothing, and unit weights give the plain mean. (Keras divides by the number of rows instead,
so there doubling every weight doubles the gradient.) A batch whose weights are all zero
contributes a zero loss and gradient.

The kernels take one weight per row and the loss's usual scale (``1 / rows``); so the host
rescales each batch's weights to mean 1 (:func:`batch_rescaled`) whenever the batches change
(once per epoch, with the shuffle), and the step gathers them with its rows. Nothing per step.
"""

import numbers

import numpy as np

from gpunn._checks import as_host_array, check_choice

CLASS_WEIGHTS = ("balanced",)


def check_sample_weight(sample_weight, n, name="sample_weight"):
    """``sample_weight`` as float64 of shape ``(n,)``: finite, non-negative, not all zero.

    Args:
        sample_weight: array-like of ``n`` numbers, or None.
        n: rows of the data it weights.
        name: the argument's name in messages.

    Returns:
        A float64 NumPy array, or None for None.
    """
    if sample_weight is None:
        return None
    w = as_host_array(name, sample_weight, ndim=1)
    w = np.asarray(w.get() if hasattr(w, "get") and not isinstance(w, np.ndarray) else w,
                   dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{name}: expected {n} weights (one per row of X), got {w.shape[0]}")
    return _check_values(name, w)


def _check_values(name, w):
    bad = ~np.isfinite(w)
    if bad.any():
        raise ValueError(f"{name}: expected finite weights, got {int(bad.sum())} NaN/inf, "
                         f"first at index {int(np.flatnonzero(bad)[0])}")
    if (w < 0).any():
        first = int(np.flatnonzero(w < 0)[0])
        raise ValueError(f"{name}: expected non-negative weights, got {float(w[first])!r} at index "
                         f"{first}")
    if not (w > 0).any():
        raise ValueError(f"{name}: expected at least one positive weight, got all zeros "
                         "(nothing would be learned)")
    return w


def class_weights(class_weight, labels, n_classes):
    """The weight of each class ``0..n_classes-1`` for integer ``labels``.

    Args:
        class_weight: ``"balanced"`` (scikit-learn's ``n_samples / (n_classes *
            bincount(y))``, ``n_classes`` counting the classes present; an absent class gets
            1, it weights no row) or a dict ``{class: weight}`` (classes not listed weigh 1).
        labels: integer labels of the rows, in ``[0, n_classes)``.
        n_classes: number of classes.

    Returns:
        A float64 array of ``n_classes`` weights.
    """
    if isinstance(class_weight, str):
        check_choice("class_weight", class_weight, CLASS_WEIGHTS)
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        present = counts > 0
        weights = np.ones(n_classes)
        weights[present] = labels.size / (present.sum() * counts[present])
        return weights
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight: expected 'balanced' or a dict {{class: weight}}, got "
                        f"{type(class_weight).__name__}")
    weights = np.ones(n_classes)
    unknown = [k for k in class_weight if isinstance(k, (bool, np.bool_))
               or not isinstance(k, numbers.Integral) or not 0 <= k < n_classes]
    if unknown:
        raise ValueError(f"class_weight: expected keys among the classes 0..{n_classes - 1}, "
                         f"got {unknown!r}")
    for k, value in class_weight.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"class_weight[{k!r}]: expected a number, got "
                            f"{type(value).__name__}")
        weights[int(k)] = float(value)
    _check_values("class_weight", weights)
    return weights


def row_weights(sample_weight, class_weight, T, loss, n_out):
    """Each row's weight from ``sample_weight`` and ``class_weight``, or None for neither.

    Args:
        sample_weight: per-row weights (see :func:`check_sample_weight`) or None.
        class_weight: see :func:`class_weights`, or None. Needs one label per row: the
            ``cross_entropy`` loss, or ``bce`` with one output.
        T: the host targets as the loss prepared them (labels for cross-entropy).
        loss: the loss object.
        n_out: the model's outputs.

    Returns:
        A float64 array of one weight per row, or None.
    """
    n = T.shape[0]
    weights = check_sample_weight(sample_weight, n)
    if class_weight is None:
        return weights
    if loss.name == "cross_entropy":
        labels, n_classes = T.reshape(n).astype(np.int64), n_out
    elif loss.name == "bce" and n_out == 1:
        labels, n_classes = T.reshape(n).astype(np.int64), 2
    else:
        raise ValueError(f"class_weight: expected a loss with one class label per row "
                         f"('cross_entropy', or 'bce' with 1 output), got {loss.name!r} with "
                         f"{n_out} outputs")
    per_row = class_weights(class_weight, labels, n_classes)[labels]
    weights = per_row if weights is None else weights * per_row
    if not (weights > 0).any():
        raise ValueError("class_weight: expected at least one row of positive weight, got "
                         "all zeros once combined with sample_weight")
    return weights


def batch_rescaled(weights, order, batch):
    """``weights`` rescaled to mean 1 over each batch of ``batch`` rows of ``order`` (a batch
    of zero weights stays zero), indexed by row like ``weights``: the kernels' ``W``.

    Args:
        weights: float64 weight of every row.
        order: the rows in the order the batches take them (a permutation).
        batch: rows per batch (the last batch may be smaller).
    """
    w = weights[order]
    starts = np.arange(0, w.size, batch)
    sums = np.add.reduceat(w, starts)
    rows = np.diff(np.append(starts, w.size)).astype(np.float64)
    factors = np.divide(rows, sums, out=np.zeros_like(sums), where=sums > 0)
    rescaled = np.empty_like(w)
    rescaled[order] = w * np.repeat(factors, rows.astype(np.int64))
    return rescaled
