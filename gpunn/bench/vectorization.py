"""What vectorization buys: a per-sample Python loop against one vectorized step.

Two models, each on one batch of ``m`` samples: logistic regression (one sigmoid neuron) and an
MLP. The loops compute the same gradient as the vectorized code, one sample at a time: with
NumPy for each sample's dot products, and (logistic regression only, on a few samples) with
no NumPy at all. Figures are per sample; a ratio is how many times faster the vectorized code
computes the same gradient. ``gpunn`` is a full training step (gather, forward, loss,
backward, update) of :class:`gpunn.step.TrainStep` on the whole batch, so it does more work
than the gradient alone.
"""

import numpy as np

import gpunn
from gpunn.bench import numpy_mlp
from gpunn.bench.harness import interleaved
from gpunn.step import TrainStep


def _data(m, n_in, n_classes, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n_in)).astype(np.float32)
    return X, rng.integers(0, n_classes, m).astype(np.int64)


def _gpunn_step(sizes, output, X, y):
    model = gpunn.MLP(sizes, output=output, seed=0)
    Xd, T, loss = model.prepare(X, y)
    trainer = TrainStep(model, loss, gpunn.SGD(lr=0.01), Xd, T, X.shape[0])
    return trainer.run_next, model.backend


def logistic_regression(m, n_in, loop_rows, rounds, min_sample_s):
    """Per-sample seconds of the loops and of the vectorized gradient of one sigmoid neuron."""
    X, y = _data(m, n_in, 2)
    yf = y.astype(np.float32)
    w, b = np.zeros(n_in, np.float32), 0.0
    few = X[:loop_rows]
    step, backend = _gpunn_step([n_in, 1], "sigmoid", X, y)
    contenders = {
        "python loops (samples x features)": lambda: numpy_mlp.logreg_grads_loops(w, b, few, yf),
        "per-sample loop (NumPy dot)": lambda: numpy_mlp.logreg_grads_per_sample(w, b, X, yf),
        "vectorized NumPy": lambda: numpy_mlp.logreg_grads_vectorized(w, b, X, yf),
        "gpunn step": step}
    rows = {name: m for name in contenders}
    rows["python loops (samples x features)"] = loop_rows
    return _result("logistic regression", [n_in, 1], m, rows,
                   interleaved(contenders, rounds, min_sample_s, sync=backend.synchronize))


def mlp(sizes, m, rounds, min_sample_s):
    """Per-sample seconds of the per-sample loop and the vectorized MLP gradient."""
    X, y = _data(m, sizes[0], sizes[-1])
    params = numpy_mlp.init_params(sizes)
    step, backend = _gpunn_step(sizes, "softmax", X, y)
    contenders = {
        "per-sample loop (NumPy)": lambda: numpy_mlp.mlp_grads_per_sample(params, X, y),
        "vectorized NumPy": lambda: numpy_mlp.loss_and_grads(params, X, y),
        "gpunn step": step}
    return _result("MLP", list(sizes), m, dict.fromkeys(contenders, m),
                   interleaved(contenders, rounds, min_sample_s, sync=backend.synchronize))


def _result(model, sizes, m, rows, timings):
    per_sample = {name: t.median / rows[name] for name, t in timings.items()}
    loops = [name for name in per_sample if "loop" in name]
    fast = [name for name in per_sample if "loop" not in name]
    return {"model": model, "sizes": sizes, "batch": m,
            "contenders": {name: {**t.as_dict(), "samples": rows[name],
                                  "seconds_per_sample": per_sample[name]}
                           for name, t in timings.items()},
            "ratios": {f"{f} vs {slow}": per_sample[slow] / per_sample[f]
                       for slow in loops for f in fast}}


def run(m_logreg, m_mlp, mlp_sizes, n_in=784, loop_rows=20, rounds=5, min_sample_s=0.02):
    """Both comparisons; a list of results (see :func:`_result`)."""
    return [logistic_regression(m_logreg, n_in, loop_rows, rounds, min_sample_s),
            mlp(mlp_sizes, m_mlp, rounds, min_sample_s)]
