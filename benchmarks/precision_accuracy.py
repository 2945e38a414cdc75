"""Test accuracy per precision: digits and a synthetic MNIST-size set; bf16 must stay within
0.5 points of fp32 (issue: mixed precision). Same seeds, data, batches and optimizer for every
precision; only ``MLP(..., precision=...)`` changes.

    python benchmarks/precision_accuracy.py [--backend cpu|cuda] [--json PATH]

The MNIST-size set: 60,000 training and 10,000 test rows of 784 features, 10 classes; each
class a Gaussian blob around a random centre close enough to the others that an MLP reaches
about 90%, plus a nonlinear twist (a tanh of a random projection), standardized like the CLI.
"""

import argparse
import json
import sys
import time

import numpy as np

import gpunn
from gpunn import datasets
from gpunn.backends import BACKENDS

PRECISIONS = ("fp32", "tf32", "bf16")
TARGET_POINTS = 0.5


def mnist_like(n_train=60000, n_test=10000, n_features=784, n_classes=10, seed=0):
    """``(X_train, X_test, y_train, y_test)`` of the synthetic MNIST-size set, standardized."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    centres = rng.normal(0.0, 0.09, size=(n_classes, n_features))
    X = centres[y] + rng.normal(size=(n, n_features))
    X += 0.5 * np.tanh(X @ rng.normal(0.0, 1.0 / np.sqrt(n_features), (n_features, n_features)))
    X_train, X_test = datasets.standardize(X[:n_train], X[n_train:])
    return X_train.astype(np.float32), X_test.astype(np.float32), y[:n_train], y[n_train:]


def digits(seed=0):
    """The CLI's digits split (75/25, stratified) and standardization."""
    X, y = datasets.load("digits", seed=seed)
    X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, 0.25, seed)
    X_train, X_test = datasets.standardize(X_train, X_test)
    return X_train.astype(np.float32), X_test.astype(np.float32), y_train, y_test


CASES = {
    "digits": (digits, {"hidden": [128], "epochs": 20, "batch_size": 32}),
    "mnist-size synthetic": (mnist_like, {"hidden": [256, 256], "epochs": 5,
                                          "batch_size": 128}),
}


def accuracy(data, hidden, epochs, batch_size, precision):
    """Test accuracy and training seconds of a relu MLP trained with Adam at ``precision``."""
    X_train, X_test, y_train, y_test = data
    sizes = [X_train.shape[1], *hidden, int(y_train.max()) + 1]
    model = gpunn.MLP(sizes, activation="relu", output="softmax", seed=0, precision=precision)
    start = time.perf_counter()
    gpunn.fit(model, X_train, y_train, optimizer="adam", lr=1e-3, epochs=epochs,
              batch_size=batch_size, seed=0)
    seconds = time.perf_counter() - start
    return float(np.mean(model.predict(X_test) == y_test)), seconds


def main(argv=None):
    """Train every case in every precision; print a table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="cpu")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    rows = []
    with gpunn.use_backend(args.backend) as backend:
        for name, (load, config) in CASES.items():
            data = load()
            results = {p: accuracy(data, precision=p, **config) for p in PRECISIONS}
            gap = 100 * (results["fp32"][0] - results["bf16"][0])
            rows.append({"data": name, **config, "test_accuracy": {
                p: a for p, (a, _) in results.items()}, "train_seconds": {
                p: s for p, (_, s) in results.items()}, "bf16_points_below_fp32": gap,
                "met": gap <= TARGET_POINTS})
    print("| data | " + " | ".join(f"{p} test acc (train s)" for p in PRECISIONS)
          + " | bf16 below fp32 (points) | <= 0.5 |")
    print("|---|" + "---|" * (len(PRECISIONS) + 2))
    for row in rows:
        cells = " | ".join(f"{row['test_accuracy'][p]:.4f} ({row['train_seconds'][p]:.1f})"
                           for p in PRECISIONS)
        print(f"| {row['data']} | {cells} | {row['bf16_points_below_fp32']:.2f} | "
              f"{'met' if row['met'] else 'MISSED'} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": backend.name, "rows": rows}, f, indent=1)
    return 0 if all(row["met"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
