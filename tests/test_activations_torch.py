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
TORCH_MODULES = {"leaky_relu": lambda nn: nn.LeakyReLU()}


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
