"""Sequential models of Dense layers over one flat parameter buffer; MLP builds one from sizes."""

import warnings

import numpy as np

from gpunn._checks import check_bool, check_choice, check_features, check_int
from gpunn.backends import check_dtype, get_backend
from gpunn.backends.gemm_precision import check_precision
from gpunn.control import Control
from gpunn.dlpack import from_dlpack
from gpunn.layernorm import NORMS
from gpunn.layers import (
    ACTIVATIONS,
    DEFAULT_ACTIVATION,
    DEFAULT_INIT,
    Dense,
    DropoutPass,
    check_dropout,
    check_layers,
    param_entries,
)
from gpunn.losses import check_output, get_loss
from gpunn.params import FlatParams
from gpunn.row_views import blocks
from gpunn.sharing import Shareable, holding_model
from gpunn.sources import as_rows, is_streamed
from gpunn.weights import batch_rescaled, check_sample_weight
from gpunn.workspace import Workspace

# Rows per chunk when predicting before any workspace exists.
DEFAULT_CHUNK = 1024


class Sequential(Shareable):
    """A stack of :class:`~gpunn.Dense` layers whose parameters share one flat buffer.

    ``flat_params`` holds every ``W`` and ``b`` (each layer's are views into it), ``flat_grads``
    the gradients in the same layout, so one kernel launch updates the whole model. Both belong
    to ``params`` (:class:`~gpunn.params.FlatParams`), through which every write of
    parameters from the host goes (``model.params.load_host(values)``). The output
    activation is fused into the loss: with ``output="sigmoid"`` (binary cross-entropy) or
    ``"softmax"`` (cross-entropy) the last layer must be ``"identity"`` and produces logits.

    Args:
        layers: Dense layers, each taking the previous one's ``n_out`` as ``n_in``.
        output: ``None`` (regression, MSE), ``"sigmoid"`` or ``"softmax"``.
        dtype: ``"float32"`` or ``"float64"``.
        seed: seed of the weight initialization (NumPy on the host: same on every backend)
            and of the dropout masks (with the update count, layer and element).
        precision: what the GEMMs compute in (float32 models only):

            - ``"fp32"``: float32 throughout.
            - ``"tf32"``: the GEMMs read their float32 operands rounded to TF32 (10 mantissa
              bits) and accumulate in float32; everything else float32.
            - ``"bf16"``: the GEMMs read bfloat16 copies of the weights (``flat_work``, written
              by the optimizer with every update), of the layer inputs and of the deltas, and
              accumulate in float32. ``flat_params``, ``flat_grads``, optimizer state, layer
              outputs, deltas, losses and softmax stay float32.

            bfloat16 has float32's 8 exponent bits, so gradients neither underflow nor overflow
            where float32's would not: no loss scaling (float16's fix for its 5-bit exponent)
            is needed. On the CPU the GEMM inputs are rounded to tf32 into float32 copies, or
            kept as float32 values of their bfloat16 rounding (``Backend.bf16_zeros``), so a
            laptop computes the same numbers up to accumulation order.
            Checkpoints keep the precision; :meth:`copy` with ``precision=`` changes it.
        initialize: False leaves the parameters zero, for a caller that loads them next (a
            checkpoint): the seeded initialization's host memory is not spent.
    """

    # What __init__ builds; copies rebuild it (gpunn.sharing), other attributes are copied.
    _OWN = ("layers", "output", "dtype", "seed", "backend", "params", "_names", "_ws", "_lock",
            "precision", "_half_names", "_eager_control")

    def __init__(self, layers, output=None, dtype="float32", seed=0, precision="fp32", *,
                 initialize=True):
        self.layers = check_layers(layers)
        self.output = check_output(output)
        if self.output is not None and self.layers[-1].activation != "identity":
            raise ValueError(f"layers[-1].activation: expected 'identity' with output="
                             f"{self.output!r} (the loss applies it), got "
                             f"{self.layers[-1].activation!r}")
        if self.layers[-1].dropout:
            raise ValueError(f"layers[-1].dropout: expected 0 (dropout applies to hidden "
                             f"layers' outputs, not the model's), got {self.layers[-1].dropout}")
        if self.output == "softmax" and self.layers[-1].n_out == 1:
            raise ValueError("layers[-1].n_out: expected at least 2 units with output="
                             "'softmax' (the softmax of one unit is always 1, nothing is "
                             "learned), got 1; for two classes use output='sigmoid' with 1 "
                             "unit, or 2 units with softmax")
        self.dtype = check_dtype(dtype)
        self.seed = check_int("seed", seed, low=0)
        self.precision = check_precision(precision)
        if self.precision != "fp32" and self.dtype != np.float32:
            raise ValueError(f"precision: expected 'fp32' for dtype {self.dtype.name} "
                             f"({self.precision!r} needs float32), got {self.precision!r}")
        self.backend = get_backend()
        self.params = FlatParams(self.backend, param_entries(self.layers), self.dtype,
                                 self.precision)
        starts = {name: start for name, start, _ in self.param_ranges}
        for i, layer in enumerate(self.layers):
            layer.bind(self.flat_params, self.flat_grads, starts[f"W{i}"], starts[f"b{i}"],
                       self.flat_work, self.precision, starts.get(f"gamma{i}"),
                       starts.get(f"beta{i}"))
        if initialize:
            self.params.load_host(self._initial_params())
        self._names = [(f"A{i}", f"D{i}") for i in range(len(self.layers))]
        self._half_names = [(f"Ah{i}", f"Dh{i}") for i in range(len(self.layers))]
        self._ws = {}  # the model's own buffers by loss name (None: forward only)
        self._lock = self.new_lock()
        self._eager_control = None  # the control array of loss_and_grad(dropout_update=)

    def __repr__(self):
        layers = ", ".join(map(repr, self.layers))
        return (f"{type(self).__name__}([{layers}], output={self.output!r}, "
                f"dtype={self.dtype.name!r}, precision={self.precision!r}) on "
                f"{self.backend.name}")

    def _initial_params(self):
        """The seeded initial parameters, float64 on the host, in the flat layout."""
        host = np.zeros(self.params.size)
        rng = np.random.default_rng(self.seed)
        ranges = {name: (start, stop) for name, start, stop in self.param_ranges}
        for i, layer in enumerate(self.layers):
            for kind, values in layer.initial_params(rng).items():
                start, stop = ranges[f"{kind}{i}"]
                host[start:stop] = values.ravel()
        return host

    @property
    def flat_params(self):
        """The parameters, one flat device array (``params.master``); ``W``/``b`` view it."""
        return self.params.master

    @property
    def flat_grads(self):
        """The gradient, same layout as ``flat_params`` (``params.grads``)."""
        return self.params.grads

    @property
    def flat_work(self):
        """The bfloat16 working copy of ``flat_params`` the GEMMs read (precision "bf16"),
        else None (``params.work``)."""
        return self.params.work

    @property
    def param_ranges(self):
        """``[(name, start, stop), ...]`` of every W and b in the flat buffers."""
        return self.params.ranges

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
        """``[W0, b0, W1, b1, ...]`` (a norm's ``gamma``, ``beta`` after its layer's ``b``):
        writable views into ``flat_params``."""
        return [p for layer in self.layers for p in layer.parameters()]

    def gradients(self):
        """``[dW0, db0, dW1, db1, ...]``: views into ``flat_grads``, same order."""
        return [g for layer in self.layers for g in layer.gradients()]

    def config(self):
        """The architecture, JSON-serializable: layers, output, dtype, seed, precision."""
        return {"layers": [layer.config() for layer in self.layers], "output": self.output,
                "dtype": self.dtype.name, "seed": self.seed, "precision": self.precision}

    @classmethod
    def from_config(cls, config, initialize=True):
        """A fresh model of the :meth:`config` architecture on the current backend (a config
        without ``precision``, written before it existed, is fp32); ``initialize=False``
        leaves its parameters zero for a caller that loads them next."""
        layers = [Dense(**spec) for spec in config["layers"]]
        return Sequential(layers, output=config["output"], dtype=config["dtype"],
                          seed=config["seed"], precision=config.get("precision", "fp32"),
                          initialize=initialize)

    def copy(self, dtype=None, precision=None):
        """A copy with the same parameters on the current backend, cast to ``dtype`` and
        trained in ``precision`` if given (the only way a model changes precision)."""
        dtype = self.dtype if dtype is None else check_dtype(dtype)
        precision = self.precision if precision is None else check_precision(precision)
        config = dict(self.config(), dtype=dtype.name, precision=precision)
        clone = Sequential.from_config(config)
        clone.params.load_host(self.params.host())
        return clone

    def sync_working_copy(self):
        """Deprecated alias of ``model.params.refresh_work()``: write parameters with
        ``model.params.load_host(values)``, which refreshes the bfloat16 working copy itself."""
        warnings.warn("sync_working_copy() is deprecated: write parameters with "
                      "model.params.load_host(values), or call model.params.refresh_work() "
                      "after writing a W/b view", DeprecationWarning, stacklevel=2)
        self.params.refresh_work()

    # The writer of model files: gpunn.checkpoint.save, set by gpunn.checkpoint when it is
    # imported (``import gpunn`` does). The checkpoint package sits above this module (it
    # builds models when it loads them), so the model hands itself to it instead of importing.
    writer = None

    def save(self, path):
        """Write the architecture and parameters to ``path`` atomically; read with gpunn.load.

        Same as ``gpunn.save(model, path)``: a model-only checkpoint (:mod:`gpunn.checkpoint`),
        safetensors, no pickle. An existing path is treated as ``open(path, "w")`` would
        (:mod:`gpunn._files`).

        Args:
            path: target file, conventionally ``*.safetensors``.

        Returns:
            ``path``.
        """
        return type(self).writer(self, path)

    # --- passes over a device batch: into given buffers, nothing allocated ---------------------

    def new_workspace(self, rows, loss=None):
        """Buffers for passes over up to ``rows`` rows: ``A{i}`` (layer outputs), ``D{i}``
        (deltas) and, with a ``loss``, its buffers, ``ones`` (for sums by GEMV) and ``total``.

        Returns:
            A :class:`~gpunn.workspace.Workspace`; ``ws.rows(m)`` gives the views of a batch.
        """
        specs = {name: ((layer.n_out,), self.dtype)
                 for layer, names in zip(self.layers, self._names) for name in names}
        # Pre-activations (kept by gelu, silu layers and residual ones), norm buffers.
        for i, layer in enumerate(self.layers):
            specs.update(layer.buffer_specs(i, self.dtype, self.precision == "bf16"))
        if self.precision == "bf16":
            # The bfloat16 copies the GEMMs read: the input's, each layer's output and delta.
            # A and D stay float32: the loss reads float32 logits, f'(A) and the bias gradient
            # are taken in float32, and the GEMMs write float32.
            specs["Xh"] = ((self.n_in,), np.uint16)
            specs.update({name: ((layer.n_out,), np.uint16)
                          for layer, names in zip(self.layers, self._half_names)
                          for name in names})
        if loss is not None:
            specs.update(loss.buffer_specs(self.n_out, self.dtype))
            specs["ones"] = ((self.n_out,), self.dtype)
        ws = Workspace(self.backend, rows, specs)
        if loss is not None:
            ws.arrays["ones"].fill(1)
            ws.arrays["total"] = self.backend.zeros(1, self.dtype)
        return ws

    def dropout_pass(self, ctrl, first_row=0):
        """The :class:`~gpunn.layers.DropoutPass` of a training pass whose update count is in
        the control array ``ctrl`` (rows from ``first_row`` of the step's batch); None for a
        model without dropout."""
        if not any(layer.dropout for layer in self.layers):
            return None
        seed = self.seed % 2**64
        return DropoutPass(ctrl, seed - 2**64 if seed >= 2**63 else seed, first_row)

    def eager_masks(self, update):
        """The dropout pass of an eager training pass after ``update`` updates, through a
        control array of the model's own (None for ``update`` None: no dropout)."""
        if update is None:
            return None
        update = check_int("dropout_update", update, low=0)
        control = self._eager_control
        if control is None:
            control = self._eager_control = Control(self.backend, self.dtype, 1)
        control.start([0.0], update)
        return self.dropout_pass(control.ctrl)

    def forward_pass(self, X, views, masks=None, rounded=False):
        """Run the layers on the device batch ``X`` into ``views["A{i}"]``; the last layer's
        outputs (logits, or regression outputs). In bf16 the GEMMs read ``Xh`` and ``Ah{i}``,
        the bfloat16 copies written on the way. ``masks`` (a
        :class:`~gpunn.layers.DropoutPass`, from :meth:`dropout_pass`): a training pass,
        whose layers drop; None (predict, evaluate): no dropout. ``rounded``: ``views["Xh"]``
        already holds ``X`` in bfloat16 (``gather_rows_bf16`` wrote both)."""
        A, Ah = X, None
        if self.precision == "bf16":
            Ah = views["Xh"]
            if not rounded:
                self.backend.kernel("round_bf16", X, Ah)
        for i, (layer, (a_name, _)) in enumerate(zip(self.layers, self._names)):
            half = self._half(views, i, 0) if i + 1 < len(self.layers) else None
            extra = () if masks is None else (masks.at(i),)  # none: called as before dropout
            layer.run_forward(self.backend, A, Ah, views, i, half, *extra)
            A, Ah = views[a_name], half
        return views[self._names[-1][0]]

    def loss_pass(self, X, T, loss, views, scale, W=None, masks=None, rounded=False):
        """Forward, then the fused loss: dL/dZ of the last layer into its delta buffer and the
        SUM of the loss terms into ``views["total"]`` (a 1-element device array; times
        ``scale`` is the mean when ``scale`` is ``loss.scale`` of the batch). ``W``: a device
        weight per row (:mod:`gpunn.weights`), None for ones. ``masks``: as
        :meth:`forward_pass` (and the same for :meth:`backward_pass` after it); ``rounded``
        as there."""
        Z = self.forward_pass(X, views, masks, rounded)
        terms = views["terms"].reshape(-1)
        if W is None:
            W = views["ones"].reshape(-1)[:Z.shape[0]]
        loss.forward_backward(self.backend, Z, T, W, scale, views[self._names[-1][1]], views)
        ones = views["ones"].reshape(-1)[:terms.size]
        self.backend.matmul(ones, terms.reshape(-1, 1), out=views["total"])
        return views["total"]

    def backward_pass(self, X, views, masks=None):
        """Backpropagate the last layer's delta (left by :meth:`loss_pass` with the same
        ``masks``): ``flat_grads`` is overwritten with the gradient."""
        be, m, last = self.backend, X.shape[0], len(self.layers) - 1
        ones = views["ones"].reshape(-1)[:m]
        if self.layers[last].residual:  # its dZ goes to a buffer of its own
            self.layers[last].delta(be, views, last)
        elif self.precision == "bf16":
            be.kernel("round_bf16", views[self._names[last][1]], self._half(views, last, 1))
        for i in range(last, -1, -1):
            A_prev = X if i == 0 else views[self._names[i - 1][0]]
            dA_prev = None if i == 0 else views[self._names[i - 1][1]]
            A_half = None if self.precision != "bf16" else (
                views["Xh"] if i == 0 else self._half(views, i - 1, 0))
            self.layers[i].run_backward(be, A_prev, A_half, views, i, ones, dA_prev)
            if i > 0:
                extra = () if masks is None else (masks.at(i - 1),)  # none: as before dropout
                self.layers[i - 1].delta(be, views, i - 1, *extra)

    def _half(self, views, i, which):
        """The bfloat16 copy of layer ``i``'s output (0) or delta (1); None unless bf16."""
        return views[self._half_names[i][which]] if self.precision == "bf16" else None

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
            X: ``(n, n_in)`` array-like of finite numbers; DLPack producers (PyTorch, JAX,
                CuPy) are taken without a copy on a backend of their device
                (:mod:`gpunn.dlpack`).
            y: targets for ``loss`` (see :mod:`gpunn.losses`), taken as ``X`` is.
            loss: loss name or object; ``None`` is the model's default.

        Returns:
            ``(X, T, loss)``: device arrays and the loss object.
        """
        loss = get_loss(loss, self)
        X = self._inputs(X)
        y = from_dlpack("y", y, self.backend.xp)
        T = loss.targets(y, X.shape[0], self.n_out, self.dtype)  # y=None: a clear TypeError
        return X, self.backend.asarray(T), loss

    @holding_model("loss")
    def loss(self, X, y, loss=None, sample_weight=None):
        """Mean loss over ``(X, y)`` as a float, in one pass (no gradient).

        Args: as :meth:`loss_and_grad`.
        """
        Xd, T, loss = self.prepare(X, y, loss)
        scale = loss.scale(Xd.shape[0], self.n_out)
        total = self.loss_pass(Xd, T, loss, self._views(Xd.shape[0], loss), scale,
                               self._unit_mean_weights(sample_weight, Xd.shape[0]))
        return float(self.backend.to_numpy(total)[0]) * scale

    @holding_model("loss_and_grad")
    def loss_and_grad(self, X, y, loss=None, sample_weight=None, dropout_update=None):
        """Loss over ``(X, y)`` as a float; fills ``flat_grads`` with its gradient.

        Args:
            X: ``(n, n_in)`` inputs.
            y: targets: labels for softmax, 0/1 for sigmoid, values for regression.
            loss: ``"bce"``, ``"cross_entropy"``, ``"mse"``, a Loss, or None for the default
                of the output (sigmoid: bce, softmax: cross_entropy, None: mse).
            sample_weight: a non-negative weight per row, or None: the loss is then the
                weighted mean ``sum(w l) / sum(w)`` (:mod:`gpunn.weights`).
            dropout_update: None (default): no dropout, as in evaluation; an update count
                ``t``: the layers drop with the masks of a training step after ``t``
                updates (those :func:`gpunn.fit` uses; rows of ``X`` as one batch).

        Returns:
            The mean loss (see :mod:`gpunn.losses` for what is averaged).
        """
        masks = self.eager_masks(dropout_update)
        Xd, T, loss = self.prepare(X, y, loss)
        scale = loss.scale(Xd.shape[0], self.n_out)
        views = self._views(Xd.shape[0], loss)
        total = self.loss_pass(Xd, T, loss, views, scale,
                               self._unit_mean_weights(sample_weight, Xd.shape[0]), masks)
        self.backward_pass(Xd, views, masks)
        return float(self.backend.to_numpy(total)[0]) * scale

    def _unit_mean_weights(self, sample_weight, n):
        """``sample_weight`` checked and rescaled to mean 1 over the ``n`` rows, on the
        device; None for None."""
        w = check_sample_weight(sample_weight, n)
        if w is None:
            return None
        return self.backend.asarray(batch_rescaled(w, np.arange(n), n).astype(self.dtype))

    @holding_model("evaluate")
    def evaluate(self, X, y, loss=None, batch_size=None, sample_weight=None):
        """Mean loss and accuracy over ``(X, y)``, in chunks of ``batch_size`` rows.

        Args:
            sample_weight: a non-negative weight per row, or None: the loss is the weighted
                mean ``sum(w l) / sum(w)`` and the accuracy the weight of the rows right over
                the weight of all (scikit-learn's ``score(sample_weight=)``).

        Returns:
            ``(loss, accuracy)``; accuracy is the fraction of rows whose labels all match, None
            for regression.
        """
        Xd, T, loss = self.prepare(X, y, loss)
        return self.evaluate_device(Xd, T, loss, batch_size,
                                    check_sample_weight(sample_weight, Xd.shape[0]))

    def evaluate_device(self, Xd, T, loss, batch_size=None, weights=None):
        """:meth:`evaluate` of device arrays prepared by :meth:`prepare`; ``weights``: the
        checked float64 host weights of the rows, or None."""
        sums = self.evaluate_sums(Xd, T, loss, batch_size, weights)
        return self.evaluated(sums, Xd.shape[0], loss, weights)

    def evaluate_sums(self, Xd, T, loss, batch_size=None, weights=None, sums=(0.0, 0.0)):
        """``(loss total, weight of the rows right)`` over ``(Xd, T)`` added to ``sums``, a
        batch at a time (so rows evaluated a block at a time give the bits of one call when
        the blocks hold whole batches); :meth:`evaluated` turns them into the means."""
        n, (total, correct) = Xd.shape[0], sums
        Wd = None if weights is None else self.backend.asarray(weights.astype(self.dtype))
        for start, stop in self._chunks(n, batch_size):
            views = self._views(stop - start, loss)
            out = self.loss_pass(Xd[start:stop], T[start:stop], loss, views, 1.0,
                                 None if Wd is None else Wd[start:stop])
            total += float(self.backend.to_numpy(out)[0])
            if self.output is not None:
                labels = self._convert(views[self._names[-1][0]], False)
                expected = self.backend.to_numpy(T[start:stop])
                right = np.all(labels.reshape(stop - start, -1)
                               == expected.reshape(stop - start, -1), axis=1)
                correct += float(right.sum() if weights is None
                                 else weights[start:stop][right].sum())
        return total, correct

    def evaluated(self, sums, n, loss, weights=None):
        """``(loss, accuracy)`` from :meth:`evaluate_sums` over ``n`` rows (of ``weights``)."""
        total, correct = sums
        weight = n if weights is None else float(weights.sum())
        accuracy = correct / weight if self.output is not None else None
        return total * loss.scale(n, self.n_out) * (n / weight), accuracy

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
        """Sigmoid or softmax of the logits: an ``(n, n_out)`` float64 NumPy array (``X`` as
        :meth:`predict` takes it)."""
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
            X: ``(n, n_in)`` inputs, or a streamed source (a path, a memory map, ...;
                :mod:`gpunn.sources`), read a block at a time.
            batch_size: rows per forward pass; None: the workspace's rows (or 1024).
        """
        return self._predict(X, batch_size, probabilities=False)

    def _inputs(self, X):
        X = from_dlpack("X", X, self.backend.xp)
        return self.backend.asarray(check_features("X", X, self.n_in, self.dtype))

    def _chunks(self, n, batch_size):
        if batch_size is None:
            capacity = max((ws.capacity for ws in self._ws.values()), default=DEFAULT_CHUNK)
            batch_size = min(n, capacity)
        batch_size = check_int("batch_size", batch_size, low=1)
        return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]

    def _predict(self, X, batch_size, probabilities):
        if is_streamed(X):  # a block of rows at a time: never the whole source in memory
            return np.concatenate([self._predict(rows, batch_size, probabilities)
                                   for _, _, rows in blocks(as_rows(X, "X"))])
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
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"`` (float32 models), see
            :class:`Sequential`.
        norm: None, or ``"layer"``: every layer after the first normalizes its input
            (LayerNorm, :class:`Dense`), the output layer included (the final norm of a
            pre-norm stack).
        residual: the hidden layers after the first are pre-norm residual blocks,
            ``A = A_prev + f(LN(A_prev) @ W + b)``: the hidden widths must be equal, and
            there must be at least two hidden layers (the first maps ``n_in`` to the width).
        dropout: drop probability of every hidden layer's outputs while training (a float in
            [0, 1)), or one per hidden layer (a list); see :class:`Dense`. The inputs and the
            output layer are never dropped; a residual block drops its branch before the add.
    """

    def __init__(self, sizes, activation=DEFAULT_ACTIVATION, output=None, dtype="float32",
                 seed=0, init=DEFAULT_INIT, precision="fp32", norm=None, residual=False,
                 dropout=0.0):
        if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
            raise ValueError(f"sizes: expected a list [n_in, ..., n_out] of at least 2 ints, "
                             f"got {sizes!r}")
        sizes = [check_int(f"sizes[{i}]", s, low=1) for i, s in enumerate(sizes)]
        acts = [check_choice("activation", activation, ACTIVATIONS)] * (len(sizes) - 2)
        acts.append("identity")
        norm = None if norm is None else check_choice("norm", norm, NORMS)
        blocks = _residual_blocks(sizes, check_bool("residual", residual))
        drops = _hidden_dropout(dropout, len(sizes) - 2) + [0.0]
        layers = [Dense(a, b, act, init, norm=norm if k else None, residual=k in blocks,
                        dropout=p)
                  for k, (a, b, act, p) in enumerate(zip(sizes[:-1], sizes[1:], acts, drops))]
        super().__init__(layers, output=output, dtype=dtype, seed=seed, precision=precision)


def _residual_blocks(sizes, residual):
    """Indices of the layers of an MLP of ``sizes`` that are residual blocks (all hidden
    layers but the first), after checking the hidden widths allow them."""
    if not residual:
        return set()
    hidden = sizes[1:-1]
    if len(hidden) < 2:
        raise ValueError(f"residual: expected at least 2 hidden layers (the first maps n_in "
                         f"to the width, residual blocks follow), got sizes {sizes}")
    if len(set(hidden)) > 1:
        raise ValueError(f"residual: expected equal hidden widths (a residual block adds its "
                         f"input to its output), got hidden widths {hidden}")
    return set(range(1, len(sizes) - 2))



def _hidden_dropout(dropout, hidden):
    """MLP's ``dropout`` as one probability per hidden layer."""
    if isinstance(dropout, (list, tuple)):
        if len(dropout) != hidden:
            raise ValueError(f"dropout: expected a probability or a list of {hidden} (one per "
                             f"hidden layer), got a list of {len(dropout)}")
        return [check_dropout(f"dropout[{i}]", p) for i, p in enumerate(dropout)]
    return [check_dropout("dropout", dropout)] * hidden
