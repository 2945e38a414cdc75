"""gpunn models as PyTorch modules and back.

``torch.nn.Linear`` computes ``x @ weight.T + bias``: its ``weight`` is gpunn's ``W.T``. A
model becomes one ``Linear`` per :class:`~gpunn.Dense` layer, each followed by its activation
module (``Sigmoid``, ``ReLU``, ``Tanh``; none for identity) and, for a layer with dropout, an
``nn.Dropout(p)``: see :mod:`gpunn.export`. PyTorch draws its own masks (its generator, not
gpunn's), so only inference (``eval()``, where both are the identity) gives the same numbers.
"""

import functools

import numpy as np

from gpunn._checks import check_bool
from gpunn._compat import require
from gpunn.export.layout import TORCH_ACTIVATIONS, TORCH_OPTIONS, host_layers, norm_params
from gpunn.layernorm import LAYERNORM_EPS
from gpunn.layers import Dense
from gpunn.model import Sequential


def to_torch(model, probabilities=False):
    """The model as a ``torch.nn.Sequential`` with the same numbers (on the CPU).

    Args:
        model: a :class:`~gpunn.Sequential` or :class:`~gpunn.MLP`.
        probabilities: end with ``nn.Sigmoid`` / ``nn.Softmax(dim=-1)`` so the module returns
            :meth:`~gpunn.Sequential.predict_proba`'s values; False (the default) returns the
            logits, as :meth:`~gpunn.Sequential.forward` does and PyTorch's losses expect.

    Returns:
        An ``nn.Sequential`` in the model's dtype (see the module docstring for tf32 / bf16).
    """
    torch = require("torch", "torch", "to_torch")
    probabilities = check_bool("probabilities", probabilities)
    layers = host_layers(model)
    if probabilities and model.output is None:
        raise ValueError("probabilities: expected False for a model with output=None "
                         "(regression has no probabilities), got True")
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    modules = []
    for layer, W, b in layers:
        linear = (torch.nn.Linear(layer.n_in, layer.n_out, dtype=dtype)
                  if model.precision == "fp32" else
                  rounded_linear_class()(layer.n_in, layer.n_out, model.precision))
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            linear.bias.copy_(torch.from_numpy(b))
        act = None
        if TORCH_ACTIVATIONS[layer.activation] is not None:
            act = getattr(torch.nn, TORCH_ACTIVATIONS[layer.activation])(
                **TORCH_OPTIONS.get(layer.activation, {}))
        if layer.is_block:
            modules.append(_block(torch, model, layer, linear, act, dtype))
        else:
            modules += [linear] + ([] if act is None else [act])
        if layer.dropout and not layer.residual:  # a residual block drops inside, before the add
            modules.append(torch.nn.Dropout(layer.dropout))
    if probabilities:
        modules.append(torch.nn.Sigmoid() if model.output == "sigmoid"
                       else torch.nn.Softmax(dim=-1))
    return torch.nn.Sequential(*modules)


def _block(torch, model, layer, linear, act, dtype):
    """The :class:`PreNormBlock` of a norm / residual layer."""
    norm = None
    if layer.ln is not None:
        norm = torch.nn.LayerNorm(layer.n_in, eps=layer.ln.eps, dtype=dtype)
        with torch.no_grad():
            for param, values in zip((norm.weight, norm.bias), norm_params(model, layer)):
                param.copy_(torch.from_numpy(np.ascontiguousarray(values)))
    dropout = layer.dropout if layer.residual else 0.0
    return pre_norm_block_class()(linear, norm, act, layer.residual, dropout)


@functools.cache
def pre_norm_block_class():
    """:class:`PreNormBlock`, built on first use (importing gpunn imports no torch)."""
    torch = require("torch", "torch", "PreNormBlock")

    class PreNormBlock(torch.nn.Module):
        """gpunn's ``Dense(norm=..., residual=...)``: ``[x +] drop(act(linear(norm(x))))``,
        with ``norm`` an ``nn.LayerNorm`` or None, ``act`` a module or None and ``drop`` an
        ``nn.Dropout(dropout)`` on the branch (None for 0)."""

        def __init__(self, linear, norm=None, act=None, residual=False, dropout=0.0):
            super().__init__()
            self.norm, self.linear, self.act = norm, linear, act
            self.residual = bool(residual)
            self.drop = torch.nn.Dropout(dropout) if dropout else None

        def extra_repr(self):
            return f"residual={self.residual}"

        def forward(self, x):
            h = self.linear(x if self.norm is None else self.norm(x))
            h = h if self.act is None else self.act(h)
            # Blocks pickled before dropout existed have no ``drop``.
            drop = getattr(self, "drop", None)
            h = h if drop is None else drop(h)
            return x + h if self.residual else h

    PreNormBlock.__module__, PreNormBlock.__qualname__ = "gpunn.export", "PreNormBlock"
    return PreNormBlock


