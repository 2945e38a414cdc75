"""What precision "bf16" costs on the CPU against "fp32" (issue 18 item 3: bf16 <= 1.15x fp32).

    python benchmarks/bf16_cost.py [--rounds 5] [--batches 32 128 512 2048] [--json PATH]
                                   [--compare PYTHON]
    python benchmarks/bf16_cost.py --profile BATCH [--precision bf16]

Each round runs one fresh process per (batch, precision), alternating which precision goes
first. A process trains a 784-256-128-10 relu MLP (softmax, Adam) with ``gpunn.fit`` on 8192
synthetic MNIST-shaped rows: a warm-up epoch (compiles, records the step), then the median of
3 timed epochs, per step. Prints the medians over rounds and the ratio bf16 / fp32.
``--compare PYTHON``: the same processes with another interpreter too (one whose gpunn is
another checkout, e.g. the commit before a change), interleaved with this one's.

``--profile`` times, in one process, each launch of the steady-state step by kernel name, the
GEMMs apart from the conversion of their operands (the CPU widens bfloat16 bits to float32
before NumPy's BLAS reads them).
"""

import argparse
import collections
import json
import statistics
import subprocess
import sys
import time

ROWS, SIZES = 8192, [784, 256, 128, 10]


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.standard_normal((ROWS, SIZES[0])).astype(np.float32), rng.integers(0, 10, ROWS)


def child(batch, precision):
    import gpunn
    from gpunn.backends.cpu import CpuBackend

    X, y = _data()
    with gpunn.use_backend(CpuBackend()):
        model = gpunn.MLP(SIZES, activation="relu", output="softmax", precision=precision)
        fit = lambda: gpunn.fit(model, X, y, epochs=1, batch_size=batch, progress=False)  # noqa
        fit()
        times = []
        for _ in range(3):
            started = time.perf_counter()
            fit()
            times.append(time.perf_counter() - started)
    print(json.dumps({"step": statistics.median(times) / -(-ROWS // batch)}))


def profile(batch, precision, epochs=3):
    """Seconds per step spent in each launch name (GEMMs: ``matmul``; their operand
    conversions: ``matmul operands``), from ``epochs`` epochs after a warm-up one."""
    import gpunn
    from gpunn.backends.cpu import CpuBackend

    X, y = _data()
    be = CpuBackend()
    spent = collections.Counter()
    launch, matmul, scratch = be._launch, be._matmul, be._scratch_operand

    def timed(name, function, *args):
        started = time.perf_counter()
        result = function(*args)
        spent[name] += time.perf_counter() - started
        return result

    be._launch = lambda spec, converted: timed(spec.name, launch, spec, converted)
    be._matmul = lambda *args: timed("matmul", matmul, *args)
    be._scratch_operand = lambda *args: timed("matmul operands", scratch, *args)
    with gpunn.use_backend(be):
        model = gpunn.MLP(SIZES, activation="relu", output="softmax", precision=precision)
        gpunn.fit(model, X, y, epochs=1, batch_size=batch, progress=False)
        spent.clear()
        started = time.perf_counter()
        gpunn.fit(model, X, y, epochs=epochs, batch_size=batch, progress=False)
        total = time.perf_counter() - started
    spent["matmul"] -= spent["matmul operands"]  # the GEMM itself
    for name in ("bf16_to_f32", "round_tf32"):  # launched by the operand conversions
        spent.pop(name, None)
    steps = epochs * -(-ROWS // batch)
    print(f"batch {batch} {precision}: {total / steps * 1e6:.0f} us per fit step")
    for name, seconds in spent.most_common():
        print(f"  {name:>22}: {seconds / steps * 1e6:8.1f} us  {seconds / total:6.1%}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512, 2048])
    parser.add_argument("--json", default=None, help="also write the runs and medians here")
    parser.add_argument("--profile", type=int, default=None, metavar="BATCH")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--compare", default=None, metavar="PYTHON")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1])
        return
    if args.profile:
        profile(args.profile, args.precision)
        return
    pythons = {"this": sys.executable}
    if args.compare:
        pythons["compare"] = args.compare
    runs = {(t, b, p): [] for t in pythons for b in args.batches for p in ("fp32", "bf16")}
    for k in range(args.rounds):
        for batch in args.batches:
            for tree, python in (pythons.items() if k % 2 == 0 else
                                 reversed(pythons.items())):
                for precision in (("fp32", "bf16") if k % 2 == 0 else ("bf16", "fp32")):
                    out = subprocess.run([python, __file__, "--child", str(batch), precision],
                                         capture_output=True, text=True, check=True)
                    runs[tree, batch, precision].append(
                        json.loads(out.stdout.strip().splitlines()[-1]))
    medians = {}
    for tree in pythons:
        for batch in args.batches:
            fp32 = statistics.median(r["step"] for r in runs[tree, batch, "fp32"])
            bf16 = statistics.median(r["step"] for r in runs[tree, batch, "bf16"])
            ratios = [b["step"] / f["step"] for f, b in zip(runs[tree, batch, "fp32"],
                                                              runs[tree, batch, "bf16"])]
            medians[f"{tree} {batch}"] = {"fp32_s": fp32, "bf16_s": bf16, "ratio": bf16 / fp32,
                                          "round_ratios": ratios}
            print(f"{tree:>7} batch {batch:5d}: fp32 {fp32 * 1e6:8.0f} us  bf16 "
                  f"{bf16 * 1e6:8.0f} us  x{bf16 / fp32:.2f}  (rounds: "
                  f"{' '.join(f'{r:.2f}' for r in ratios)})")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"rounds": args.rounds, "rows": ROWS, "sizes": SIZES,
                       "pythons": pythons,
                       "runs": {" ".join(map(str, key)): v for key, v in runs.items()},
                       "medians": medians}, file, indent=1)


if __name__ == "__main__":
    main()
