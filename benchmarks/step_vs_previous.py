"""The CPU training step now against an earlier checkout of gpunn, in alternating fresh processes.

    python benchmarks/step_vs_previous.py OLD_CHECKOUT [--rounds 3] [--steps 15]

OLD_CHECKOUT is a work tree of an earlier commit (``git worktree add --detach DIR REV``) with
a link ``gpunn/kernels -> ../kernels`` in it (the installed package maps ``gpunn.kernels`` to
``kernels/``); it is put first on ``PYTHONPATH`` for the "before" processes. MLP
784-1024-1024-10 (sigmoid, softmax, Adam), median ms per step after ten warm-up steps; before
the recorded step the step was ``gpunn.train.Trainer.step``, now ``gpunn.step.TrainStep``.
Prints one line per process and the median of the rounds per batch.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

BATCHES = (32, 128, 512, 2048)


def child(batch, steps):
    """Median seconds per step of this process's gpunn."""
    import numpy as np

    import gpunn
    import gpunn.train

    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch * 8, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch * 8)
    model = gpunn.MLP([784, 1024, 1024, 10], activation="sigmoid", output="softmax", seed=0)
    Xd, T, loss = model.prepare(X, y)
    if hasattr(gpunn.train, "Trainer"):  # before the recorded step
        trainer = gpunn.train.Trainer(model, Xd, T, loss, gpunn.Adam(lr=1e-3), batch)
        calls = iter(range(10**9))

        def run():
            start, stop = trainer.bounds[next(calls) % len(trainer.bounds)]
            trainer.step(start, stop)

        def sync():
            pass
    else:
        from gpunn.step import TrainStep

        trainer = TrainStep(model, loss, gpunn.Adam(lr=1e-3), Xd, T, batch)
        try:
            from gpunn.bench.step import loop
        except ImportError:  # a checkout from before the loop of steps moved into the bench
            run = trainer.run_next
        else:
            run = loop(trainer)
        sync = trainer.read
    trainer.shuffle(rng)
    for _ in range(10):
        run()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", nargs="?")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(child(args.child, args.steps))
        return
    results = {("before", b): [] for b in BATCHES} | {("now", b): [] for b in BATCHES}
    for _ in range(args.rounds):
        for batch in BATCHES:
            for label, path in (("before", args.old), ("now", None)):
                env = dict(os.environ)
                if path:
                    env["PYTHONPATH"] = os.pathsep.join(filter(None, [path,
                                                                      env.get("PYTHONPATH")]))
                out = subprocess.run([sys.executable, __file__, "--child", str(batch),
                                      "--steps", str(args.steps)], env=env, check=True,
                                     capture_output=True, text=True).stdout
                results[label, batch].append(1e3 * float(out.split()[-1]))
                print(f"{label:>6} batch {batch:>4}: {results[label, batch][-1]:.2f} ms")
    for batch in BATCHES:
        before, now = (statistics.median(results[k, batch]) for k in ("before", "now"))
        print(f"batch {batch:>4}: before {before:.2f} ms, now {now:.2f} ms, "
              f"now / before {now / before:.3f}")


if __name__ == "__main__":
    main()
