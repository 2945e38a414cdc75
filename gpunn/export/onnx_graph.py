"""gpunn models as ONNX graphs (the ``onnx`` package, from the ``onnx`` extra).

The graph has one input ``"X"`` ``(batch, n_in)`` in the model's dtype and, per layer,
``MatMul`` by ``W`` (gpunn's layout: no transpose), ``Add`` of ``b`` and the activation node.
Outputs: ``"output"`` ``(batch, n_out)`` for regression (:meth:`~gpunn.Sequential.predict`);
for classifiers ``"label"`` (int64, as ``predict``: the argmax for softmax, ``logit > 0`` for
sigmoid, shape ``(batch,)`` with one output unit) and ``"probabilities"``
(:meth:`~gpunn.Sequential.predict_proba`).
"""

import numpy as np

from gpunn._compat import require
from gpunn._files import atomic_write, check_target
from gpunn.export.layout import (
    ONNX_ACTIVATIONS,
    TORCH_OPTIONS,
    host_layers,
    norm_params,
    round_gemm_input,
)

# Lowest opset with every node used: Cast to bfloat16 needs 13, BitCast (the TF32 rounding) 26.
OPSETS = {"fp32": 13, "bf16": 13, "tf32": 26}
# Activations written as a decomposition, by ONNX_ACTIVATIONS' name: the graph method writing
# it. Gelu and SiLU are past opset 13; onnxruntime has no float64 LeakyRelu (nor Erf: a float64
# gelu graph is valid ONNX, run by onnx.reference, but not by onnxruntime's CPU provider).
DECOMPOSED = {"Gelu": "gelu", "GeluTanh": "gelu_tanh", "Silu": "silu",
              "LeakyRelu": "leaky_relu"}
# A serialized protobuf (one .onnx file without external data) must stay below 2 GiB.
PROTOBUF_LIMIT = 2**31 - 2**20


def to_onnx(model, path):
    """Write the model as an ONNX graph to ``path`` (atomically); checked by ``onnx.checker``.

    tf32 / bf16 models round each layer's input to the GEMM's precision inside the graph (the
    weights are stored already rounded), as gpunn's GEMMs do: see :mod:`gpunn.export`.

    Returns:
        ``path``.
    """
    onnx = require("onnx", "onnx", "to_onnx")
    target = check_target("path", path)  # once, before any work
    helper = onnx.helper
    layers = host_layers(model)
    size = sum(W.nbytes + b.nbytes for _, W, b in layers)
    if size > PROTOBUF_LIMIT:
        raise ValueError(f"model: expected parameters under 2 GiB for one ONNX file (protobuf's "
                         f"limit), got {size} bytes; export with gpunn.export.save_state_dict")
    float_type = helper.np_dtype_to_tensor_dtype(model.dtype)
    graph = _Graph(onnx, model.precision, model.dtype)
    name = "X"
    for i, (layer, W, b) in enumerate(layers):
        x = name
        if layer.ln is not None:
            name = graph.layernorm(i, name, *norm_params(model, layer), layer.ln.eps)
        name = graph.dense(i, name, round_gemm_input(W, model.precision), b, layer.activation)
        if layer.residual:
            name = graph.node("Add", [x, name], f"residual{i}")
    outputs = graph.head(name, model.output, model.n_out, float_type)
    proto = helper.make_graph(graph.nodes, "gpunn", [
        helper.make_tensor_value_info("X", float_type, ["batch", model.n_in])], outputs,
        graph.initializers)
    opset = OPSETS[model.precision]
    onnx_model = helper.make_model(
        proto, opset_imports=[helper.make_opsetid("", opset)], producer_name="gpunn",
        ir_version=helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))
    onnx.checker.check_model(onnx_model, full_check=True)
    blob = onnx_model.SerializeToString()
    return atomic_write(target, lambda file: file.write(blob))


