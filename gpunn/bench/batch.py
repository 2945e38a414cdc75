"""Batch vs mini-batch vs stochastic gradient descent: what each batch size buys per second.

Every batch size trains its own model (same seed) with :func:`gpunn.fit`. The configurations
advance round-robin, one chunk of rows each (about ``budget_s / points`` seconds of training),
so they share the machine's good and bad moments; after each chunk the cost is evaluated on a
fixed subset of the training set, untimed. A configuration stops at ``max_epochs`` epochs or
``budget_s`` seconds of training. Per-epoch figures of one that stopped inside its first
epoch are extrapolated from its measured throughput and flagged ``"extrapolated": true``.

The target cost is the median, over the configurations, of the lowest cost each reached (so
about half reach it); the winner is the batch size that reaches it in the fewest seconds.
"""

import math

import numpy as np

import gpunn
from gpunn.optim import get_optimizer

MAX_POINTS = 400


def synthetic_mnist(n=60000, n_in=784, n_classes=10, seed=0):
    """MNIST-sized synthetic classification: inputs N(0, 1); labels from a random one-hidden-
    layer teacher with noise, so the classes are learnable but not separable."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in), dtype=np.float32)
    A = rng.standard_normal((n_in, 64)).astype(np.float32) / np.sqrt(n_in)
    B = rng.standard_normal((64, n_classes)).astype(np.float32)
    logits = np.tanh(X @ A * 2.0) @ B + rng.gumbel(size=(n, n_classes)).astype(np.float32)
    return X, np.argmax(logits, axis=1).astype(np.int64)


def digits():
    """scikit-learn's 8x8 digits (1797 x 64, 10 classes), standardized per feature."""
    from gpunn import datasets

    X, y = datasets.digits()
    return datasets.standardize(X)[0].astype(np.float32), y


class Run:
    """One batch size: its model, optimizer, position in the epoch and measured curve."""

    def __init__(self, sizes, batch, n, optimizer, lr, seed):
        self.batch, self.n = batch, n
        self.step_rows = n if batch is None else min(batch, n)
        self.model = gpunn.MLP(sizes, activation="sigmoid", output="softmax", seed=seed)
        self.optimizer = get_optimizer(optimizer, lr)
        self.rng = np.random.default_rng(seed)
        self.order, self.pos = self.rng.permutation(n), 0
        self.seconds, self.seen, self.steps = 0.0, 0, 0
        self.chunk = self.step_rows
        self.points = []

    def done(self, budget_s, max_epochs):
        return self.seconds >= budget_s or self.seen >= max_epochs * self.n

    def advance(self, X, y, chunk_s):
        """Train on the next chunk of rows (never across an epoch end); returns seconds."""
        rows = min(self.chunk, self.n - self.pos)
        idx = np.sort(self.order[self.pos:self.pos + rows]) if rows < self.n else self.order
        history = gpunn.fit(self.model, X[idx], y[idx], optimizer=self.optimizer, epochs=1,
                            batch_size=min(self.step_rows, rows), shuffle=rows < self.n,
                            seed=int(self.rng.integers(2**31)), progress=False)
        seconds = history.seconds[-1]
        self.seconds += seconds
        self.seen += rows
        self.steps += math.ceil(rows / self.step_rows)
        self.pos += rows
        per_row = seconds / rows
        self.chunk = max(self.step_rows, int(chunk_s / per_row) // self.step_rows
                         * self.step_rows)
        return seconds

    def record(self, cost):
        self.points.append({"samples": self.seen, "seconds": self.seconds, "cost": cost})
        if self.pos >= self.n:
            self.order, self.pos = self.rng.permutation(self.n), 0


def _evaluate(model, X, y):
    return float(model.evaluate(X, y, batch_size=4096)[0])


def sweep(X, y, sizes, batches, budget_s, max_epochs, eval_rows=5000, points=12,
          optimizer="sgd", lr=0.1, seed=0):
    """Train one model per batch size (None = full batch), round-robin; their curves.

    Returns:
        ``{"runs": [per batch size: batch, steps, samples, seconds, samples_per_s,
        seconds_per_epoch, extrapolated, epochs, final_cost, curve (samples, seconds, cost),
        time_to_target_s], "initial_cost", "target_cost", "fastest_to_target"}``.
    """
    n = X.shape[0]
    eval_idx = np.random.default_rng(seed + 1).permutation(n)[:min(eval_rows, n)]
    Xe, ye = X[eval_idx], y[eval_idx]
    runs = [Run(sizes, b, n, optimizer, lr, seed) for b in batches]
    gpunn.fit(gpunn.MLP(sizes, output="softmax"), X[:16], y[:16], epochs=1, batch_size=8,
              progress=False)  # loads every kernel once, outside the clock
    initial = _evaluate(runs[0].model, Xe, ye)
    for run in runs:
        run.points.append({"samples": 0, "seconds": 0.0, "cost": initial})
    active = list(runs)
    while active:
        for run in list(active):
            run.advance(X, y, budget_s / points)
            run.record(_evaluate(run.model, Xe, ye))
            if run.done(budget_s, max_epochs) or len(run.points) >= MAX_POINTS:
                active.remove(run)
    return _summarize(runs, initial)


def _summarize(runs, initial):
    target = float(f"{np.median([min(p['cost'] for p in run.points) for run in runs]):.2g}")
    results = []
    for run in runs:
        hit = next((p for p in run.points if p["cost"] <= target), None)
        rate = run.seen / run.seconds if run.seconds > 0 else math.inf
        results.append({
            "batch": "full" if run.batch is None else run.batch, "rows_per_step": run.step_rows,
            "steps": run.steps, "samples": run.seen, "seconds": run.seconds,
            "samples_per_s": rate, "seconds_per_epoch": run.n / rate,
            "extrapolated": run.seen < run.n, "epochs": run.seen / run.n,
            "final_cost": run.points[-1]["cost"],
            "curve": run.points, "time_to_target_s": hit["seconds"] if hit else None})
    reached = [r for r in results if r["time_to_target_s"] is not None]
    fastest = min(reached, key=lambda r: r["time_to_target_s"])["batch"] if reached else None
    return {"initial_cost": initial, "target_cost": target, "fastest_to_target": fastest,
            "runs": results}
