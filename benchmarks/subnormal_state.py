"""Adam's update when part of its state decays into the float32 subnormal range (issue 18).

    python benchmarks/subnormal_state.py [OLD_CHECKOUT] [--rounds 5] [--steps 300]

A parameter whose gradient stays 0 (a dead relu unit, a pixel that is always 0) has its first
and second moments multiplied by beta1 and beta2 every step: they decay below float32's
smallest normal number and, unflushed, stay there (0.9 * m rounds back to m for the smallest
subnormals). Each process times ``adam_step`` (the Numba twin, all threads, 235,146 parameters:
the MNIST 784-256-128-10 model) in two states, interleaved step by step: "live" (every
gradient nonzero) and "dead" (a third of the gradients 0, their m and v started just above the
smallest normal number and decayed for ``--steps`` steps before the timing). Prints the median
time per update of each and their ratio, per process; OLD_CHECKOUT (a work tree with a
``gpunn/kernels -> ../kernels`` link, as for step_vs_previous.py) runs another version of the
kernels in alternating fresh processes (which goes first alternates by round), and the summary
adds the median over rounds of each round's now / before ratio of the live update.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

N = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10


def child(steps):
    """Median seconds per update: live state, dead state; and how much dead state is subnormal."""
    import numpy as np
    from gpunn.kernels.optimizers import adam_step

    rng = np.random.default_rng(0)
    f32, tiny = np.float32, np.finfo(np.float32).tiny
    runs = {}
    for name in ("live", "dead"):
        g = (rng.standard_normal(N) * 1e-3).astype(f32)
        p = (rng.standard_normal(N) * 0.05).astype(f32)
        m = (rng.standard_normal(N) * 1e-4).astype(f32)
        v = (rng.random(N) * 1e-8).astype(f32)
        if name == "dead":
            g[::3] = 0
            m[::3] = (tiny * rng.uniform(1.0, 1.5, m[::3].size)).astype(f32)
            v[::3] = (tiny * rng.uniform(1.0, 1.5, v[::3].size)).astype(f32)
        runs[name] = [g, np.array([1e-3], f32), 1, 0.9, 0.999, f32(1e-8), f32(0), f32(0), 0, 0,
                      np.zeros(8, np.int64), p, m, v, np.zeros(0, np.uint16)]
    for _ in range(steps):  # the dead state decays; ctrl[T] (slot 0) counts the updates
        for args in runs.values():
            adam_step(*args)
            args[10][0] += 1
    times = {name: [] for name in runs}
    for _ in range(200):
        for name, args in runs.items():
            start = time.perf_counter()
            adam_step(*args)
            times[name].append(time.perf_counter() - start)
            args[10][0] += 1
    m, v = runs["dead"][12], runs["dead"][13]
    share = float(np.mean(((m != 0) & (np.abs(m) < tiny)) | ((v != 0) & (np.abs(v) < tiny))))
    return statistics.median(times["live"]), statistics.median(times["dead"]), share


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", nargs="?")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(*child(args.steps))
        return
    labels = ("before", "now") if args.old else ("now",)
    ratios = {label: [] for label in labels}
    live = {label: [] for label in labels}
    for round_ in range(args.rounds):
        for label in labels if round_ % 2 == 0 else labels[::-1]:
            env = dict(os.environ)
            if label == "before":
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.old,
                                                                  env.get("PYTHONPATH")]))
            out = subprocess.run([sys.executable, __file__, "--child", "--steps",
                                  str(args.steps)], capture_output=True, text=True, env=env,
                                 check=True).stdout
            live_us, dead, share = map(float, out.split())
            ratios[label].append(dead / live_us)
            live[label].append(live_us)
            print(f"{label:>6}: live {1e6 * live_us:7.0f} us, dead {1e6 * dead:7.0f} us, "
                  f"dead / live {dead / live_us:.2f}, subnormal share of dead state "
                  f"{share:.3f}", flush=True)
    for label in labels:
        print(f"{label:>6}: median dead / live {statistics.median(ratios[label]):.2f}")
    if args.old:
        ratio = statistics.median(n / b for n, b in zip(live["now"], live["before"]))
        print(f"live update, now / before (median of the rounds' ratios): {ratio:.2f}")


if __name__ == "__main__":
    main()
