"""The Dense layer: ``Z = A_prev @ W + b``, ``A = f(Z)``; bias and activation fused in a kernel.

With ``norm="layer"`` it normalizes its input first, and with ``residual=True`` it adds its
input to its output: ``A = A_prev + f(LN(A_prev) @ W + b)``, a pre-norm residual block.
"""

import dataclasses

import numpy as np

from gpunn._checks import check_bool, check_choice, check_int, check_number
from gpunn.blocks import BlockPasses
from gpunn.kernels import activation_codes, from_z_activations
from gpunn.layernorm import NORMS

# Kernel codes of the activations, parsed from kernels/activations.cuh (no numba imported).
ACTIVATIONS = activation_codes()
# Activations whose backward reads the pre-activation (gelu, silu: not invertible from f(z)).
FROM_Z = from_z_activations()
# Weight initializations (see Dense.initial_weights); "auto" picks by activation.
INITS = ("auto", "he_normal", "he_uniform", "glorot_uniform", "torch")
# The default, chosen by measurement: benchmarks/init_choice.py, README "Weight initialization".
DEFAULT_INIT = "glorot_uniform"
# Hidden activation of Dense and MLP when none is given, measured (benchmarks/defaults_choice.py);
# the course's sigmoid is activation="sigmoid".
DEFAULT_ACTIVATION = "relu"


def check_dropout(name, p):
    """``p`` as a float drop probability in [0, 1); ``name`` is the argument it came as."""
    return check_number(name, p, low=0.0, high=1.0, high_open=True)


@dataclasses.dataclass(frozen=True)
class DropoutPass:
    """What the dropout masks of one training pass are keyed by (``kernels/counter_rng.cuh``).

    Attributes:
        ctrl: the device control array; its update count (``CTRL_T``) keys the masks, so a
            recorded step drops other units at every update with no host value.
        seed: the model's seed as its 64 bits (two's complement int64).
        first_row: this pass's first row in the step's batch (a rank's shard starts past 0),
            so a data-parallel run drops what one process would.
        layer: the index of the layer in its model.
    """

    ctrl: object
    seed: int
    first_row: int = 0
    layer: int = 0

    def at(self, layer):
        """The same pass for layer number ``layer``."""
        return dataclasses.replace(self, layer=layer)


