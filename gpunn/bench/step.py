"""One training step of an MLP against its GEMM floor and its peers.

A step is what mini-batch training repeats: gather the batch's rows, forward (hidden sigmoid),
softmax cross-entropy, backward, Adam update. Contenders, interleaved per batch size:

- ``gpunn``: the library's own step (:func:`gpunn_step`, the one place that builds it);
- ``GEMM floor``: the step's matrix products alone (three per layer, no input gradient) through
  the backend's ``matmul`` on preallocated buffers: the hardware floor of the step;
- ``torch eager`` / ``torch eager, fused Adam``: ``nn.Sequential`` of Linear + Sigmoid,
  ``CrossEntropyLoss``, ``torch.optim.Adam`` (CPU default: a loop over tensors, or fused).

On a CUDA backend only gpunn and its floor run here; the GPU peers run in their own processes
(:mod:`gpunn.bench.processes`).
"""

import itertools

import numpy as np

from gpunn.bench.harness import interleaved

LR = 1e-3


def synthetic(n, n_in, n_classes, seed=0):
    """Standard-normal float32 inputs and uniform integer labels (speed does not care)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, n_in), dtype=np.float32),
            rng.integers(0, n_classes, n).astype(np.int64))


def gpunn_step(sizes, X, y, batch, output="softmax", optimizer="adam", lr=LR,
               precision="fp32"):
    """gpunn's training step (:class:`gpunn.step.TrainStep`, what ``fit`` runs per batch):
    the next batch of a fixed shuffle each call, epoch after epoch (:func:`loop`).

    The only place in the benchmarks that reaches the library's step.

    Returns:
        ``(step, backend)``: a zero-argument callable and the backend it runs on.
    """
    import gpunn
    from gpunn.optim import get_optimizer
    from gpunn.step import TrainStep

    model = gpunn.MLP(sizes, activation="sigmoid", output=output, seed=0, precision=precision)
    Xd, T, loss = model.prepare(X, y)
    step = TrainStep(model, loss, get_optimizer(optimizer, lr), Xd, T, batch)
    step.shuffle(np.random.default_rng(0))
    return loop(step), model.backend


def loop(trainer):
    """A zero-argument callable that runs ``trainer``'s next step (a
    :class:`gpunn.step.TrainStep`) each call; after an epoch's last step it begins another
    with the same learning rates and row order: a loop of steps, as the benchmarks time them.
    """
    lrs = [trainer.optimizer.lr] * trainer.n_steps
    k = [trainer.n_steps]

    def run():
        if k[0] == trainer.n_steps:
            trainer.begin_epoch(lrs)
            k[0] = 0
        trainer.run(k[0])
        k[0] += 1

    return run


def _operand(backend, values, precision):
    """``values`` as the GEMM of ``precision`` reads them (bf16: bits from round_bf16)."""
    x = backend.asarray(values, np.float32)
    if precision != "bf16":
        return x
    bits = backend.xp.empty(x.shape, dtype=np.uint16)
    backend.kernel("round_bf16", x, bits)
    return bits


def gemm_floor(sizes, batch, backend, precision="fp32"):
    """The step's matrix products alone at ``precision`` on preallocated buffers (same BLAS,
    same transposed views as the model; float32 outputs)."""
    rng = np.random.default_rng(0)
    pairs = list(itertools.pairwise(sizes))
    # Values of the sizes a trained network sees: no overflow, no subnormals.
    def uniform(low, high, shape):  # float32 draws: the largest rows are gigabytes in float64
        return rng.random(shape, dtype=np.float32) * np.float32(high - low) + np.float32(low)

    weights = [_operand(backend, uniform(-0.05, 0.05, s), precision) for s in pairs]
    acts = [_operand(backend, uniform(0, 1, (batch, s)), precision) for s in sizes]
    deltas = [_operand(backend, uniform(-0.01, 0.01, (batch, s)), precision) for s in sizes]
    outs = [backend.empty((batch, s), np.float32) for s in sizes]
    grads = [backend.empty(s, np.float32) for s in pairs]

    def step():
        for i, W in enumerate(weights):
            backend.matmul(acts[i], W, out=outs[i + 1], precision=precision)
        for i in range(len(weights) - 1, -1, -1):
            backend.matmul(acts[i], deltas[i + 1], out=grads[i], trans_a=True,
                           precision=precision)
            if i:
                backend.matmul(deltas[i + 1], weights[i], out=outs[i], trans_b=True,
                               precision=precision)

    return step


def torch_step(torch, sizes, X, y, batch, fused=False, device="cpu", capturable=False):
    """PyTorch eager: gather, zero_grad, forward, loss, backward, Adam step (no host read)."""
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Sigmoid())
    net = torch.nn.Sequential(*layers).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR, fused=fused or None,
                                 capturable=capturable)
    criterion = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    idx = torch.from_numpy(np.random.default_rng(0).permutation(X.shape[0])[:batch]).to(device)

    def step():
        xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
        optimizer.zero_grad(set_to_none=False)
        loss = criterion(net(xb), yb)
        loss.backward()
        optimizer.step()
        return loss

    return step


def flops(sizes, batch):
    """Floating-point operations of the step's GEMMs: 3 per layer but no input gradient."""
    pairs = list(itertools.pairwise(sizes))
    return 2 * batch * (3 * sum(a * b for a, b in pairs) - sizes[0] * sizes[1])


def run(sizes, batches, torch=None, rounds=5, min_sample_s=0.05, progress=None):
    """Interleave the contenders at every batch size.

    Returns:
        ``[{"sizes", "batch", "contenders": {name: stats + samples_per_s + gflop_per_s},
        "ratios": {"<name> / gpunn": median ratio}}]``.
    """
    X, y = synthetic(2 * max(batches), sizes[0], sizes[-1])  # more rows than a batch
    results = []
    progress = progress or (lambda text: None)
    for batch in batches:
        progress(f" {'-'.join(map(str, sizes))} batch {batch}")
        step, backend = gpunn_step(sizes, X, y, batch)
        found = {"gpunn": step, "GEMM floor": gemm_floor(sizes, batch, backend)}
        if backend.xp is np and torch is not None:
            found["torch eager"] = torch_step(torch, sizes, X, y, batch)
            found["torch eager, fused Adam"] = torch_step(torch, sizes, X, y, batch, True)
        timings = interleaved(found, rounds, min_sample_s, sync=backend.synchronize,
                              progress=progress)
        results.append(comparison(sizes, batch, timings))
    return results


def comparison(sizes, batch, timings, not_available=None):
    """One batch size's row: every contender's stats with samples/s and GEMM GFLOP/s, each
    contender's median over gpunn's, and the contenders that could not run, with why."""
    work = flops(sizes, batch)
    gpunn = timings.get("gpunn", {}).get("median")
    return {"sizes": list(sizes), "batch": batch,
            "contenders": {name: {**t, "samples_per_s": batch / t["median"],
                                  "gflop_per_s": work / t["median"] / 1e9}
                           for name, t in timings.items()},
            "ratios": {f"{name} / gpunn": t["median"] / gpunn
                       for name, t in timings.items() if name != "gpunn" and gpunn},
            "not_available": dict(not_available or {})}