@functools.cache
def rounded_linear_class():
    """:class:`RoundedLinear`, built on first use so that importing gpunn imports no torch."""
    torch = require("torch", "torch", "RoundedLinear")

    class RoundedLinear(torch.nn.Linear):
        """``nn.Linear`` (float32) whose input and weight are rounded to ``precision``
        (``"tf32"`` or ``"bf16"``, nearest even) before the product, as gpunn's GEMMs are."""

        def __init__(self, in_features, out_features, precision, bias=True, device=None):
            super().__init__(in_features, out_features, bias, device, torch.float32)
            if precision not in ("tf32", "bf16"):
                raise ValueError(f"precision: expected 'tf32' or 'bf16', got {precision!r}")
            self.precision = precision

        def extra_repr(self):
            return f"{super().extra_repr()}, precision={self.precision!r}"

        def forward(self, x):
            return torch.nn.functional.linear(self.round(x), self.round(self.weight),
                                              self.bias)

        def round(self, x):
            """``x`` rounded to the precision's GEMM input, as float32."""
            if self.precision == "bf16":
                return x.to(torch.bfloat16).to(torch.float32)
            bits = x.contiguous().view(torch.int32)
            lsb = torch.bitwise_and(torch.bitwise_right_shift(bits, 13), 1)
            return torch.bitwise_and(bits + 4095 + lsb, -8192).view(torch.float32)

    RoundedLinear.__module__, RoundedLinear.__qualname__ = "gpunn.export", "RoundedLinear"
    return RoundedLinear


def from_torch(module, output=None, precision=None, seed=0):
    """A gpunn model with the parameters of a ``torch.nn.Sequential`` of ``Linear`` layers and
    activations (``Sigmoid``, ``ReLU``, ``Tanh``; ``Identity`` is skipped), each optionally
    followed by an ``nn.Dropout(p)``, which becomes that layer's ``dropout``.

    Args:
        module: the ``nn.Sequential`` (any device; float32 or float64 parameters, all alike).
        output: the model's output, as for :class:`~gpunn.Sequential`. With ``"sigmoid"`` /
            ``"softmax"`` a last ``nn.Sigmoid`` / ``nn.Softmax`` is taken as that output (it
            may also be absent: the module returns logits).
        precision: the model's precision; None takes it from :class:`RoundedLinear` layers
            (``"fp32"`` without them).
        seed: the model's seed (its parameters come from ``module``).

    Returns:
        A :class:`~gpunn.Sequential` on the current backend.

    Raises:
        TypeError: naming the first module gpunn cannot represent.
    """
    torch = require("torch", "torch", "from_torch")
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"module: expected a torch.nn.Sequential, got {type(module).__name__}")
    if type(module).forward is not torch.nn.Sequential.forward:
        raise TypeError(f"module: gpunn cannot represent {type(module).__name__}: a Sequential "
                        "subclass with its own forward")
    children = [(f"module[{name}]", child) for name, child in module.named_children()
                if not isinstance(child, torch.nn.Identity)]
    children = _strip_output(torch, children, output)
    specs, found = _torch_layers(torch, children)
    dtypes = {W.dtype for _, W, *_ in specs}
    if len(dtypes) > 1:
        raise TypeError(f"module: expected one parameter dtype, got {sorted(map(str, dtypes))}")
    if precision is None:
        if len(found) > 1:
            raise TypeError(f"module: expected Linear layers of one precision (plain Linear "
                            f"is 'fp32'), got {sorted(found)}; or pass precision=")
        precision = found.pop()
    layers = [Dense(W.shape[1], W.shape[0], activation, init="torch",
                    norm=None if block is None or block["gamma"] is None else "layer",
                    residual=block is not None and block["residual"], dropout=p)
              for activation, W, _, block, p in specs]
    model = Sequential(layers, output=output, dtype=dtypes.pop().name, seed=seed,
                       precision=precision)
    host = model.params.host()
    ranges = {name: slice(start, stop) for name, start, stop in model.param_ranges}
    for i, (_, W, b, block, _) in enumerate(specs):
        host[ranges[f"W{i}"]], host[ranges[f"b{i}"]] = W.T.ravel(), b
        if block is not None and block["gamma"] is not None:
            host[ranges[f"gamma{i}"]], host[ranges[f"beta{i}"]] = block["gamma"], block["beta"]
    model.params.load_host(host)
    return model


def _strip_output(torch, children, output):
    """``children`` less a last Sigmoid / Softmax that is the model's ``output``."""
    if output not in (None, "sigmoid", "softmax"):
        raise ValueError(f"output: expected None, 'sigmoid' or 'softmax', got {output!r}")
    if not children:
        raise TypeError("module: expected at least one torch.nn.Linear, got none")
    name, last = children[-1]
    if output == "sigmoid" and isinstance(last, torch.nn.Sigmoid):
        return children[:-1]
    if output == "softmax" and isinstance(last, torch.nn.Softmax):
        if last.dim not in (-1, 1):
            raise TypeError(f"{name}: expected nn.Softmax over the last dimension (dim=-1), "
                            f"got dim={last.dim}")
        return children[:-1]
    return children