class _Graph:
    """Nodes and initializers of the graph being built."""

    def __init__(self, onnx, precision, dtype):
        self.onnx, self.helper, self.types = onnx, onnx.helper, onnx.TensorProto
        self.precision, self.dtype = precision, dtype
        self.nodes, self.initializers = [], []

    def constant(self, name, values):
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(values), name))
        return name

    def node(self, op, inputs, output, **attributes):
        self.nodes.append(self.helper.make_node(op, inputs, [output], **attributes))
        return output

    def dense(self, i, x, W, b, activation):
        """Nodes of layer ``i`` reading ``x``; the name of its output."""
        x = self.rounded(i, x)
        z = self.node("MatMul", [x, self.constant(f"W{i}", W)], f"matmul{i}")
        z = self.node("Add", [z, self.constant(f"b{i}", b)], f"z{i}")
        op = ONNX_ACTIVATIONS[activation]
        if op is None:
            return z
        if op in DECOMPOSED:
            return getattr(self, DECOMPOSED[op])(i, z)
        return self.node(op, [z], f"a{i}")

    def layernorm(self, i, x, gamma, beta, eps):
        """LayerNormalization (opset 17) decomposed for opset 13: (x - mean) / sqrt(var + eps)
        * gamma + beta over the last axis, the biased variance, as PyTorch's nn.LayerNorm."""
        mean = self.node("ReduceMean", [x], f"ln{i}_mean", axes=[-1], keepdims=1)
        d = self.node("Sub", [x, mean], f"ln{i}_d")
        var = self.node("ReduceMean", [self.node("Mul", [d, d], f"ln{i}_d2")], f"ln{i}_var",
                        axes=[-1], keepdims=1)
        std = self.node("Sqrt", [self.node("Add", [var, self.scalar(f"ln{i}_eps", eps)],
                                           f"ln{i}_veps")], f"ln{i}_std")
        y = self.node("Mul", [self.node("Div", [d, std], f"ln{i}_xhat"),
                              self.constant(f"gamma{i}", gamma)], f"ln{i}_scaled")
        return self.node("Add", [y, self.constant(f"beta{i}", beta)], f"ln{i}")

    def scalar(self, name, value):
        """A constant scalar in the model's dtype (ONNX's Mul/Add need equal types)."""
        return self.constant(name, np.asarray(value, dtype=self.dtype))

    def gelu(self, i, z):
        """0.5 z (1 + Erf(z / sqrt 2)) (Gelu is opset 20)."""
        e = self.node("Erf", [self.node("Mul", [z, self.scalar(f"gelu_rsqrt2_{i}", 0.5 ** 0.5)],
                                        f"gelu_s{i}")], f"gelu_erf{i}")
        e = self.node("Add", [e, self.scalar(f"gelu_one{i}", 1.0)], f"gelu_1p{i}")
        half = self.node("Mul", [z, self.scalar(f"gelu_half{i}", 0.5)], f"gelu_h{i}")
        return self.node("Mul", [half, e], f"a{i}")

    def gelu_tanh(self, i, z):
        """z Sigmoid(2 sqrt(2/pi) (z + 0.044715 z^3)), i.e. 0.5 z (1 + tanh(u))."""
        cube = self.node("Mul", [self.node("Mul", [z, z], f"gelu_z2{i}"), z], f"gelu_z3{i}")
        u = self.node("Add", [z, self.node("Mul", [cube, self.scalar(f"gelu_c3_{i}", 0.044715)],
                                           f"gelu_cz3{i}")], f"gelu_u{i}")
        u = self.node("Mul", [u, self.scalar(f"gelu_c2u_{i}", 2.0 * (2.0 / np.pi) ** 0.5)],
                      f"gelu_2u{i}")
        return self.node("Mul", [z, self.node("Sigmoid", [u], f"gelu_s{i}")], f"a{i}")

    def leaky_relu(self, i, z):
        """Max(z, 0.01 z): the slope is below 1 (layout.TORCH_OPTIONS holds it)."""
        slope = TORCH_OPTIONS["leaky_relu"]["negative_slope"]
        scaled = self.node("Mul", [z, self.scalar(f"leaky_slope{i}", slope)], f"leaky_s{i}")
        return self.node("Max", [z, scaled], f"a{i}")

    def silu(self, i, z):
        """z Sigmoid(z)."""
        return self.node("Mul", [z, self.node("Sigmoid", [z], f"silu_s{i}")], f"a{i}")

    def rounded(self, i, x):
        """``x`` rounded to the GEMM input of the precision (a float32 tensor)."""
        if self.precision == "bf16":
            half = self.node("Cast", [x], f"x{i}_bf16", to=self.types.BFLOAT16)
            return self.node("Cast", [half], f"x{i}_rounded", to=self.types.FLOAT)
        if self.precision == "tf32":
            # Nearest even at bit 13 on the float32 bits, as kernels/precision.cuh does.
            bits = self.node("BitCast", [x], f"x{i}_bits", to=self.types.INT32)
            lsb = self.node("BitwiseAnd", [bits, self.constant(f"lsb{i}", np.int32(8192))],
                            f"x{i}_lsb")
            lsb = self.node("Div", [lsb, self.constant(f"lsb_scale{i}", np.int32(8192))],
                            f"x{i}_lsb1")
            up = self.node("Add", [bits, self.constant(f"half{i}", np.int32(4095))],
                           f"x{i}_up")
            up = self.node("Add", [up, lsb], f"x{i}_up1")
            bits = self.node("BitwiseAnd", [up, self.constant(f"mask{i}", np.int32(-8192))],
                             f"x{i}_cut")
            return self.node("BitCast", [bits], f"x{i}_rounded", to=self.types.FLOAT)
        return x

    def head(self, z, output, n_out, float_type):
        """The outputs' nodes and value infos after the last layer's output ``z``."""
        value = self.helper.make_tensor_value_info
        if output is None:
            self.node("Identity", [z], "output")
            return [value("output", float_type, ["batch", n_out])]
        if output == "softmax":
            self.node("Softmax", [z], "probabilities", axis=-1)
            self.node("ArgMax", [z], "label", axis=1, keepdims=0)
            return [value("label", self.types.INT64, ["batch"]),
                    value("probabilities", float_type, ["batch", n_out])]
        self.node("Sigmoid", [z], "probabilities")
        positive = self.node("Greater", [z, self.constant("zero", np.zeros((), self.dtype))],
                             "positive")
        labels = self.node("Cast", [positive], "labels" if n_out == 1 else "label",
                           to=self.types.INT64)
        if n_out == 1:
            self.node("Squeeze", [labels, self.constant("axis1", np.array([1]))], "label")
        return [value("label", self.types.INT64, ["batch"] if n_out == 1 else ["batch", n_out]),
                value("probabilities", float_type, ["batch", n_out])]

