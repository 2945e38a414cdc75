"""The GPU check's smoke test (benchmarks/gpu_check.sh), seconds long, before the suite.

Three things only a GPU can settle, each printed as PASS/FAIL with its numbers:

1. capture happens: training records its step and the CUDA backend captures it as a graph
   (``backend.captures`` grows and ``graph_status`` says CUDA graphs);
2. graph == eager to the bit: the same training replayed from the graph and replayed eagerly
   (``backend.use_graphs = False``) gives the same parameters, bit for bit;
3. cuda vs cpu on digits: the same training on the CPU backend gives the same losses to
   float32 accumulation order and the same predictions on nearly every row.

    python benchmarks/gpu_smoke.py [--dry-run]

``--dry-run`` (no GPU): the CPU backend stands in for cuda, so (1) is reported as not checked
and (2), (3) run cpu against cpu; the point is that the script itself runs.
Exit status 0 only if every check passed.
"""

import argparse
import sys
import time

import numpy as np

import gpunn
from gpunn.backends import get_backend, use_backend
from gpunn.backends.cpu import CpuBackend

EPOCHS, BATCH = 4, 64


def digits():
    """scikit-learn's 8x8 digits scaled to [0, 1]: 1797 rows, 64 features, 10 classes."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


def train(backend, X, y):
    """The losses per epoch, the final parameters (host) and the predicted labels."""
    with use_backend(backend):
        model = gpunn.MLP([64, 128, 128, 10], activation="relu", output="softmax", seed=0)
        history = gpunn.fit(model, X, y, epochs=EPOCHS, batch_size=BATCH, lr=1e-3, seed=0)
        params = np.array(backend.to_numpy(model.flat_params))
        return np.array(history.loss, dtype=np.float64), params, model.predict(X)


def check(name, passed, detail):
    print(f"{'PASS' if passed else 'FAIL'} {name}: {detail}", flush=True)
    return bool(passed)


def run(dry_run):
    backend = CpuBackend() if dry_run else get_backend()
    print(f"backend {backend.name} ({backend.device}); step replay: {backend.graph_status}",
          flush=True)
    X, y = digits()
    results = []
    before = getattr(backend, "captures", 0)
    start = time.perf_counter()
    cost, params, labels = train(backend, X, y)
    print(f"trained {EPOCHS} epochs of digits in {time.perf_counter() - start:.2f} s; "
          f"losses {np.round(cost, 4).tolist()}", flush=True)
    if dry_run:
        print("NOT CHECKED capture: dry run, no GPU", flush=True)
    else:
        captured = getattr(backend, "captures", 0) - before
        results.append(check("capture happens", captured > 0
                             and backend.graph_status.startswith("CUDA graphs"),
                             f"{captured} graphs captured; {backend.graph_status}"))
    if hasattr(backend, "use_graphs"):
        backend.use_graphs = False
        try:
            eager_cost, eager_params, _ = train(backend, X, y)
        finally:
            backend.use_graphs = True
    else:  # the CPU backend always replays eagerly: the same run twice
        eager_cost, eager_params, _ = train(backend, X, y)
    differ = int(np.count_nonzero(eager_params.view(np.uint32) != params.view(np.uint32)))
    results.append(check("graph == eager to the bit", differ == 0 and
                         np.array_equal(eager_cost, cost),
                         f"{differ} of {params.size} parameters differ"))
    cpu_cost, _, cpu_labels = train(CpuBackend(), X, y)
    gap = float(np.max(np.abs(cpu_cost - cost) / np.abs(cpu_cost)))
    agree = float(np.mean(cpu_labels == labels))
    results.append(check(f"{backend.name} vs cpu on digits", gap < 1e-3 and agree > 0.99,
                         f"largest relative loss gap {gap:.2e} (< 1e-3), "
                         f"{agree:.2%} of predictions agree (> 99%)"))
    return 0 if all(results) else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU: the CPU backend stands in for cuda")
    return run(parser.parse_args(argv).dry_run)


if __name__ == "__main__":
    sys.exit(main())
