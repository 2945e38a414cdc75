"""What dropout costs on the CPU: a training step and the activation kernels, with and without.

    python benchmarks/dropout_step.py [--rounds 5] [--json PATH]

Each round runs one fresh process per variant, alternating which goes first. A process times
(median of repeats, all of Numba's threads):

- ``step``: one fit epoch of a 784-256-128-10 relu MLP (softmax, Adam, batch 128) on 8192
  synthetic MNIST-shaped rows, after a warm-up epoch; dropout 0.2 on both hidden layers or none;
- ``forward`` / ``backward``: the activation kernels of one 1024 x 1024 relu layer:
  ``bias_act_fwd`` + ``act_bwd`` without dropout, ``bias_act_fwd_drop`` + ``act_bwd_drop``
  with it (which also write / read the layer's output before dropout, for f').

Prints the medians over rounds and the ratio dropout / none.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time


def _median_time(function, repeats, calls):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        times.append((time.perf_counter() - started) / calls)
    return statistics.median(times)


def child(variant):
    import numpy as np

    import gpunn
    from gpunn.backends.cpu import CpuBackend

    p = 0.2 if variant == "dropout" else 0.0
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8192, 784)).astype(np.float32)
    y = rng.integers(0, 10, 8192)
    with gpunn.use_backend(CpuBackend()) as be:
        model = gpunn.MLP([784, 256, 128, 10], activation="relu", output="softmax", dropout=p)
        gpunn.fit(model, X, y, epochs=1, batch_size=128, progress=False)
        step = _median_time(lambda: gpunn.fit(model, X, y, epochs=1, batch_size=128,
                                               progress=False), 3, 1) / 64
        n_cols, n = 1024, 1024 * 1024
        b = rng.standard_normal(n_cols).astype(np.float32)
        Z, A, dZ = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
        ctrl = np.zeros(8, np.int64)
        relu = 2
        if p:
            drop = (ctrl, 1, 0, 0, int(round(p * 2**32)), 1.0 / (1.0 - p))
            forward = lambda: be.kernel("bias_act_fwd_drop", b, n_cols, relu, *drop, Z, A)  # noqa
            backward = lambda: be.kernel("act_bwd_drop", Z, relu, *drop, dZ)  # noqa
        else:
            forward = lambda: be.kernel("bias_act_fwd", b, n_cols, relu, Z)  # noqa
            backward = lambda: be.kernel("act_bwd", A, relu, dZ)  # noqa
        forward(), backward()
        result = {"step": step, "forward": _median_time(forward, 15, 10),
                  "backward": _median_time(backward, 15, 10)}
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the medians here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    runs = {"none": [], "dropout": []}
    for k in range(args.rounds):
        for variant in (("none", "dropout") if k % 2 == 0 else ("dropout", "none")):
            out = subprocess.run([sys.executable, __file__, "--child", variant],
                                 capture_output=True, text=True, check=True)
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    medians = {}
    for part in ("step", "forward", "backward"):
        none = statistics.median(r[part] for r in runs["none"])
        drop = statistics.median(r[part] for r in runs["dropout"])
        medians[part] = {"none_s": none, "dropout_s": drop, "ratio": drop / none}
        print(f"{part:>8}: none {none * 1e6:9.0f} us  dropout {drop * 1e6:9.0f} us  "
              f"x{drop / none:.2f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"rounds": args.rounds, "runs": runs, "medians": medians}, file, indent=1)


if __name__ == "__main__":
    main()
