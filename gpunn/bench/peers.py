"""One training step of an MLP against its peers and against its own GEMM floor.

A step is what mini-batch training repeats: gather the batch's rows, forward, softmax
cross-entropy, backward, Adam update. Contenders, interleaved per batch size:

- ``gpunn``: :class:`gpunn.step.TrainStep` (what :func:`gpunn.fit` runs per batch);
- ``torch default`` / ``torch fused``: PyTorch eager, ``nn.Sequential`` of Linear + Sigmoid,
  ``CrossEntropyLoss``, ``torch.optim.Adam`` with its CPU default (a loop over the tensors) or
  ``fused=True``;
- ``numpy``: the textbook vectorized NumPy MLP of :mod:`gpunn.bench.numpy_mlp`;
- ``GEMM floor``: only the step's matrix products (three forward, five backward: no input
  gradient), with the same BLAS on preallocated buffers.

On a GPU backend only gpunn and its GEMM floor run (the peers here are CPU code).
"""

import itertools

import numpy as np

from gpunn.bench.harness import interleaved
from gpunn.bench.numpy_mlp import NumpyMLP

LR = 1e-3


def synthetic(n, n_in, n_classes, seed=0):
    """Standard-normal float32 inputs and uniform integer labels (speed does not care)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, n_in), dtype=np.float32),
            rng.integers(0, n_classes, n).astype(np.int64))


def gpunn_step(sizes, X, y, batch):
    """:class:`gpunn.step.TrainStep` of a float32 MLP with Adam on the current backend."""
    import gpunn
    from gpunn.step import TrainStep

    model = gpunn.MLP(sizes, activation="sigmoid", output="softmax", seed=0)
    Xd, T, loss = model.prepare(X, y)
    trainer = TrainStep(model, loss, gpunn.Adam(lr=LR), Xd, T, batch)
    trainer.shuffle(np.random.default_rng(0))
    return trainer.run_next, model.backend


def torch_step(torch, sizes, X, y, batch, fused):
    """PyTorch eager: gather, zero_grad, forward, loss, backward, Adam step."""
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Sigmoid())
    net = torch.nn.Sequential(*layers)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR, fused=fused or None)
    criterion = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    idx = torch.from_numpy(np.random.default_rng(0).permutation(X.shape[0])[:batch])

    def step():
        xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
        optimizer.zero_grad(set_to_none=False)
        loss = criterion(net(xb), yb)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def numpy_step(sizes, X, y, batch):
    """The textbook NumPy MLP on a gathered batch."""
    mlp = NumpyMLP(sizes, lr=LR)
    idx = np.random.default_rng(0).permutation(X.shape[0])[:batch]
    return lambda: mlp.step(X[idx], y[idx])


def gemm_floor(sizes, batch, backend):
    """The step's matrix products alone on preallocated float32 buffers, through the
    backend's ``matmul`` (same BLAS, same transposed views as the model)."""
    rng = np.random.default_rng(0)
    pairs = list(itertools.pairwise(sizes))
    # Values of the sizes a trained network sees: no overflow, no denormals.
    weights = [backend.asarray(rng.uniform(-0.05, 0.05, shape), np.float32) for shape in pairs]
    acts = [backend.asarray(rng.uniform(0, 1, (batch, s)), np.float32) for s in sizes]
    deltas = [backend.asarray(rng.uniform(-0.01, 0.01, (batch, s)), np.float32) for s in sizes]
    grads = [backend.empty(w.shape, np.float32) for w in weights]

    def step():
        for i, W in enumerate(weights):
            backend.matmul(acts[i], W, out=acts[i + 1])
        for i in range(len(weights) - 1, -1, -1):
            backend.matmul(acts[i], deltas[i + 1], out=grads[i], trans_a=True)
            if i:
                backend.matmul(deltas[i + 1], weights[i], out=deltas[i], trans_b=True)

    return step


def flops_per_step(sizes, batch):
    """Multiply-adds x 2 of the step's GEMMs: 3 per layer but no input gradient."""
    pairs = list(itertools.pairwise(sizes))
    return 2 * batch * (3 * sum(a * b for a, b in pairs) - sizes[0] * sizes[1])


def run(sizes, batches, torch=None, rounds=5, min_sample_s=0.05, n_rows=None):
    """Interleave the contenders at every batch size.

    Returns:
        A list of ``{"batch", "contenders": {name: timing + samples_per_s + gflops},
        "ratios": {"gpunn vs <name>": median(name) / median(gpunn)}}``.
    """
    results = []
    for batch in batches:
        X, y = synthetic(n_rows or max(batches), sizes[0], sizes[-1])
        step, backend = gpunn_step(sizes, X, y, batch)
        found = {"gpunn": step}
        if torch is not None and backend.name == "cpu":
            found["torch default"] = torch_step(torch, sizes, X, y, batch, fused=False)
            found["torch fused"] = torch_step(torch, sizes, X, y, batch, fused=True)
        if backend.name == "cpu":
            found["numpy"] = numpy_step(sizes, X, y, batch)
        found["GEMM floor"] = gemm_floor(sizes, batch, backend)
        timings = interleaved(found, rounds, min_sample_s, sync=backend.synchronize)
        flops = flops_per_step(sizes, batch)
        results.append({
            "batch": batch, "sizes": list(sizes), "gemm_flops": flops,
            "contenders": {name: {**t.as_dict(), "samples_per_s": batch / t.median,
                                  "gemm_gflop_per_s": flops / t.median / 1e9}
                           for name, t in timings.items()},
            "ratios": {f"gpunn vs {name}": t.median / timings["gpunn"].median
                       for name, t in timings.items() if name != "gpunn"},
            "step_over_gemm_floor": timings["gpunn"].median / timings["GEMM floor"].median,
            "backend": backend.name})
    return results
