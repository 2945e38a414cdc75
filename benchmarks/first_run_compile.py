"""Can the first run's kernel compile be hidden? (issue 18 item 4)

Each row is a fresh process with an empty Numba cache (NUMBA_CACHE_DIR in a new temporary
folder), and the modes run round-robin:

- ``plain``: import gpunn, load MNIST (the bench's cached copy: real data-loading work), train
  784-256-128-10 relu with Adam for one epoch at batch 128 on 10000 rows. The first fit compiles.
- ``thread``: the same, with a thread started right after ``import gpunn`` that compiles the
  same kernels (a one-step fit of a tiny model of the same dtype and activations), i.e. what a
  background compile at import would do while the script loads its data.
- ``cached``: the same after a first process filled the cache, i.e. what compiling at install
  time would give at best.

Prints, per mode, the medians of: the wall time from the start of the process to the end of
fit, the data loading's time, and the compile seconds the process counted.

    python benchmarks/first_run_compile.py [--rounds 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, threading, time
t0 = time.perf_counter()
import numpy as np
import gpunn
from gpunn.backends import compile_watch
compile_watch.watch_compiles()
mode = sys.argv[1]


def compile_in_background():
    rng = np.random.default_rng(0)
    tiny = gpunn.MLP([4, 8, 8, 3], activation="relu", output="softmax", seed=0)
    gpunn.fit(tiny, rng.normal(size=(16, 4)).astype(np.float32), rng.integers(0, 3, 16),
              optimizer="adam", lr=1e-3, epochs=1, batch_size=8, verbose=0)


if mode == "thread":
    threading.Thread(target=compile_in_background, daemon=True).start()
from gpunn.bench import mnist
t_load = time.perf_counter()
X, y, Xt, yt = mnist.load()
X = (X[:10000].reshape(10000, -1) / np.float32(255)).astype(np.float32)
y = y[:10000]
t_load = time.perf_counter() - t_load
model = gpunn.MLP([784, 256, 128, 10], activation="relu", output="softmax", seed=0)
gpunn.fit(model, X, y, optimizer="adam", lr=1e-3, epochs=1, batch_size=128, verbose=0)
print(json.dumps({"wall": time.perf_counter() - t0, "load": t_load,
                  "compile": compile_watch.compile_seconds()}))
"""


def run(mode, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from gpunn.bench import mnist

    mnist.load()  # fetched once, before any timing
    found = {"plain": [], "thread": [], "cached": []}
    modes = list(found)
    for r in range(args.rounds):
        for mode in modes[r % 3:] + modes[:r % 3]:
            with tempfile.TemporaryDirectory() as cache:
                if mode == "cached":
                    run("plain", cache)
                found[mode].append(run("thread" if mode == "thread" else "plain", cache))
                print(mode, found[mode][-1], flush=True)
    print(f"{'mode':8} {'wall s':>8} {'load s':>8} {'compile s':>10}  (medians of {args.rounds})")
    for mode, rows in found.items():
        print(f"{mode:8} " + " ".join(f"{statistics.median(r[k] for r in rows):{w}.2f}"
                                      for k, w in (("wall", 8), ("load", 8), ("compile", 10))))
    print(time.strftime("%Y-%m-%d %H:%M"), "load average", os.getloadavg()[0])


if __name__ == "__main__":
    main()
