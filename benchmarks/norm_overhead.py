"""What LayerNorm and residual connections cost per training step, on this machine's backend.

Times the recorded training step of the same MLP (``--hidden`` layers of ``--width``, gelu,
Adam) plain, with ``norm="layer"``, with ``residual=True`` and with both, each in a fresh
process, the variants interleaved over ``--rounds`` rounds; prints the median step time of
each and its ratio to the plain model's.

    python benchmarks/norm_overhead.py [--width 512] [--hidden 6] [--batch 128] [--rounds 3]
                                       [--before OLD_CHECKOUT]

``--kernels`` times the kernels instead, in one process per tree and round (median of
repeats, one layer of ``--batch`` x ``--width``): layernorm_fwd, layernorm_bwd,
layernorm_bwd_params and bias_act_residual (relu), each against residual_add (reads two
arrays, writes one: about the traffic of each of them; layernorm_bwd_params reads two and
writes none).

With ``--before``, every variant also runs against OLD_CHECKOUT (an earlier commit's tree,
``git archive REV | tar -x``, with a link ``gpunn/kernels -> ../kernels``, first on
``PYTHONPATH``), interleaved with the current tree's processes in each round.
"""

import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = {"plain": {}, "norm": {"norm": "layer"}, "residual": {"residual": True},
            "norm+residual": {"norm": "layer", "residual": True}}


def _child(args):
    import numpy as np

    import gpunn
    from gpunn.losses import get_loss
    from gpunn.optim import get_optimizer
    from gpunn.step import TrainStep

    rng = np.random.default_rng(0)
    rows = args.batch * 8
    X = rng.normal(size=(rows, args.width)).astype(np.float32)
    y = rng.integers(0, 10, rows)
    model = gpunn.MLP([args.width] + [args.width] * args.hidden + [10], activation="gelu",
                      output="softmax", **VARIANTS[args.child])
    Xd, T, loss = model.prepare(X, y, get_loss(None, model))
    optimizer = get_optimizer("adam", 1e-3)
    step = TrainStep(model, loss, optimizer, Xd, T, global_batch=args.batch)
    lrs = np.full(8, 1e-3)
    step.begin_epoch(lrs)
    for k in range(8):  # record, capture, warm
        step.run(k)
    model.backend.synchronize()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        if n % 8 == 0:
            step.begin_epoch(lrs)  # one small copy per 8 steps, alike for every variant
        step.run(n % 8)
        n += 1
    model.backend.synchronize()
    print(json.dumps((time.perf_counter() - start) / n))


def _kernel_child(args):
    """Median microseconds per call of the LayerNorm and residual kernels, and residual_add's."""
    import statistics

    import numpy as np

    from gpunn.backends.cpu import CpuBackend

    be, rng = CpuBackend(), np.random.default_rng(0)
    rows, cols = args.batch, args.width
    X, Y, dY, dX, B = (rng.standard_normal(rows * cols).astype(np.float32) for _ in range(5))
    gamma, beta, b = (rng.standard_normal(cols).astype(np.float32) for _ in range(3))
    mean, rstd = np.zeros(rows, np.float32), np.zeros(rows, np.float32)
    dgamma, dbeta = np.zeros(cols, np.float32), np.zeros(cols, np.float32)
    calls = {
        "residual_add": lambda: be.kernel("residual_add", X, dY, B),
        "layernorm_fwd": lambda: be.kernel("layernorm_fwd", X, gamma, beta, cols, 1e-5, mean,
                                           rstd, Y),
        "layernorm_bwd": lambda: be.kernel("layernorm_bwd", X, gamma, mean, rstd, dY, dY, cols,
                                           0, dX),
        "layernorm_bwd_params": lambda: be.kernel("layernorm_bwd_params", X, mean, rstd, dY,
                                                  rows, dgamma, dbeta),
        "bias_act_residual": lambda: be.kernel("bias_act_residual", b, X, cols, 2, Y, B),
    }
    times = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(15):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(20):
                call()
            times[name].append((time.perf_counter() - start) / 20)
    print(json.dumps({name: statistics.median(t) for name, t in times.items()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=6)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--before", default=None, help="an earlier checkout to compare with")
    parser.add_argument("--kernels", action="store_true", help="time the kernels instead")
    parser.add_argument("--child", choices=[*VARIANTS, "kernels"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _kernel_child(args) if args.child == "kernels" else _child(args)
    trees = {"now": None} if args.before is None else {"now": None, "before": args.before}
    if args.kernels:
        return _kernels(args, trees)
    times = {(tree, name): [] for tree in trees for name in VARIANTS}
    for k in range(args.rounds):
        for tree, name in (list(times) if k % 2 == 0 else list(times)[::-1]):
            env = dict(os.environ)
            if trees[tree]:
                env["PYTHONPATH"] = os.pathsep.join(
                    [os.path.abspath(trees[tree])] + env.get("PYTHONPATH", "").split(os.pathsep))
            out = subprocess.run([sys.executable, __file__, "--child", name, "--width",
                                  str(args.width), "--hidden", str(args.hidden), "--batch",
                                  str(args.batch), "--seconds", str(args.seconds)], env=env,
                                 capture_output=True, text=True, check=True).stdout
            times[tree, name].append(json.loads(out.strip().splitlines()[-1]))
    print(f"| tree | variant | median step ms | vs plain |  ({args.hidden} x {args.width} gelu, "
          f"batch {args.batch}, {args.rounds} rounds)")
    for tree in trees:
        base = sorted(times[tree, "plain"])[args.rounds // 2]
        for name in VARIANTS:
            median = sorted(times[tree, name])[args.rounds // 2]
            print(f"| {tree} | {name} | {median * 1e3:.2f} | x{median / base:.2f} |")
    return None


def _environment(path):
    """This process's environment with ``path`` (a checkout, or None) first on PYTHONPATH."""
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.abspath(path)] + env.get("PYTHONPATH", "").split(os.pathsep))
    return env


def _kernels(args, trees):
    """Alternate one kernel-timing process per tree over the rounds; print the medians."""
    runs = {tree: [] for tree in trees}
    for k in range(args.rounds):
        for tree in (list(trees) if k % 2 == 0 else list(trees)[::-1]):
            out = subprocess.run([sys.executable, __file__, "--child", "kernels", "--width",
                                  str(args.width), "--batch", str(args.batch)],
                                 env=_environment(trees[tree]), capture_output=True, text=True,
                                 check=True).stdout
            runs[tree].append(json.loads(out.strip().splitlines()[-1]))
    print(f"| tree | kernel | median us | vs residual_add |  ({args.batch} x {args.width}, "
          f"{args.rounds} rounds)")
    for tree, values in runs.items():
        medians = {name: sorted(r[name] for r in values)[args.rounds // 2] for name in values[0]}
        for name, median in medians.items():
            print(f"| {tree} | {name} | {median * 1e6:.1f} | "
                  f"x{median / medians['residual_add']:.2f} |")


if __name__ == "__main__":
    main()
