"""Does a deep MLP train where the plain one does not? Issue 20's deep-MLP target, on MNIST.

Trains, with the same optimizer, batch, data and number of epochs:

- the 2-hidden-layer baselines (784-512-512-10, relu and gelu): the best of them is the bar;
- a 12-hidden-layer, 512-wide MLP with GELU, pre-norm residual blocks and LayerNorm
  (``MLP(..., norm="layer", residual=True)``);
- the same depth and width without residual connections or norm (plain GELU).

Test accuracy (MNIST's 10000 test images) after every epoch is written, with the machine,
thread count and commit, to ``benchmarks/results/deep_mlp.md`` (and printed). Accuracy, not
speed, is measured, so the models run one after another in this process. Every model gets the
same recipe: a constant rate, or (``--schedule warmup-cosine``) one epoch of linear warm-up then
cosine decay to 0, per step.

    python benchmarks/deep_mlp.py [--epochs 5] [--train-rows 60000] [--lr 1e-3]
        [--schedule constant|warmup-cosine] [--seed 0] [--models 2-relu,...]
"""

import argparse
import os
import platform
import subprocess
import time

import numpy as np

import gpunn
from gpunn.bench import mnist

HERE = os.path.dirname(os.path.abspath(__file__))
WIDTH, DEPTH = 512, 12
# name -> (hidden sizes, activation, MLP keywords)
MODELS = {
    "2-relu": ([WIDTH] * 2, "relu", {}),
    "2-gelu": ([WIDTH] * 2, "gelu", {}),
    "12-gelu-residual-layernorm": ([WIDTH] * DEPTH, "gelu", {"norm": "layer", "residual": True}),
    "12-gelu-plain": ([WIDTH] * DEPTH, "gelu", {}),
}


def _data(train_rows):
    X_train, y_train, X_test, y_test = mnist.load()
    rows = np.random.default_rng(0).permutation(X_train.shape[0])[:train_rows]
    scale = np.float32(1 / 255)
    return (X_train[rows].astype(np.float32) * scale, y_train[rows],
            X_test.astype(np.float32) * scale, y_test)


def _train(data, hidden, activation, kwargs, args):
    X_train, y_train, X_test, y_test = data
    model = gpunn.MLP([X_train.shape[1], *hidden, 10], activation=activation, output="softmax",
                      seed=args.seed, **kwargs)
    start = time.perf_counter()
    history = gpunn.fit(model, X_train, y_train, optimizer="adam", lr=args.lr,
                        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                        schedule=_schedule(args, X_train.shape[0]),
                        validation_data=(X_test, y_test), progress=False)
    return history, time.perf_counter() - start


def _schedule(args, rows):
    """None (constant lr), or one epoch of linear warm-up then cosine decay to 0, per step."""
    if args.schedule == "constant":
        return None
    steps = -(-rows // args.batch_size)
    total = steps * args.epochs
    return gpunn.schedules.Warmup(steps, after=gpunn.schedules.Cosine(total - steps, per="step"),
                                  per="step")


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-rows", type=int, default=60000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schedule", choices=("constant", "warmup-cosine"), default="constant",
                        help="the same for every model: constant lr, or 1 epoch of linear "
                             "warm-up then cosine decay to 0 (per step)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated names from MODELS")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "deep_mlp.md"))
    args = parser.parse_args()
    data = _data(args.train_rows)
    rows = []
    for name in args.models.split(","):
        hidden, activation, kwargs = MODELS[name]
        history, seconds = _train(data, hidden, activation, kwargs, args)
        curve = " ".join(f"{a:.4f}" for a in history.val_accuracy)
        rows.append(f"| {name} | {curve} | {max(history.val_accuracy):.4f} | "
                    f"{history.loss[-1]:.4f} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    header = [
        f"# Deep MLP on MNIST ({args.train_rows} training rows, {args.epochs} epochs, Adam lr "
        f"{args.lr} {args.schedule}, batch {args.batch_size}, seed {args.seed})", "",
        f"commit {_commit()}, {platform.machine()} {platform.processor() or ''}, "
        f"{os.cpu_count()} CPUs, backend {gpunn.get_backend().name}", "",
        "| model | test accuracy after each epoch | best | last training loss | seconds |",
        "| --- | --- | --- | --- | --- |"]
    text = "\n".join(header + rows) + "\n"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
