"""gpunn in precision bf16 against PyTorch CPU ``torch.autocast("cpu", dtype=torch.bfloat16)``
with float32 master weights: same MLP, initial weights, batches and Adam, 50 steps.

The tolerance is bf16's own effect on this training as PyTorch shows it, ``E = |torch bf16 -
torch fp32|`` (per-step losses: the largest difference; weights: the norm of the difference):

- gpunn bf16 is within ``2 E`` of torch bf16. Both are the fp32 trajectory perturbed by bfloat16
  rounding; gpunn rounds a subset of what autocast rounds (the same GEMM inputs, but not the
  GEMM outputs, bias sums, activations, or the weight gradients autocast hands back in
  bfloat16), so its distance to fp32 is at most about E, and the triangle inequality gives 2 E.
- gpunn bf16 differs from gpunn fp32 by far more than float32 noise (100 times the fp32-vs-fp32
  difference of the two libraries): the bf16 path is not a silent fp32 one.

A test, not a bound from first principles: two rounded trajectories drift apart at a rate
that depends on the problem, which is why E is measured on the same problem, by PyTorch.
"""

from functools import cache

import numpy as np
import pytest
from test_torch_parity import torch_twin

import gpunn
from gpunn.optim import get_optimizer

torch = pytest.importorskip("torch")

SIZES, ROWS, BATCH, STEPS, LR = [20, 64, 64, 5], 256, 32, 50, 1e-2


@cache
def problem():
    """A learnable 5-class problem and STEPS batches of row indices (fresh permutations)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((ROWS, SIZES[0])).astype(np.float32)
    logits = X @ rng.standard_normal((SIZES[0], SIZES[-1])) + 0.5 * rng.standard_normal(
        (ROWS, SIZES[-1]))
    order = np.random.default_rng(1)
    rows = np.concatenate([order.permutation(ROWS) for _ in range(STEPS * BATCH // ROWS + 1)])
    return X, np.argmax(logits, axis=1), rows[: STEPS * BATCH].reshape(STEPS, BATCH)


def _model(activation, precision):
    return gpunn.MLP(SIZES, activation=activation, output="softmax", seed=3, precision=precision)


def run_gpunn(activation, precision):
    """Per-step losses and the final weights (flattened, float64)."""
    X, y, batches = problem()
    model, optimizer = _model(activation, precision), get_optimizer("adam", lr=LR)
    losses = []
    for rows in batches:
        losses.append(model.loss_and_grad(X[rows], y[rows]))
        optimizer.step(model)
    weights = [model.backend.to_numpy(layer.W) for layer in model.layers]
    return np.array(losses), np.concatenate([w.ravel() for w in weights]).astype(np.float64)


@cache
def run_torch(activation, bf16):
    """The same training in PyTorch, under bfloat16 autocast or in float32."""
    X, y, batches = problem()
    with gpunn.use_backend("cpu"):
        net = torch_twin(torch, _model(activation, "fp32"),
                         {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[activation])
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    inputs, labels, losses = torch.from_numpy(X), torch.from_numpy(y).long(), []
    for rows in batches:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(inputs[rows])
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[rows])  # fp32 loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    weights = [linear.weight.detach().numpy().T.ravel() for linear in net[::2]]
    return np.array(losses), np.concatenate(weights).astype(np.float64)


def _distances(a, b):
    return np.abs(a[0] - b[0]).max(), np.linalg.norm(a[1] - b[1])


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_bf16_training_agrees_with_torch_autocast(backend, activation):
    torch_bf16, torch_fp32 = run_torch(activation, True), run_torch(activation, False)
    ours_bf16, ours_fp32 = run_gpunn(activation, "bf16"), run_gpunn(activation, "fp32")
    assert ours_bf16[0][-1] < 0.2 * ours_bf16[0][0], "bf16 training did not learn"
    effect = _distances(torch_bf16, torch_fp32)
    for got, bound, what in zip(_distances(ours_bf16, torch_bf16), effect, ["loss", "W"]):
        assert got <= 2 * bound, f"{what}: {got:.3g} > 2 x bf16's effect {bound:.3g}"
    noise = _distances(ours_fp32, torch_fp32)
    for got, floor, what in zip(_distances(ours_bf16, ours_fp32), noise, ["loss", "W"]):
        assert got > 100 * floor, f"{what}: bf16 moved {got:.3g}, fp32 noise {floor:.3g}"