class Dense(BlockPasses):
    """A fully connected layer ``A = f(A_prev @ W + b)`` with ``W`` (n_in, n_out), ``b`` (n_out,).

    The parameters live in the flat buffer of the model that takes the layer: ``W``, ``b`` and
    the gradients ``dW``, ``db`` are writable views into ``flat_params`` / ``flat_grads``.

    Args:
        n_in: input features.
        n_out: output units.
        activation: a name in ``ACTIVATIONS`` (``"identity"``, ``"sigmoid"``, ``"relu"``,
            ``"tanh"``: whatever ``kernels/activations.cuh`` defines).
        init: weight initialization, one of ``INITS`` (see :meth:`initial_weights`); the
            default is ``"glorot_uniform"`` for every activation.
        norm: None, or ``"layer"``: normalize the input's rows first (:mod:`gpunn.layernorm`;
            its ``gamma``, ``beta`` of ``n_in`` entries join the flat buffer, not decayed).
        residual: add the input to the output, ``A = A_prev + f(...)`` (``n_in == n_out``).
        dropout: drop probability ``p`` in [0, 1) of this layer's outputs while training
            (inverted dropout: the kept outputs are scaled by ``1 / (1 - p)``, so nothing
            changes at inference); 0 is none. Hidden layers only: a model refuses it on its
            last layer. A residual layer drops its branch before the add,
            ``A = A_prev + dropout(f(...))`` (PyTorch's pre-norm blocks), never the stream
            it passes on. The mask comes from a counter-based
            generator keyed by (model seed, update count, layer, element), identical on every
            backend, recomputed in backward.

    Pre-norm (the residual stream ``A_prev`` passes untouched, each block normalizes what it
    reads) rather than post-norm (``LN(A_prev + f(...))``): the loss's gradient reaches every
    block through the sums alone, without passing through one LayerNorm per block, which is
    what lets deep stacks train without warm-up (Xiong et al. 2020; He et al. 2016, "identity
    mappings"). The block after the last residual one should normalize its input too (as
    :class:`~gpunn.MLP` does), since the stream's scale grows with depth.
    """

    def __init__(self, n_in, n_out, activation=DEFAULT_ACTIVATION, init=DEFAULT_INIT,
                 norm=None, residual=False, dropout=0.0):
        self.n_in = check_int("n_in", n_in, low=1)
        self.n_out = check_int("n_out", n_out, low=1)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.init = check_choice("init", init, INITS)
        self.norm = None if norm is None else check_choice("norm", norm, NORMS)
        self.residual = check_bool("residual", residual)
        if self.residual and self.n_in != self.n_out:
            raise ValueError(f"residual: expected n_in == n_out for a residual layer (A = "
                             f"A_prev + f(...) adds its input), got n_in={self.n_in}, "
                             f"n_out={self.n_out}")
        self.act = ACTIVATIONS[self.activation]
        self.keeps_z = self.activation in FROM_Z  # forward needs a pre-activation buffer
        self.ln = None if self.norm is None else NORMS[self.norm](self.n_in)
        self.dropout = check_dropout("dropout", dropout)
        # The mask's 32-bit threshold (an element drops when its bits are below it) and the
        # kept outputs' factor, computed once.
        self.drop_below = int(round(self.dropout * 2**32))
        self.drop_scale = 1.0 / (1.0 - self.dropout)
        self.W = self.b = self.dW = self.db = self.Wh = None
        self.precision = "fp32"

    def __repr__(self):
        init = "" if self.init == DEFAULT_INIT else f", init={self.init!r}"
        norm = "" if self.norm is None else f", norm={self.norm!r}"
        residual = ", residual=True" if self.residual else ""
        drop = f", dropout={self.dropout!r}" if self.dropout else ""
        return (f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r}{init}{norm}"
                f"{residual}{drop})")

    @property
    def keeps_p(self):
        """Whether a training forward writes a second buffer ``P``: the pre-activation for
        activations whose backward reads it, the output before dropout for the others."""
        return self.keeps_z or self.dropout > 0

    @property
    def n_params(self):
        """Number of parameters: ``n_in * n_out + n_out`` (+ ``2 n_in`` with a norm)."""
        return self.n_in * self.n_out + self.n_out + (self.ln.n_params if self.ln else 0)

    @property
    def is_block(self):
        """Whether it normalizes its input or adds it to its output."""
        return self.ln is not None or self.residual

    def config(self):
        """The constructor arguments, JSON-serializable (``norm``, ``residual`` and
        ``dropout`` only when set, so a plain layer's config reads as before they existed)."""
        config = {"n_in": self.n_in, "n_out": self.n_out, "activation": self.activation,
                  "init": self.init}
        if self.norm is not None:
            config["norm"] = self.norm
        if self.residual:
            config["residual"] = True
        if self.dropout:
            config["dropout"] = self.dropout
        return config

    def initial_weights(self, rng):
        """Seeded initial ``W`` in float64 on the host, by ``init``:

        - ``"glorot_uniform"`` (Xavier; Keras' default): ``U(-a, a)``,
          ``a = sqrt(6 / (n_in + n_out))``;
        - ``"he_normal"``: ``N(0, 2 / n_in)``; ``"he_uniform"``: ``U(-a, a)``,
          ``a = sqrt(6 / n_in)``;
        - ``"torch"`` (PyTorch's ``nn.Linear``: kaiming_uniform with ``a = sqrt(5)``):
          ``U(-1/sqrt(n_in), 1/sqrt(n_in))``, the bias too (:meth:`initial_bias`);
        - ``"auto"``: he_normal for relu, glorot_uniform for the other activations.

        Args:
            rng: a ``numpy.random.Generator``.

        Returns:
            An ``(n_in, n_out)`` float64 array.
        """
        shape, init = (self.n_in, self.n_out), self.init
        if init == "auto":
            init = "he_normal" if self.activation == "relu" else "glorot_uniform"
        if init == "he_normal":
            return rng.normal(0.0, np.sqrt(2.0 / self.n_in), size=shape)
        limit = {"glorot_uniform": np.sqrt(6.0 / (self.n_in + self.n_out)),
                 "he_uniform": np.sqrt(6.0 / self.n_in),
                 "torch": 1.0 / np.sqrt(self.n_in)}[init]
        return rng.uniform(-limit, limit, size=shape)

    def initial_bias(self, rng):
        """Seeded initial ``b`` (float64, host): zeros, or ``U(+-1/sqrt(n_in))`` for torch."""
        if self.init == "torch":
            limit = 1.0 / np.sqrt(self.n_in)
            return rng.uniform(-limit, limit, size=self.n_out)
        return np.zeros(self.n_out)

    def initial_params(self, rng):
        """``{entry kind: initial host values}`` (``W``, ``b``, and ``gamma``, ``beta`` with a
        norm); the norm's draw nothing from ``rng``, so plain layers draw as before."""
        values = {"W": self.initial_weights(rng), "b": self.initial_bias(rng)}
        if self.ln is not None:
            values["gamma"], values["beta"] = self.ln.initial()
        return values

    def param_entries(self, i):
        """``[(name, size, decayed), ...]`` of this layer's parameter blocks as layer ``i``:
        ``W{i}`` (weight decay applies to it by default), ``b{i}`` and, with a norm,
        ``gamma{i}``, ``beta{i}`` (it does not: :func:`gpunn.params.layout` puts them after
        every decayed block)."""
        entries = [(f"W{i}", self.n_in * self.n_out, True), (f"b{i}", self.n_out, False)]
        if self.ln is not None:
            entries += [(f"gamma{i}", self.n_in, False), (f"beta{i}", self.n_in, False)]
        return entries

    def parameters(self):
        """``[W, b]`` (+ ``[gamma, beta]`` with a norm): views of the flat buffer."""
        return [self.W, self.b] + ([self.ln.gamma, self.ln.beta] if self.ln else [])

    def gradients(self):
        """The gradients of :meth:`parameters`, same order."""
        return [self.dW, self.db] + ([self.ln.dgamma, self.ln.dbeta] if self.ln else [])

    def bind(self, params, grads, w_start, b_start, work=None, precision="fp32",
             gamma_start=None, beta_start=None):
        """Make ``W``, ``b``, ``dW``, ``db`` views of the flat buffers at the given offsets
        (and the norm's ``gamma``, ``beta`` at theirs).

        ``work``: the model's bfloat16 working copy of the parameters (precision "bf16"),
        whose ``Wh`` view the GEMMs read instead of ``W``.
        """
        if self.ln is not None:
            self.ln.bind(params, grads, gamma_start, beta_start)
        w_stop, b_stop = w_start + self.n_in * self.n_out, b_start + self.n_out
        self.W = params[w_start:w_stop].reshape(self.n_in, self.n_out)
        self.dW = grads[w_start:w_stop].reshape(self.n_in, self.n_out)
        self.b, self.db = params[b_start:b_stop], grads[b_start:b_stop]
        if work is not None:
            self.Wh = work[w_start:w_stop].reshape(self.n_in, self.n_out)
        self.precision = precision

    @property
    def _gemm_W(self):
        return self.Wh if self.precision == "bf16" else self.W

    def forward(self, be, A_prev, Z, Zh=None, P=None, masks=None):
        """``Z = f(A_prev @ W + b)``, written into ``Z`` (m, n_out).

        In precision "bf16" ``A_prev`` is the bfloat16 copy of the input and the GEMM reads
        ``Wh``; ``Zh``, if given, receives the bfloat16 copy of ``Z``. A layer that
        ``keeps_z`` needs ``P`` (m, n_out), which receives the pre-activation. With ``masks``
        (a :class:`DropoutPass`: training) and ``dropout``, ``Z`` receives the dropped output
        and ``P`` what :meth:`activation_backward` reads (z, or the output before dropout).
        """
        if masks is not None and self.dropout:
            be.matmul(A_prev, self._gemm_W, out=P, precision=self.precision)
            args = (self.b, self.n_out, self.act, *self._mask_args(masks), P, Z)
            if Zh is None:
                be.kernel("bias_act_fwd_drop", *args)
            else:
                be.kernel("bias_act_fwd_drop_bf16", *args, Zh)
            return
        if self.keeps_z:
            be.matmul(A_prev, self._gemm_W, out=P, precision=self.precision)
            if Zh is None:
                be.kernel("bias_act_fwd_keep", self.b, self.n_out, self.act, P, Z)
            else:
                be.kernel("bias_act_fwd_keep_bf16", self.b, self.n_out, self.act, P, Z, Zh)
            return
        be.matmul(A_prev, self._gemm_W, out=Z, precision=self.precision)
        if Zh is None:
            be.kernel("bias_act_fwd", self.b, self.n_out, self.act, Z)
        else:
            be.kernel("bias_act_fwd_bf16", self.b, self.n_out, self.act, Z, Zh)

    def backward(self, be, A_prev, dZ, ones, dA_prev=None, dZh=None):
        """Fill ``dW = A_prev.T @ dZ`` and ``db = ones @ dZ`` (the column sums, as a GEMV with
        a ones vector of ``m`` entries: no strided reduction); ``dA_prev = dZ @ W.T`` if given.

        Gradients are overwritten, not accumulated. In precision "bf16" both GEMMs read the
        bfloat16 copies ``A_prev`` and ``dZh`` (and ``Wh``); ``db`` sums the float32 ``dZ``.
        """
        D = dZ if dZh is None else dZh
        be.matmul(A_prev, D, out=self.dW, trans_a=True, precision=self.precision)
        be.matmul(ones, dZ, out=self.db)
        if dA_prev is not None:
            be.matmul(D, self._gemm_W, out=dA_prev, trans_b=True, precision=self.precision)

    def _mask_args(self, masks):
        """The dropout kernels' mask arguments: control array, seed, layer, first element,
        threshold, scale."""
        return (masks.ctrl, masks.seed, masks.layer, masks.first_row * self.n_out,
                self.drop_below, self.drop_scale)

    def activation_backward(self, be, A, dA, dAh=None, masks=None):
        """``dA *= f'(Z)`` in place, ``f'`` computed from this layer's output ``A`` (for a
        layer that ``keeps_z``, or that dropped with ``masks``, ``A`` is ``P``: see
        :meth:`~gpunn.blocks.BlockPasses.delta`); ``dAh``, if given, receives the bfloat16
        copy of the result. With ``masks`` and ``dropout``, the forward's mask is recomputed
        and applied."""
        if masks is not None and self.dropout:
            args = (A, self.act, *self._mask_args(masks), dA)
            if dAh is None:
                be.kernel("act_bwd_drop", *args)
            else:
                be.kernel("act_bwd_drop_bf16", *args, dAh)
            return
        if dAh is None:
            be.kernel("act_bwd", A, self.act, dA)
        else:
            be.kernel("act_bwd_bf16", A, self.act, dA, dAh)


def check_layers(layers):
    """``layers`` as a list after checking each is a new Dense layer fitting the previous."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(f"layers: expected a non-empty list of Dense layers, got {layers!r}")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Dense):
            raise TypeError(f"layers[{i}]: expected a Dense layer, got {type(layer).__name__}")
        if layer.W is not None or any(layer is other for other in layers[:i]):
            raise ValueError(f"layers[{i}]: expected a new Dense layer, got one that already "
                             "belongs to a model or appears twice")
        if i and layer.n_in != layers[i - 1].n_out:
            raise ValueError(f"layers[{i}].n_in: expected {layers[i - 1].n_out} (n_out of "
                             f"layers[{i - 1}]), got {layer.n_in}")
    return list(layers)


def param_entries(layers):
    """``[(name, size, decayed), ...]`` of every parameter block, layer by layer: ``W0, b0,
    W1, b1, ...``, a layer's ``gamma{i}, beta{i}`` after its ``b{i}``.
    :func:`gpunn.params.layout` places the decayed ones (``W0, W1, ...``) first, then the
    others in this order."""
    return [entry for i, layer in enumerate(layers) for entry in layer.param_entries(i)]
