"""Epoch times on MNIST as training goes on, and the test accuracy (issue 18 item 1).

    python benchmarks/subnormal_epochs.py [OLD_CHECKOUT] [--rounds 3] [--epochs 6] [--rows N]

Each process trains the MNIST model of issue 18 (784-256-128-10 relu, softmax, float32, Adam
lr 1e-3, batch 128, seed 0) with ``gpunn.fit`` for ``--epochs`` epochs and prints each epoch's
seconds (``History.seconds``, which leaves out the kernels' compile and cache load), the test
accuracy, and the share of Adam's m and v that is subnormal at the end. Adam's first moment of
a weight whose gradient stays 0 (a pixel that is always 0, a dead relu unit) decays below
float32's smallest normal number after about 700 steps (0.9^700 ~ 1e-32), so unflushed state
makes later epochs slower than the second. OLD_CHECKOUT (a work tree with a
``gpunn/kernels -> ../kernels`` link, as for step_vs_previous.py) runs in alternating fresh
processes with the current install; the table gives per-epoch medians over the rounds.
``--rows`` trains on the first N training rows (more epochs of fewer steps; the state decays
per step, so the slowdown starts after about the same number of steps).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys


def child(epochs, rows):
    """Epoch seconds, test accuracy and the subnormal share of the optimizer state, as JSON."""
    import numpy as np

    import gpunn
    from gpunn.backends.cpu import start_numba_threads
    from gpunn.bench import mnist

    X, y, Xt, yt = mnist.load()
    scale = np.float32(1 / 255)
    X, y = X[:rows].astype(np.float32) * scale, y[:rows]
    Xt = Xt.astype(np.float32) * scale
    with gpunn.use_backend("cpu"):
        start_numba_threads()
        model = gpunn.MLP([784, 256, 128, 10], activation="relu", output="softmax", seed=0)
        optimizer = gpunn.Adam(lr=1e-3)
        history = gpunn.fit(model, X, y, optimizer=optimizer, epochs=epochs, batch_size=128,
                            seed=0, progress=False)
        accuracy = float(np.mean(model.predict(Xt) == yt))
        state = np.concatenate([np.asarray(model.backend.to_numpy(a))
                                for a in optimizer.state.values()])
    tiny = np.finfo(np.float32).tiny
    share = float(np.mean((state != 0) & (np.abs(state) < tiny)))
    seconds = np.diff([0.0, *history.seconds]).tolist()
    return {"seconds": seconds, "accuracy": accuracy, "subnormal_share": share}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", nargs="?")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.epochs, args.rows)))
        return
    labels = ("before", "now") if args.old else ("now",)
    runs = {label: [] for label in labels}
    for round_ in range(args.rounds):
        for label in labels if round_ % 2 == 0 else labels[::-1]:
            env = dict(os.environ)
            if label == "before":
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.old,
                                                                  env.get("PYTHONPATH")]))
            out = subprocess.run([sys.executable, __file__, "--child", "--epochs",
                                  str(args.epochs), "--rows", str(args.rows)],
                                 capture_output=True, text=True, env=env, check=True).stdout
            result = json.loads(out.splitlines()[-1])
            runs[label].append(result)
            print(f"{label:>6}: epochs {' '.join(f'{s:.2f}' for s in result['seconds'])} s, "
                  f"accuracy {result['accuracy']:.4f}, subnormal share of the state "
                  f"{result['subnormal_share']:.3f}", flush=True)
    for label in labels:
        per_epoch = [statistics.median(r["seconds"][e] for r in runs[label])
                     for e in range(args.epochs)]
        growth = statistics.median(r["seconds"][-1] / r["seconds"][1] for r in runs[label])
        accuracy = ", ".join(f"{r['accuracy']:.4f}" for r in runs[label])
        print(f"{label:>6}: median epoch seconds {' '.join(f'{s:.2f}' for s in per_epoch)}; "
              f"last / second epoch {growth:.2f}; accuracy "
              f"{accuracy}")


if __name__ == "__main__":
    main()
