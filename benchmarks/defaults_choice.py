"""Which batch size and hidden activation should ``fit`` and ``MLP`` default to? Measured.

Part 1 (batch size): the same relu MLP (Adam, default lr, standardized inputs) trained with
every batch size of ``--batches`` ("full" = full-batch gradient descent, the course's), test
accuracy after each epoch of ``--epochs`` and the training seconds. Part 2 (activation): every
activation of ``--activations`` at ``--act-batch``. digits: 64-128-10, a stratified 25 % test
split; MNIST (real, ``gpunn.bench.mnist``, cached): 784-256-128-10 on the 60000 training
images, scored on the 10000 test images. Runs are interleaved (seed by seed, every setting
once per seed) so that a busy machine slows all settings alike. Writes
``benchmarks/results/defaults_choice.json`` and ``defaults_choice.md``.

    python benchmarks/defaults_choice.py [--seeds 3] [--mnist-seeds 1] [--data digits,mnist]
"""

import argparse
import json
import os
import platform
import subprocess

import numpy as np

import gpunn
from gpunn import datasets

HERE = os.path.dirname(os.path.abspath(__file__))
HIDDEN = {"digits": [128], "mnist": [256, 128]}


def _data(name):
    if name == "mnist":
        from gpunn.bench import mnist

        X_train, y_train, X_test, y_test = mnist.load()
        X_train, X_test = X_train / 255.0, X_test / 255.0
    else:
        X, y = datasets.load(name)
        X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, 0.25, 0)
    X_train, X_test = datasets.standardize(X_train, X_test)
    return X_train, X_test, y_train, y_test


def _run(data, hidden, activation, batch, seed, epochs):
    """Test accuracy after each epoch and cumulative training seconds."""
    X_train, X_test, y_train, y_test = data
    model = gpunn.MLP([X_train.shape[1], *hidden, 10], activation=activation,
                      output="softmax", seed=seed)
    history = gpunn.fit(model, X_train, y_train, epochs=epochs, batch_size=batch, seed=seed,
                        validation_data=(X_test, y_test), progress=False)
    return history.val_accuracy, history.seconds


def _sweep(name, data, settings, seeds, epochs):
    """``settings``: ``[(label, activation, batch)]``; rows of mean accuracy and seconds."""
    results = {label: [] for label, _, _ in settings}
    for seed in range(seeds):
        for label, activation, batch in settings:
            results[label].append(_run(data, HIDDEN[name], activation, batch, seed, epochs))
            acc, sec = results[label][-1]
            print(f"{name} {label} seed {seed}: acc {acc[-1]:.4f} in {sec[-1]:.1f} s",
                  flush=True)
    rows = []
    for label, runs in results.items():
        acc = np.mean([a for a, _ in runs], axis=0)
        sec = np.mean([s for _, s in runs], axis=0)
        rows.append({"data": name, "setting": label, "acc": acc.tolist(),
                     "seconds": sec.tolist()})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds on digits")
    parser.add_argument("--mnist-seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10, help="epochs on digits")
    parser.add_argument("--mnist-epochs", type=int, default=3)
    parser.add_argument("--data", default="digits,mnist")
    parser.add_argument("--batches", default="16,32,64,128,256,full")
    parser.add_argument("--activations", default="relu,leaky_relu,gelu,silu,tanh,sigmoid")
    parser.add_argument("--act-batch", type=int, default=32)
    args = parser.parse_args()
    batches = [None if b == "full" else int(b) for b in args.batches.split(",")]
    rows = []
    for name in args.data.split(","):
        data = _data(name)
        seeds, epochs = ((args.mnist_seeds, args.mnist_epochs) if name == "mnist"
                         else (args.seeds, args.epochs))
        by_batch = [(f"batch {b or 'full'}", "relu", b) for b in batches]
        by_act = [(f"{a} (batch {args.act_batch})", a, args.act_batch)
                  for a in args.activations.split(",")]
        rows += [dict(r, part="batch") for r in _sweep(name, data, by_batch, seeds, epochs)]
        rows += [dict(r, part="activation") for r in _sweep(name, data, by_act, seeds, epochs)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    meta = {"machine": platform.processor() or platform.machine(), "commit": commit,
            "backend": gpunn.get_backend().name, "seeds": args.seeds,
            "mnist_seeds": args.mnist_seeds, "threads": os.environ.get("NUMBA_NUM_THREADS"),
            "cpus": os.cpu_count()}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "defaults_choice.json"), "w") as file:
        json.dump({"meta": meta, "rows": rows}, file, indent=1)
    _write_table(rows, meta)


def _write_table(rows, meta):
    lines = ["# Defaults of fit and MLP: test accuracy and training time (mean of seeds)", "",
             f"commit {meta['commit']}, backend {meta['backend']}, {meta['cpus']} CPUs "
             f"(shared), seeds {meta['seeds']} on digits, {meta['mnist_seeds']} on MNIST", "",
             "| data | setting | acc after epoch 1 | acc after the last | seconds (all epochs) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['setting']} | {r['acc'][0]:.4f} | "
                     f"{r['acc'][-1]:.4f} ({len(r['acc'])}) | {r['seconds'][-1]:.2f} |")
    with open(os.path.join(HERE, "results", "defaults_choice.md"), "w") as file:
        file.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
