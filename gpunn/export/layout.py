"""What every export reads: the host parameters of a model, the PyTorch layout, GEMM rounding."""

import numpy as np

from gpunn._files import atomic_write, check_target
from gpunn.sharing import check_model

# gpunn activation -> (torch.nn module class, ONNX operator); None: no module / node. The one
# row a new activation adds to the exports.
EXPORT_ACTIVATIONS = {"identity": (None, None), "sigmoid": ("Sigmoid", "Sigmoid"),
                      "relu": ("ReLU", "Relu"), "tanh": ("Tanh", "Tanh"),
                      # both defaults are gpunn's slope: negative_slope / alpha = 0.01
                      "leaky_relu": ("LeakyReLU", "LeakyRelu"),
                      # ops past the exporter's opset 13, written as their decompositions
                      # (gpunn.export.onnx_graph.DECOMPOSED)
                      "gelu": ("GELU", "Gelu"), "gelu_tanh": ("GELU", "GeluTanh"),
                      "silu": ("SiLU", "Silu")}
TORCH_ACTIVATIONS = {name: torch for name, (torch, _) in EXPORT_ACTIVATIONS.items()}
ONNX_ACTIVATIONS = {name: onnx for name, (_, onnx) in EXPORT_ACTIVATIONS.items()}
# Constructor arguments of an activation's torch module, where gpunn's math fixes one: the
# export passes them and the import accepts a module only with these values.
TORCH_OPTIONS = {"leaky_relu": {"negative_slope": 0.01}, "gelu": {"approximate": "none"},
                 "gelu_tanh": {"approximate": "tanh"}}
# Bits of the float32 mantissa that the GEMMs of each precision drop (round to nearest even).
DROPPED_BITS = {"fp32": 0, "tf32": 13, "bf16": 16}


def host_layers(model):
    """``[(layer, W, b), ...]``: every Dense layer with its parameters as host arrays (model
    dtype), after checking they are finite (a model that diverged is not exported)."""
    check_model("model", model)
    result = []
    for i, layer in enumerate(model.layers):
        if layer.activation not in TORCH_ACTIVATIONS:
            raise TypeError(f"model.layers[{i}].activation: expected one of "
                            f"{sorted(TORCH_ACTIVATIONS)} (those gpunn.export can write), got "
                            f"{layer.activation!r}")
        W, b = (model.backend.to_numpy(p) for p in (layer.W, layer.b))
        norm = [] if layer.ln is None else [
            ("ln.gamma", model.backend.to_numpy(layer.ln.gamma)),
            ("ln.beta", model.backend.to_numpy(layer.ln.beta))]
        for name, values in (("W", W), ("b", b), *norm):
            if not np.isfinite(values).all():
                raise ValueError(f"model.layers[{i}].{name}: expected finite values, got "
                                 f"{int((~np.isfinite(values)).sum())} NaN/inf entries")
        result.append((layer, W, b))
    return result


def torch_positions(model):
    """Index in the exported ``nn.Sequential`` of each layer's ``Linear`` (each followed by
    its activation module, if any, and its ``nn.Dropout``, if any)."""
    positions, index = [], 0
    for layer in model.layers:
        positions.append(index)
        index += 1 if layer.is_block or TORCH_ACTIVATIONS[layer.activation] is None else 2
        index += layer.dropout > 0  # its nn.Dropout
    return positions


def norm_params(model, layer):
    """``(gamma, beta)`` of a layer's LayerNorm as host arrays."""
    return tuple(model.backend.to_numpy(p) for p in (layer.ln.gamma, layer.ln.beta))


def state_dict(model):
    """The PyTorch ``state_dict`` of :func:`to_torch`'s module as NumPy arrays (no torch
    needed): ``"{i}.weight"`` ``(n_out, n_in)`` and ``"{i}.bias"`` in the model's dtype; a
    norm / residual layer's block ``"{i}.linear.weight"``, ``"{i}.norm.weight"``, ...."""
    arrays, layers = {}, host_layers(model)
    for position, (layer, W, b) in zip(torch_positions(model), layers):
        linear = f"{position}.linear" if layer.is_block else f"{position}"
        arrays[f"{linear}.weight"] = np.ascontiguousarray(W.T)
        arrays[f"{linear}.bias"] = np.ascontiguousarray(b)
        if layer.ln is not None:
            gamma, beta = norm_params(model, layer)
            arrays[f"{position}.norm.weight"] = np.ascontiguousarray(gamma)
            arrays[f"{position}.norm.bias"] = np.ascontiguousarray(beta)
    return arrays


def save_state_dict(model, path):
    """Write :func:`state_dict` as a safetensors file, atomically.

    ``module.load_state_dict(safetensors.torch.load_file(path))`` accepts it for the module of
    :func:`to_torch` and for a hand-written ``nn.Sequential`` of the same layout.

    Returns:
        ``path``.
    """
    from safetensors.numpy import save  # a dependency of gpunn, imported when used

    target = check_target("path", path)  # once, before any work
    blob = save(state_dict(model), metadata={"format": "pt"})
    return atomic_write(target, lambda file: file.write(blob))


def round_gemm_input(values, precision):
    """float32 ``values`` rounded (nearest even, on the bits) as ``precision``'s GEMMs read
    them; finite inputs (NaN payloads are not kept as the kernels keep them)."""
    shift = DROPPED_BITS[precision]
    if not shift:
        return values
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    half, lsb = np.uint32((1 << (shift - 1)) - 1), (bits >> np.uint32(shift)) & np.uint32(1)
    return (((bits + half + lsb) >> np.uint32(shift)) << np.uint32(shift)).view(np.float32)


