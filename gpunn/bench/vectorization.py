"""What vectorization buys: a per-sample Python loop against one vectorized computation.

Logistic regression (one sigmoid neuron) and an MLP, each on one batch of ``m`` samples. The
loops compute the same gradient one sample at a time: with NumPy for each sample's products,
and (logistic regression, on a few samples) with no NumPy at all. ``gpunn step`` is a whole
training step (gather, forward, loss, backward, update) on the batch: more work than the
gradient alone. Figures are per sample; a ratio is how many times faster per sample.
"""

import numpy as np

from gpunn.bench import numpy_mlp
from gpunn.bench.harness import interleaved
from gpunn.bench.step import gpunn_step, synthetic


def logistic_regression(m, n_in, loop_rows, rounds, min_sample_s):
    """Per-sample seconds of the loops, vectorized NumPy and gpunn, one sigmoid neuron."""
    X, y = synthetic(m, n_in, 2)
    yf = y.astype(np.float32)
    w, b = np.zeros(n_in, np.float32), 0.0
    few = X[:loop_rows]
    step, backend = gpunn_step([n_in, 1], X, y, m, output="sigmoid", optimizer="sgd", lr=0.01)
    contenders = {
        "python loops (samples x features)": lambda: numpy_mlp.logreg_grads_loops(w, b, few, yf),
        "per-sample loop (NumPy dot)": lambda: numpy_mlp.logreg_grads_per_sample(w, b, X, yf),
        "vectorized NumPy": lambda: numpy_mlp.logreg_grads_vectorized(w, b, X, yf),
        "gpunn step": step}
    rows = dict.fromkeys(contenders, m) | {"python loops (samples x features)": loop_rows}
    timings = interleaved(contenders, rounds, min_sample_s, sync=backend.synchronize)
    return _result("logistic regression", [n_in, 1], rows, timings)


def mlp(sizes, m, rounds, min_sample_s):
    """Per-sample seconds of the per-sample loop, vectorized NumPy and gpunn, an MLP."""
    X, y = synthetic(m, sizes[0], sizes[-1])
    params = numpy_mlp.init_params(sizes)
    step, backend = gpunn_step(sizes, X, y, m, optimizer="sgd", lr=0.01)
    contenders = {
        "per-sample loop (NumPy)": lambda: numpy_mlp.mlp_grads_per_sample(params, X, y),
        "vectorized NumPy": lambda: numpy_mlp.loss_and_grads(params, X, y),
        "gpunn step": step}
    timings = interleaved(contenders, rounds, min_sample_s, sync=backend.synchronize)
    return _result("MLP", list(sizes), dict.fromkeys(contenders, m), timings)


def _result(model, sizes, rows, timings):
    per_sample = {name: t["median"] / rows[name] for name, t in timings.items()}
    loops = [name for name in per_sample if "loop" in name]
    return {"model": model, "sizes": sizes, "batch": max(rows.values()),
            "contenders": {name: {**t, "samples": rows[name],
                                  "seconds_per_sample": per_sample[name]}
                           for name, t in timings.items()},
            "ratios": {f"{slow} / {fast}": per_sample[slow] / per_sample[fast]
                       for slow in loops for fast in per_sample if fast not in loops}}


def run(m_logreg, m_mlp, mlp_sizes, n_in=784, loop_rows=20, rounds=5, min_sample_s=0.02):
    """Both comparisons, as a list."""
    return [logistic_regression(m_logreg, n_in, loop_rows, rounds, min_sample_s),
            mlp(mlp_sizes, m_mlp, rounds, min_sample_s)]