def _torch_layers(torch, children):
    """``([(activation, weight, bias, block, dropout), ...], the layers' precisions)``
    (Linear: fp32; block: a PreNormBlock's norm and residual, else None)."""
    names = {cls for cls in TORCH_ACTIVATIONS.values() if cls is not None}
    specs, precisions, after_linear, droppable = [], set(), False, False
    for name, child in children:
        kind = type(child).__name__
        if type(child) is pre_norm_block_class():
            drop = getattr(child, "drop", None)
            if drop is not None and type(drop) is not torch.nn.Dropout:
                raise TypeError(f"{name}.drop: gpunn cannot represent {type(drop).__name__}: "
                                "expected torch.nn.Dropout or None")
            specs.append(_block_spec(torch, name, child, names)
                         + [0.0 if drop is None else drop.p])
            precisions.add(getattr(child.linear, "precision", "fp32"))
            # After a residual block a Dropout would drop the stream: gpunn drops the branch.
            after_linear, droppable = False, drop is None and not child.residual
        elif isinstance(child, torch.nn.Linear):
            if type(child).forward not in (torch.nn.Linear.forward,
                                           rounded_linear_class().forward):
                raise TypeError(f"{name}: gpunn cannot represent {kind}: a Linear subclass "
                                "with its own forward")
            if child.bias is None:
                raise TypeError(f"{name}: gpunn cannot represent Linear(bias=False): every "
                                "Dense layer has a bias")
            specs.append(["identity"] + [_host_parameter(torch, f"{name}.{p}", getattr(child, p))
                                         for p in ("weight", "bias")] + [None, 0.0])
            precisions.add(getattr(child, "precision", "fp32"))
            after_linear = droppable = True
        elif after_linear and kind in names and type(child) is getattr(torch.nn, kind):
            specs[-1][0], after_linear = _activation_of(name, child), False
        elif droppable and type(child) is torch.nn.Dropout:
            specs[-1][4], after_linear, droppable = child.p, False, False
        else:
            raise TypeError(f"{name}: gpunn cannot represent {kind} here: expected "
                            "torch.nn.Linear layers, each followed by at most one of "
                            f"{sorted(names)} and at most one Dropout (Sigmoid / Softmax "
                            "last as the output)")
    if not specs:
        raise TypeError("module: expected at least one torch.nn.Linear, got none")
    return specs, precisions


def _block_spec(torch, name, block, names):
    """``[activation, weight, bias, {gamma, beta, residual}]`` of a :class:`PreNormBlock`:
    a plain ``Linear`` (or RoundedLinear), an ``nn.LayerNorm`` of gpunn's eps with an affine
    weight and bias, or none, and one of the activations."""
    linear, norm, act = block.linear, block.norm, block.act
    if type(linear).forward not in (torch.nn.Linear.forward, rounded_linear_class().forward) \
            or linear.bias is None:
        raise TypeError(f"{name}.linear: gpunn cannot represent {type(linear).__name__} "
                        "there: expected a Linear with a bias")
    extra = {"gamma": None, "beta": None, "residual": block.residual}
    if norm is not None:
        if (type(norm) is not torch.nn.LayerNorm or norm.weight is None or norm.bias is None
                or tuple(norm.normalized_shape) != (linear.in_features,)
                or norm.eps != LAYERNORM_EPS):
            raise TypeError(f"{name}.norm: gpunn cannot represent {norm!r}: expected "
                            f"LayerNorm({linear.in_features}, eps={LAYERNORM_EPS}) with weight "
                            "and bias")
        extra["gamma"], extra["beta"] = (_host_parameter(torch, f"{name}.norm.{p}",
                                                         getattr(norm, p))
                                         for p in ("weight", "bias"))
    activation = "identity"
    if act is not None:
        if type(act).__name__ not in names or type(act) is not getattr(torch.nn,
                                                                         type(act).__name__):
            raise TypeError(f"{name}.act: gpunn cannot represent {type(act).__name__}")
        activation = _activation_of(f"{name}.act", act)
    return [activation] + [_host_parameter(torch, f"{name}.linear.{p}", getattr(linear, p))
                           for p in ("weight", "bias")] + [extra]


def _activation_of(name, child):
    """The gpunn activation of a torch activation module: its class and the constructor
    arguments gpunn fixes (``TORCH_OPTIONS``) must match; another value is refused."""
    kind, wanted = type(child).__name__, []
    for activation, cls in TORCH_ACTIVATIONS.items():
        options = TORCH_OPTIONS.get(activation, {})
        if cls != kind:
            continue
        if all(getattr(child, option) == value for option, value in options.items()):
            return activation
        wanted.append(options)
    got = ", ".join(f"{option}={getattr(child, option)!r}" for option in wanted[0])
    expected = " or ".join(", ".join(f"{k}={v!r}" for k, v in options.items())
                           for options in wanted)
    raise TypeError(f"{name}: gpunn cannot represent {kind}({got}): expected {expected}")


def _host_parameter(torch, name, tensor):
    """A parameter as a finite float32/float64 NumPy array."""
    if tensor.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name}: expected float32 or float64 parameters, got {tensor.dtype}; "
                        "convert the module with .float()")
    values = tensor.detach().cpu().numpy().copy()
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: expected finite values, got "
                         f"{int((~np.isfinite(values)).sum())} NaN/inf entries")
    return values
