"""Which weight initialization should be gpunn's default? Test accuracy by init, measured.

Trains the same MLPs (Adam, default lr, batch 32, standardized features, stratified 25 %
test split) from every init in ``gpunn.layers.INITS`` on the bundled data sets, several seeds
each, and records the mean test accuracy after a few and after more epochs. Writes
``benchmarks/results/init_choice.json`` and ``init_choice.md``.

    python benchmarks/init_choice.py [--seeds 3] [--epochs 5,20] [--data digits,...]
"""

import argparse
import json
import os
import platform
import subprocess

import numpy as np

import gpunn
from gpunn import datasets
from gpunn.layers import INITS

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHS = {"relu 100": ([100], "relu"), "relu 256-256": ([256, 256], "relu"),
         "tanh 64": ([64], "tanh")}


def _data(name):
    if name == "noisy100":  # 100 features, 10 overlapping classes: far from trivially separable
        X, y = datasets.synthetic(n_samples=2000, n_features=100, n_classes=10, seed=1)
        X = X + np.random.default_rng(2).normal(0.0, 6.0, size=X.shape)
    else:
        X, y = datasets.load(name)
    X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, 0.25, 0)
    X_train, X_test = datasets.standardize(X_train, X_test)
    return X_train, X_test, y_train, y_test


def _accuracies(data, hidden, activation, init, seed, epochs):
    """Test accuracy after each epoch in ``epochs``."""
    X_train, X_test, y_train, y_test = data
    k = int(y_train.max()) + 1
    sizes = [X_train.shape[1], *hidden, 1 if k == 2 else k]
    model = gpunn.MLP(sizes, activation=activation, output="sigmoid" if k == 2 else "softmax",
                      seed=seed, init=init)
    history = gpunn.fit(model, X_train, y_train, epochs=max(epochs), batch_size=32, seed=seed,
                        validation_data=(X_test, y_test), progress=False)
    return [history.val_accuracy[e - 1] for e in epochs]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", default="5,20")
    parser.add_argument("--data", default="digits,breast_cancer,noisy100")
    parser.add_argument("--out", default="init_choice", help="name of the result files")
    args = parser.parse_args()
    epochs = [int(e) for e in args.epochs.split(",")]
    rows = []
    for name in args.data.split(","):
        data = _data(name)
        for arch, (hidden, activation) in ARCHS.items():
            for init in INITS:
                acc = np.array([_accuracies(data, hidden, activation, init, s, epochs)
                                for s in range(args.seeds)])
                rows.append({"data": name, "arch": arch, "init": init,
                             **{f"acc@{e}": float(acc[:, i].mean()) for i, e in
                                enumerate(epochs)}})
                print(rows[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    meta = {"machine": platform.processor() or platform.machine(), "commit": commit,
            "backend": gpunn.get_backend().name, "seeds": args.seeds, "epochs": epochs}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"{args.out}.json"), "w") as file:
        json.dump({"meta": meta, "rows": rows}, file, indent=1)
    _write_table(rows, epochs, meta, args.out)


def _write_table(rows, epochs, meta, out):
    keys = [f"acc@{e}" for e in epochs]
    lines = [f"# Test accuracy by weight initialization ({meta['seeds']} seeds, mean)", "",
             f"commit {meta['commit']}, backend {meta['backend']}", "",
             "| data | arch | " + " | ".join(f"{i} {k}" for k in keys for i in INITS) + " |",
             "|---|---|" + "---|" * (len(keys) * len(INITS))]
    for data in dict.fromkeys(r["data"] for r in rows):
        for arch in ARCHS:
            cells = {r["init"]: r for r in rows if r["data"] == data and r["arch"] == arch}
            lines.append(f"| {data} | {arch} | " + " | ".join(
                f"{cells[i][k]:.3f}" for k in keys for i in INITS) + " |")
    means = {i: {k: np.mean([r[k] for r in rows if r["init"] == i]) for k in keys}
             for i in INITS}
    lines += ["", "Mean over all rows: " + ", ".join(
        f"{i} " + "/".join(f"{means[i][k]:.4f}" for k in keys) for i in INITS)]
    with open(os.path.join(HERE, "results", f"{out}.md"), "w") as file:
        file.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
