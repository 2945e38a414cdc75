"""Sequential models of Dense layers over one flat parameter buffer; MLP builds one from sizes."""

import numpy as np

from gpunn.backends import check_dtype, get_backend
from gpunn.checkpoint_write import write_checkpoint
from gpunn.layers import ACTIVATIONS, DEFAULT_INIT, Dense, check_layers, layout
from gpunn.losses import check_output, get_loss
from gpunn.sharing import Shareable, holding_model
from gpunn.validation import check_choice, check_features, check_int
from gpunn.workspace import Workspace

# Offsets of W and b in the flat buffers are multiples of this many elements (>= 128 bytes), so
# every view starts aligned for vectorized BLAS / cuBLAS kernels. Gaps stay zero.
ALIGN = 32
# Rows per chunk when predicting before any workspace exists.
DEFAULT_CHUNK = 1024


class Sequential(Shareable):
    """A stack of :class:`~gpunn.Dense` layers whose parameters share one flat buffer.

    ``flat_params`` holds every ``W`` and ``b`` (each layer's are views into it), ``flat_grads``
    the gradients in the same layout, so one kernel launch updates the whole model. The output
    activation is fused into the loss: with ``output="sigmoid"`` (binary cross-entropy) or
    ``"softmax"`` (cross-entropy) the last layer must be ``"identity"`` and produces logits.

    Args:
        layers: Dense layers, each taking the previous one's ``n_out`` as ``n_in``.
        output: ``None`` (regression, MSE), ``"sigmoid"`` or ``"softmax"``.
        dtype: ``"float32"`` or ``"float64"``.
        seed: seed of the weight initialization (NumPy on the host: same on every backend).
    """

    # What __init__ builds; copies rebuild it (gpunn.sharing), other attributes are copied.
    _OWN = ("layers", "output", "dtype", "seed", "backend", "param_ranges", "flat_params",
            "flat_grads", "_names", "_ws", "_lock")

    def __init__(self, layers, output=None, dtype="float32", seed=0):
        self.layers = check_layers(layers)
        self.output = check_output(output)
        if self.output is not None and self.layers[-1].activation != "identity":
            raise ValueError(f"layers[-1].activation: expected 'identity' with output="
                             f"{self.output!r} (the loss applies it), got "
                             f"{self.layers[-1].activation!r}")
        if self.output == "softmax" and self.layers[-1].n_out == 1:
            raise ValueError("layers[-1].n_out: expected at least 2 units with output="
                             "'softmax' (the softmax of one unit is always 1, nothing is "
                             "learned), got 1; for two classes use output='sigmoid' with 1 "
                             "unit, or 2 units with softmax")
        self.dtype = check_dtype(dtype)
        self.seed = check_int("seed", seed, low=0)
        self.backend = get_backend()
        self.param_ranges = layout(self.layers, ALIGN)
        host = np.zeros(self.param_ranges[-1][2])
        rng = np.random.default_rng(self.seed)
        for i, layer in enumerate(self.layers):
            for (_, start, stop), values in zip(self.param_ranges[2 * i:2 * i + 2],
                                                (layer.initial_weights(rng),
                                                 layer.initial_bias(rng))):
                host[start:stop] = values.ravel()
        self.flat_params = self.backend.asarray(host.astype(self.dtype))
        self.flat_grads = self.backend.zeros(host.shape, self.dtype)
        for i, layer in enumerate(self.layers):
            layer.bind(self.flat_params, self.flat_grads, self.param_ranges[2 * i][1],
                       self.param_ranges[2 * i + 1][1])
        self._names = [(f"A{i}", f"D{i}") for i in range(len(self.layers))]
        self._ws = {}  # the model's own buffers by loss name (None: forward only)
        self._lock = self.new_lock()

    def __repr__(self):
        layers = ", ".join(map(repr, self.layers))
        return (f"{type(self).__name__}([{layers}], output={self.output!r}, "
                f"dtype={self.dtype.name!r}) on {self.backend.name}")

    @property
    def n_in(self):
        """Input features."""
        return self.layers[0].n_in

    @property
    def n_out(self):
        """Output units (classes for softmax)."""
        return self.layers[-1].n_out

    @property
    def n_params(self):
        """Number of parameters (the flat buffers also hold alignment gaps)."""
        return sum(layer.n_params for layer in self.layers)

    def parameters(self):
        """``[W0, b0, W1, b1, ...]``: writable views into ``flat_params``."""
        return [p for layer in self.layers for p in (layer.W, layer.b)]

    def gradients(self):
        """``[dW0, db0, dW1, db1, ...]``: views into ``flat_grads``, same order."""
        return [g for layer in self.layers for g in (layer.dW, layer.db)]

    def config(self):
        """The architecture, JSON-serializable: layers, output, dtype, seed."""
        return {"layers": [layer.config() for layer in self.layers], "output": self.output,
                "dtype": self.dtype.name, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        """A fresh model of the :meth:`config` architecture on the current backend."""
        layers = [Dense(**spec) for spec in config["layers"]]
        return Sequential(layers, output=config["output"], dtype=config["dtype"],
                          seed=config["seed"])

    def copy(self, dtype=None):
        """A copy with the same parameters on the current backend, cast to ``dtype`` if given."""
        dtype = self.dtype if dtype is None else check_dtype(dtype)
        config = dict(self.config(), dtype=dtype.name)
        clone = Sequential.from_config(config)
        host = self.backend.to_numpy(self.flat_params).astype(clone.dtype)
        clone.flat_params[...] = clone.backend.asarray(host)
        return clone

    def save(self, path):
        """Write the architecture and parameters to ``path`` atomically; read with gpunn.load.

        The file is a model-only checkpoint (:mod:`gpunn.checkpoint`): safetensors, no pickle.
        Written by :mod:`gpunn.checkpoint_write`, which sits below this module: saving needs
        no import of the reader.
        An existing path is treated as ``open(path, "w")`` would (:mod:`gpunn.fileio`).

        Args:
            path: target file, conventionally ``*.safetensors``.

        Returns:
            ``path``.
        """
        return write_checkpoint(path, self)

    # --- passes over a device batch: into given buffers, nothing allocated ---------------------

    def new_workspace(self, rows, loss=None):
        """Buffers for passes over up to ``rows`` rows: ``A{i}`` (layer outputs), ``D{i}``
        (deltas) and, with a ``loss``, its buffers, ``ones`` (for sums by GEMV) and ``total``.

        Returns:
            A :class:`~gpunn.workspace.Workspace`; ``ws.rows(m)`` gives the views of a batch.
        """
        specs = {name: ((layer.n_out,), self.dtype)
                 for layer, names in zip(self.layers, self._names) for name in names}
        if loss is not None:
            specs.update(loss.buffer_specs(self.n_out, self.dtype))
            specs["ones"] = ((self.n_out,), self.dtype)
        ws = Workspace(self.backend, rows, specs)
        if loss is not None:
            ws.arrays["ones"].fill(1)
            ws.arrays["total"] = self.backend.zeros(1, self.dtype)
        return ws

    def forward_pass(self, X, views):
        """Run the layers on the device batch ``X`` into ``views["A{i}"]``; the last layer's
        outputs (logits, or regression outputs)."""
        A = X
        for layer, (a_name, _) in zip(self.layers, self._names):
            layer.forward(self.backend, A, views[a_name])
            A = views[a_name]
        return A

    def loss_pass(self, X, T, loss, views, scale):
        """Forward, then the fused loss: dL/dZ of the last layer into its delta buffer and the
        SUM of the loss terms into ``views["total"]`` (a 1-element device array; times
        ``scale`` is the mean when ``scale`` is ``loss.scale`` of the batch)."""
        Z = self.forward_pass(X, views)
        terms = views["terms"].reshape(-1)
        loss.forward_backward(self.backend, Z, T, scale, views[self._names[-1][1]], views)
        ones = views["ones"].reshape(-1)[:terms.size]
        self.backend.matmul(ones, terms.reshape(-1, 1), out=views["total"])
        return views["total"]

    def backward_pass(self, X, views):
        """Backpropagate the last layer's delta (left by :meth:`loss_pass`): ``flat_grads`` is
        overwritten with the gradient."""
        be, m = self.backend, X.shape[0]
        ones = views["ones"].reshape(-1)[:m]
        for i in range(len(self.layers) - 1, -1, -1):
            A_prev = X if i == 0 else views[self._names[i - 1][0]]
            dA_prev = None if i == 0 else views[self._names[i - 1][1]]
            self.layers[i].backward(be, A_prev, views[self._names[i][1]], ones, dA_prev)
            if i > 0:
                self.layers[i - 1].activation_backward(be, A_prev, dA_prev)

    def _views(self, m, loss=None):
        """The model's own buffers (predict, evaluate, loss_and_grad) for ``m`` rows."""
        key = None if loss is None else loss.name
        ws = self._ws.get(key)
        if ws is None or m > ws.capacity:
            ws = self._ws[key] = self.new_workspace(m, loss)
        return ws.rows(m)

    # --- the public, validating API ---------------------------------------------------------

    def prepare(self, X, y, loss=None):
        """Validate ``X`` and ``y`` for ``loss`` and move them to the device, once.

        Args:
            X: ``(n, n_in)`` array-like of finite numbers.
            y: targets for ``loss`` (see :mod:`gpunn.losses`).
            loss: loss name or object; ``None`` is the model's default.

        Returns:
            ``(X, T, loss)``: device arrays and the loss object.
        """
        loss = get_loss(loss, self)
        X = check_features("X", X, self.n_in, self.dtype)
        Xd = self.backend.asarray(X)
        T = loss.targets(y, X.shape[0], self.n_out, self.dtype)  # y=None: a clear TypeError
        return Xd, self.backend.asarray(T), loss

    @holding_model("loss")
    def loss(self, X, y, loss=None):
        """Mean loss over ``(X, y)`` as a float, in one pass (no gradient).

        Args: as :meth:`loss_and_grad`.
        """
        Xd, T, loss = self.prepare(X, y, loss)
        scale = loss.scale(Xd.shape[0], self.n_out)
        total = self.loss_pass(Xd, T, loss, self._views(Xd.shape[0], loss), scale)
        return float(self.backend.to_numpy(total)[0]) * scale

    @holding_model("loss_and_grad")
    def loss_and_grad(self, X, y, loss=None):
        """Loss over ``(X, y)`` as a float; fills ``flat_grads`` with its gradient.

        Args:
            X: ``(n, n_in)`` inputs.
            y: targets: labels for softmax, 0/1 for sigmoid, values for regression.
            loss: ``"bce"``, ``"cross_entropy"``, ``"mse"``, a Loss, or None for the default
                of the output (sigmoid: bce, softmax: cross_entropy, None: mse).

        Returns:
            The mean loss (see :mod:`gpunn.losses` for what is averaged).
        """
        Xd, T, loss = self.prepare(X, y, loss)
        scale = loss.scale(Xd.shape[0], self.n_out)
        views = self._views(Xd.shape[0], loss)
        total = self.loss_pass(Xd, T, loss, views, scale)
        self.backward_pass(Xd, views)
        return float(self.backend.to_numpy(total)[0]) * scale

    @holding_model("evaluate")
    def evaluate(self, X, y, loss=None, batch_size=None):
        """Mean loss and accuracy over ``(X, y)``, in chunks of ``batch_size`` rows.

        Returns:
            ``(loss, accuracy)``; accuracy is the fraction of rows whose labels all match, None
            for regression.
        """
        Xd, T, loss = self.prepare(X, y, loss)
        return self.evaluate_device(Xd, T, loss, batch_size)

    def evaluate_device(self, Xd, T, loss, batch_size=None):
        """:meth:`evaluate` of device arrays prepared by :meth:`prepare`."""
        n, total, correct = Xd.shape[0], 0.0, 0
        for start, stop in self._chunks(n, batch_size):
            views = self._views(stop - start, loss)
            sums = self.loss_pass(Xd[start:stop], T[start:stop], loss, views, 1.0)
            total += float(self.backend.to_numpy(sums)[0])
            if self.output is not None:
                labels = self._convert(views[self._names[-1][0]], False)
                expected = self.backend.to_numpy(T[start:stop])
                correct += int(np.all(labels.reshape(stop - start, -1)
                                      == expected.reshape(stop - start, -1), axis=1).sum())
        accuracy = correct / n if self.output is not None else None
        return total * loss.scale(n, self.n_out), accuracy

    @holding_model("forward")
    def forward(self, X):
        """Outputs of the last layer for ``X``: logits for sigmoid/softmax models.

        Returns:
            A new ``(n, n_out)`` array on the model's backend.
        """
        Xd = self._inputs(X)
        return self.backend.xp.array(self.forward_pass(Xd, self._views(Xd.shape[0])))

    @holding_model("predict_proba")
    def predict_proba(self, X, batch_size=None):
        """Sigmoid or softmax of the logits: an ``(n, n_out)`` float64 NumPy array."""
        if self.output is None:
            raise ValueError("predict_proba: expected a model with output 'sigmoid' or "
                             "'softmax', got output=None (regression)")
        return self._predict(X, batch_size, probabilities=True)

    @holding_model("predict")
    def predict(self, X, batch_size=None):
        """Labels for classifiers, outputs for regression, as a NumPy array.

        Softmax: the argmax, shape ``(n,)``. Sigmoid: 1 where the probability exceeds 0.5,
        shape ``(n,)`` with one output unit, else ``(n, n_out)``. Regression: ``(n, n_out)``.

        Args:
            X: ``(n, n_in)`` inputs.
            batch_size: rows per forward pass; None: the workspace's rows (or 1024).
        """
        return self._predict(X, batch_size, probabilities=False)

    def _inputs(self, X):
        return self.backend.asarray(check_features("X", X, self.n_in, self.dtype))

    def _chunks(self, n, batch_size):
        if batch_size is None:
            capacity = max((ws.capacity for ws in self._ws.values()), default=DEFAULT_CHUNK)
            batch_size = min(n, capacity)
        batch_size = check_int("batch_size", batch_size, low=1)
        return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]

    def _predict(self, X, batch_size, probabilities):
        Xd = self._inputs(X)
        return np.concatenate([
            self._convert(self.forward_pass(Xd[start:stop], self._views(stop - start)),
                          probabilities)
            for start, stop in self._chunks(Xd.shape[0], batch_size)])

    def _convert(self, Z, probabilities):
        """Host labels, probabilities or outputs from the last layer's device outputs."""
        Z, head = self.backend.to_numpy(Z).astype(np.float64), get_loss(None, self)
        return head.probabilities(Z) if probabilities else head.predictions(Z)


class MLP(Sequential):
    """A multi-layer perceptron: Dense layers of ``sizes``, hidden ``activation``, fused output.

    Args:
        sizes: ``[n_in, hidden..., n_out]`` (at least two entries).
        activation: activation of the hidden layers; the last layer is identity.
        output: ``None`` (regression), ``"sigmoid"`` (binary / multi-label) or ``"softmax"``.
        dtype: ``"float32"`` or ``"float64"``.
        seed: seed of the weight initialization.
        init: weight initialization of every layer (see :meth:`Dense.initial_weights`).
    """

    def __init__(self, sizes, activation="sigmoid", output=None, dtype="float32", seed=0,
                 init=DEFAULT_INIT):
        if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
            raise ValueError(f"sizes: expected a list [n_in, ..., n_out] of at least 2 ints, "
                             f"got {sizes!r}")
        sizes = [check_int(f"sizes[{i}]", s, low=1) for i, s in enumerate(sizes)]
        acts = [check_choice("activation", activation, ACTIVATIONS)] * (len(sizes) - 2)
        acts.append("identity")
        layers = [Dense(a, b, act, init) for a, b, act in zip(sizes[:-1], sizes[1:], acts)]
        super().__init__(layers, output=output, dtype=dtype, seed=seed)

