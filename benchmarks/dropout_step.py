"""What dropout costs on the CPU: a training step and the activation kernels, with and without.

    python benchmarks/dropout_step.py [--rounds 5] [--json PATH] [--before OLD_CHECKOUT]

Each round runs one fresh process per variant, alternating which goes first. A process times
(median of repeats, all of Numba's threads):

- ``step``: one fit epoch of a 784-256-128-10 relu MLP (softmax, Adam, batch 128) on 8192
  synthetic MNIST-shaped rows, after a warm-up epoch; dropout 0.2 on both hidden layers or none;
- ``forward`` / ``backward``: the activation kernels of one 1024 x 1024 relu layer:
  ``bias_act_fwd`` + ``act_bwd`` without dropout, ``bias_act_fwd_drop`` + ``act_bwd_drop``
  with it; ``forward_small`` / ``backward_small``: the same for 128 x 256 (a hidden layer of
  the step); ``forward_residual`` / ``backward_residual``: a 128 x 256 residual block's branch
  kernels, ``bias_act_residual`` + ``residual_act_bwd`` against their ``_drop`` forms (the
  dropped forward writes what the plain one writes: x1.0 of its traffic; so does backward).

Memory traffic per element (float32): ``bias_act_fwd`` reads and writes Z (8 bytes),
``bias_act_fwd_drop`` also writes A (12 bytes: x1.5); ``act_bwd`` and ``act_bwd_drop`` both read
S and dA and write dZ (12 bytes: x1.0). A kernel "costs its memory traffic" when its ratio is
at most that.

Prints the medians over rounds and the ratio dropout / none. With ``--before``, the same
variants also run against OLD_CHECKOUT (an earlier commit's tree, ``git archive REV | tar -x``,
with a link ``gpunn/kernels -> ../kernels``, put first on ``PYTHONPATH``), interleaved.
"""

import argparse
import json
import os
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
    from gpunn.kernels import kernel_specs

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
        result = {"step": step}
        for suffix, (n_rows, n_cols) in (("", (1024, 1024)), ("_small", (128, 256))):
            forward, backward = _kernels(be, rng, n_rows, n_cols, p)
            forward(), backward()
            calls = max(10, 2**20 // (n_rows * n_cols) * 10)
            result["forward" + suffix] = _median_time(forward, 15, calls)
            result["backward" + suffix] = _median_time(backward, 15, calls)
        if "bias_act_residual_drop" in kernel_specs():  # a checkout with residual dropout
            forward, backward = _residual_kernels(be, rng, 128, 256, p)
            forward(), backward()
            result["forward_residual"] = _median_time(forward, 15, 320)
            result["backward_residual"] = _median_time(backward, 15, 320)
    print(json.dumps(result))


def _residual_kernels(be, rng, n_rows, n_cols, p):
    """The branch kernels of one relu residual block (A = R + f(Z + b) [* m])."""
    import numpy as np

    n = n_rows * n_cols
    b = rng.standard_normal(n_cols).astype(np.float32)
    R, Z, A, dA, dZ = (rng.standard_normal(n).astype(np.float32) for _ in range(5))
    relu = 2
    if not p:
        return (lambda: be.kernel("bias_act_residual", b, R, n_cols, relu, Z, A),
                lambda: be.kernel("residual_act_bwd", Z, dA, relu, dZ))
    drop = (np.zeros(8, np.int64), 1, 0, 0, int(round(p * 2**32)), 1.0 / (1.0 - p))
    return (lambda: be.kernel("bias_act_residual_drop", b, R, n_cols, relu, *drop, Z, A),
            lambda: be.kernel("residual_act_bwd_drop", Z, dA, relu, *drop, dZ))


def _kernels(be, rng, n_rows, n_cols, p):
    """The forward and backward activation kernels of one relu layer, with dropout p or none."""
    import numpy as np

    n = n_rows * n_cols
    b = rng.standard_normal(n_cols).astype(np.float32)
    Z, A, dZ = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    relu = 2
    if not p:
        return (lambda: be.kernel("bias_act_fwd", b, n_cols, relu, Z),
                lambda: be.kernel("act_bwd", A, relu, dZ))
    drop = (np.zeros(8, np.int64), 1, 0, 0, int(round(p * 2**32)), 1.0 / (1.0 - p))
    return (lambda: be.kernel("bias_act_fwd_drop", b, n_cols, relu, *drop, Z, A),
            lambda: be.kernel("act_bwd_drop", Z, relu, *drop, dZ))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the medians here")
    parser.add_argument("--before", default=None, help="an earlier checkout to compare with")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    trees = {"now": None} if args.before is None else {"now": None, "before": args.before}
    runs = {tree: {"none": [], "dropout": []} for tree in trees}
    for k in range(args.rounds):
        order = [(tree, variant) for tree in trees for variant in ("none", "dropout")]
        for tree, variant in (order if k % 2 == 0 else order[::-1]):
            env = dict(os.environ)
            if trees[tree]:
                env["PYTHONPATH"] = os.pathsep.join(
                    [os.path.abspath(trees[tree])] + env.get("PYTHONPATH", "").split(os.pathsep))
            out = subprocess.run([sys.executable, __file__, "--child", variant], env=env,
                                 capture_output=True, text=True, check=True)
            runs[tree][variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    medians = {tree: _medians(tree, runs[tree]) for tree in trees}
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"rounds": args.rounds, "runs": runs, "medians": medians}, file, indent=1)


def _medians(tree, runs):
    """Print and return the medians over rounds of each part, and dropout / none."""
    medians = {}
    for part in runs["none"][0]:
        none = statistics.median(r[part] for r in runs["none"])
        drop = statistics.median(r[part] for r in runs["dropout"])
        medians[part] = {"none_s": none, "dropout_s": drop, "ratio": drop / none}
        print(f"{tree:>6} {part:>14}: none {none * 1e6:9.1f} us  dropout {drop * 1e6:9.1f} us"
              f"  x{drop / none:.2f}")
    return medians


if __name__ == "__main__":
    main()
