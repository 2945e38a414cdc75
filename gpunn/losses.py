"""Losses fused with the output activation: one kernel writes per-element terms and dL/dZ.

Every loss is a mean, as PyTorch's default ``reduction="mean"``:

- ``bce`` (``BCEWithLogitsLoss``): sigmoid + binary cross-entropy from the logits ``z``,
  ``max(z, 0) - z y + log1p(exp(-|z|))``, averaged over all ``n * n_out`` elements;
  gradient ``(sigmoid(z) - y) / (n * n_out)``. Targets are 0/1.
- ``cross_entropy`` (``CrossEntropyLoss``): softmax + cross-entropy by log-sum-exp,
  ``lse(z) - z_y``, averaged over the ``n`` rows; gradient ``(softmax(z) - onehot(y)) / n``.
  Targets are integer labels in ``[0, n_out)`` or one-hot rows ``(n, n_out)``.
- ``mse`` (``MSELoss``): ``(z - y)^2`` averaged over all elements; gradient
  ``2 (z - y) / (n * n_out)``.

With per-row weights (``sample_weight``, ``class_weight``: :mod:`gpunn.weights`) each mean
becomes the weighted mean over the rows of a batch, ``sum_i w_i l_i / sum_i w_i`` (``l_i`` the
row's term, or the mean of its elements for bce and mse), as ``CrossEntropyLoss(weight=...)``
and scikit-learn's ``MLPClassifier.fit(sample_weight=...)``; gradients alike.

A loss kernel writes per-element (per-row for cross-entropy) terms and dL/dZ, each row's times
its weight ``W[row]`` (ones when unweighted; the weights rescaled to mean 1 over the batch when
weighted, so the same scale gives the weighted mean); their SUM is formed on the device (a GEMV
with a ones vector, see ``Sequential.loss_pass``) and the mean is that sum times
:meth:`Loss.scale`, taken on the host when the value is read.
"""

import numpy as np

from gpunn._checks import as_host_array, as_labels, check_choice, choice_key, finite_as

# Output activations a model may fuse into its loss; None is a plain (regression) output.
OUTPUTS = (None, "sigmoid", "softmax")
LOSSES = {}


class Loss:
    """Base class; a subclass with a ``name`` registers itself for :func:`get_loss`."""

    name = None
    output = None  # the output activation the loss applies to the model's last layer

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name is not None:
            LOSSES[cls.name] = cls

    def __repr__(self):
        return f"{type(self).__name__}()"

    def scale(self, n, n_out):
        """Factor turning the sum of the terms of ``n`` rows into the mean: ``1 / (n n_out)``."""
        return 1.0 / (n * n_out)

    def buffer_specs(self, n_out, dtype):
        """Per-row shapes and dtypes of the loss's workspace arrays; ``terms`` holds what is
        summed into the loss."""
        return {"terms": ((n_out,), dtype)}

    def targets(self, y, n, n_out, dtype):
        """``y`` checked for ``n`` rows and converted to the target array the kernel reads."""
        y = as_host_array("y", y, ndim=(1, 2))
        if y.ndim == 1 and n_out == 1:
            y = y.reshape(-1, 1)
        if y.shape != (n, n_out):
            raise ValueError(f"y: expected shape ({n}, {n_out}) for loss {self.name!r} "
                             f"(one row per row of X, one column per output), got {y.shape}")
        return finite_as("y", y, dtype)

    def forward_backward(self, be, Z, T, W, scale, dZ, buffers):
        """One kernel: the loss terms times the row weights ``W`` into ``buffers["terms"]``,
        ``W * dL/dZ * scale`` into ``dZ``."""
        raise NotImplementedError

    def predictions(self, Z):
        """What ``predict`` returns for the host float64 outputs ``Z``: here ``Z`` itself."""
        return Z

    def probabilities(self, Z):
        """Host probabilities of the output activation for the float64 logits ``Z``."""
        raise ValueError(f"loss {self.name!r} applies no output activation: no probabilities")


class BinaryCrossEntropy(Loss):
    """Sigmoid + binary cross-entropy from logits, mean over all elements; targets 0/1."""

    name = "bce"
    output = "sigmoid"

    def targets(self, y, n, n_out, dtype):
        T = super().targets(_numeric_labels(y, "bce"), n, n_out, dtype)
        if not bool(((T == 0) | (T == 1)).all()):
            bad = T[(T != 0) & (T != 1)]
            raise ValueError(f"y: expected binary targets 0/1 for loss 'bce', got "
                             f"{bad.size} other values, e.g. {float(bad.ravel()[0])!r}; "
                             f"{_LABEL_HINT}")
        return T

    def forward_backward(self, be, Z, T, W, scale, dZ, buffers):
        be.kernel("bce_logits", Z, T, W, Z.shape[1], scale, buffers["terms"], dZ)

    def predictions(self, Z):
        """1 where the probability exceeds 0.5 (z > 0); a vector for one output unit."""
        labels = (Z > 0).astype(np.int64)
        return labels[:, 0] if Z.shape[1] == 1 else labels

    def probabilities(self, Z):
        return np.exp(-np.logaddexp(0.0, -Z))


