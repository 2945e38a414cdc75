"""The hidden activations beyond relu/sigmoid/tanh against PyTorch: forward, gradients and a
few Adam steps of an MLP, from the same weights and batches; the export and import rows.

The torch twin is built here from torch.nn's own modules (not through gpunn.export), so the
check does not lean on the code it also covers.
"""

import numpy as np
import pytest
import reference as ref
from test_torch_parity import batches, data, torch_twin

import gpunn
from gpunn import export
from gpunn.optim import get_optimizer

SIZES, STEPS = [5, 8, 6, 3], 5
# gpunn activation -> the torch.nn module PyTorch users write for it.
TORCH_MODULES = {"leaky_relu": lambda nn: nn.LeakyReLU(), "gelu": lambda nn: nn.GELU(),
                 "gelu_tanh": lambda nn: nn.GELU(approximate="tanh"),
                 "silu": lambda nn: nn.SiLU()}


@pytest.mark.parametrize("activation", sorted(TORCH_MODULES))
def test_adam_steps_match_torch(backend, activation):
    torch = pytest.importorskip("torch")
    X, y = data("cross_entropy")
    with gpunn.use_backend(backend):
        model = gpunn.MLP(SIZES, activation=activation, output="softmax", dtype="float32",
                          seed=3)
    net = torch_twin(torch, model, lambda: TORCH_MODULES[activation](torch.nn))
    optimizer = get_optimizer("adam", lr=0.01)
    reference = torch.optim.Adam(net.parameters(), lr=0.01)
    for rows in batches()[:STEPS]:
        loss = model.loss_and_grad(X[rows], y[rows], "cross_entropy")
        reference.zero_grad()
        logits = net(torch.from_numpy(X[rows]))
        ref.assert_close(backend.to_numpy(model.forward(X[rows])), logits.detach().numpy(),
                         np.float32, scale=10.0, err_msg="logits")
        value = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[rows]).long())
        value.backward()
        ref.assert_close(loss, value.item(), np.float32, scale=10.0, err_msg="loss")
        for layer, linear in zip(model.layers, net[::2]):
            ref.assert_close(backend.to_numpy(layer.dW), linear.weight.grad.numpy().T,
                             np.float32, scale=10.0, err_msg="dW")
            ref.assert_close(backend.to_numpy(layer.db), linear.bias.grad.numpy(),
                             np.float32, scale=10.0, err_msg="db")
        optimizer.step(model)
        reference.step()
    for layer, linear in zip(model.layers, net[::2]):
        ref.assert_close(backend.to_numpy(layer.W), linear.weight.detach().numpy().T,
                         np.float32, scale=10.0, err_msg="W")


@pytest.mark.parametrize("activation", sorted(TORCH_MODULES))
def test_export_and_import(activation):
    """to_torch writes the module torch users write; from_torch reads it back."""
    torch = pytest.importorskip("torch")
    model = gpunn.MLP(SIZES, activation=activation, output="softmax", seed=1)
    module = export.to_torch(model)
    expected = TORCH_MODULES[activation](torch.nn)
    assert type(module[1]) is type(expected) and repr(module[1]) == repr(expected)
    X = np.random.default_rng(0).normal(size=(7, SIZES[0])).astype(np.float32)
    with torch.no_grad():
        ref.assert_close(module(torch.from_numpy(X)).numpy(),
                         model.backend.to_numpy(model.forward(X)), np.float32)
    back = export.from_torch(module, output="softmax")
    assert [layer.activation for layer in back.layers] == [activation] * 2 + ["identity"]


@pytest.mark.parametrize("activation", sorted(TORCH_MODULES))
def test_bf16_forward_and_gradient(backend, activation):
    """precision "bf16" (the layers that keep z write it through the bf16 kernels too): the
    forward equals the exported module's (which rounds the GEMM inputs as gpunn does), and the
    gradient is fp32's within bfloat16 rounding (8 significant bits, a few roundings deep)."""
    torch = pytest.importorskip("torch")
    X, y = data("cross_entropy")
    with gpunn.use_backend(backend):
        model = gpunn.MLP(SIZES, activation=activation, output="softmax", seed=3,
                          precision="bf16")
    with torch.no_grad():
        expected = export.to_torch(model)(torch.from_numpy(X)).numpy()
    ref.assert_close(backend.to_numpy(model.forward(X)), expected, np.float32, scale=10.0)
    fp32 = model.copy(precision="fp32")
    model.loss_and_grad(X, y)
    fp32.loss_and_grad(X, y)
    grad, exact = (backend.to_numpy(m.flat_grads) for m in (model, fp32))
    np.testing.assert_allclose(grad, exact, rtol=0, atol=0.03 * np.abs(exact).max())


@pytest.mark.parametrize("dtype,precision", [("float32", "fp32"), ("float64", "fp32"),
                                             ("float32", "tf32"), ("float32", "bf16")])
@pytest.mark.parametrize("activation", sorted(TORCH_MODULES))
def test_onnx_runs_the_activation(tmp_path, activation, dtype, precision):
    """The ONNX graph (Gelu and SiLU as opset-13 decompositions) gives the model's outputs in
    onnxruntime (float64 gelu: in onnx.reference), the tf32 graph (opset 26) included."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = gpunn.MLP(SIZES, activation=activation, output=None, dtype=dtype, seed=2,
                      precision=precision)
    X = np.random.default_rng(0).normal(0.0, 3.0, size=(9, SIZES[0])).astype(dtype)
    path = export.to_onnx(model, str(tmp_path / "model.onnx"))
    tolerance = dtype
    if activation == "gelu" and dtype == "float64":
        # onnxruntime has no float64 Erf; onnx.reference runs the graph, its Erf to ~1e-9
        # relative (measured): float32's tolerance, not float64's.
        from onnx.reference import ReferenceEvaluator

        (out,), tolerance = ReferenceEvaluator(path).run(None, {"X": X}), "float32"
    else:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"X": X})
    ref.assert_close(out, model.backend.to_numpy(model.predict(X)), tolerance, scale=10.0)