class CrossEntropy(Loss):
    """Softmax + cross-entropy over ``n_out`` classes, mean over rows; integer labels.

    The labels are stored in the model's float dtype on the device (exact below 2^24 classes),
    so a batch gathers them with the same kernel as its inputs.
    """

    name = "cross_entropy"
    output = "softmax"

    def scale(self, n, n_out):
        return 1.0 / n

    def buffer_specs(self, n_out, dtype):
        return {"terms": ((), dtype)}

    def targets(self, y, n, n_out, dtype):
        """Integer labels in ``[0, n_out)`` as given, or one-hot rows ``(n, n_out)``."""
        y = _numeric_labels(y, "cross_entropy")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim == 2 and y.shape == (n, n_out) and _is_one_hot(y):
            return np.argmax(y, axis=1).astype(dtype)
        if y.shape != (n,):
            raise ValueError(f"y: expected shape ({n},) of class labels for loss "
                             f"'cross_entropy', got {y.shape}" +
                             (" that are not one-hot rows (a single 1 per row, zeros elsewhere)"
                              if y.ndim == 2 and y.shape == (n, n_out) else ""))
        try:
            labels = as_labels("y", y, n_out, context=" for loss 'cross_entropy'")
        except ValueError as exc:
            if "expected labels in" not in str(exc):
                raise
            raise ValueError(f"{exc}; {_LABEL_HINT}") from None
        return labels.astype(dtype)

    def forward_backward(self, be, Z, T, W, scale, dZ, buffers):
        be.kernel("softmax_xent", Z, T, W, Z.shape[1], scale, buffers["terms"], dZ)

    def predictions(self, Z):
        """The most probable class of every row."""
        return np.argmax(Z, axis=1)

    def probabilities(self, Z):
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        return E / E.sum(axis=1, keepdims=True)


class MeanSquaredError(Loss):
    """Squared error, mean over all elements; targets shaped like the output."""

    name = "mse"
    output = None

    def forward_backward(self, be, Z, T, W, scale, dZ, buffers):
        be.kernel("mse", Z, T, W, Z.shape[1], scale, buffers["terms"], dZ)


DEFAULT_LOSS = {"sigmoid": "bce", "softmax": "cross_entropy", None: "mse"}
_LABEL_HINT = ("map other labels to 0..K-1 first (numpy.unique(y, return_inverse=True)), or "
               "use gpunn.GpunnClassifier, which accepts labels of any type")


def _numeric_labels(y, loss):
    """``y`` as a host array; labels that are not numbers get a hint on how to map them."""
    try:
        return as_host_array("y", y, ndim=(1, 2))
    except TypeError as exc:
        raise TypeError(f"{exc} for loss {loss!r}; {_LABEL_HINT}") from None


def _is_one_hot(y):
    return bool(((y == 0) | (y == 1)).all() and (y.sum(axis=1) == 1).all())


def check_output(output):
    """``output`` (None, ``"sigmoid"`` or ``"softmax"``, case-insensitive) or ValueError."""
    key = choice_key(output)
    if key not in OUTPUTS:
        raise ValueError(f"output: expected None, 'sigmoid' or 'softmax', got {output!r}")
    return key


def get_loss(loss, model=None):
    """A loss object by name (``"bce"``, ``"cross_entropy"``, ``"mse"``) or as given.

    Args:
        loss: name, :class:`Loss` instance, or None for the default of ``model.output``.
        model: if given, the loss must apply the model's output activation.

    Returns:
        A :class:`Loss`.
    """
    if loss is None:
        if model is None:
            raise ValueError("loss: expected a name or a Loss when no model is given, got None")
        loss = DEFAULT_LOSS[model.output]
    if isinstance(loss, str):
        loss = LOSSES[check_choice("loss", loss, LOSSES)]()
    elif not isinstance(loss, Loss):
        raise TypeError(f"loss: expected a name in {sorted(LOSSES)} or a Loss, "
                        f"got {type(loss).__name__}")
    if model is not None and loss.output != model.output:
        raise ValueError(f"loss: expected a loss for output={model.output!r} "
                         f"({DEFAULT_LOSS[model.output]!r}), got {loss.name!r}, which "
                         f"applies output={loss.output!r}")
    return loss
