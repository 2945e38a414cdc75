"""What gradient clipping costs on the CPU: a training step, and the clip against the update.

    python benchmarks/clip_step.py [--rounds 3] [--repeats 15] [--threads N] [--json PATH]
    python benchmarks/clip_step.py --kernels

Each round is a fresh process that builds the three variants (no clipping, ``clip_norm=1.0``,
``clip_value=0.01``) and times them interleaved, rotating which goes first, ``repeats`` times
(a loaded machine drifts; interleaving puts every variant under the same drift):

- ``step``: one fit epoch (16 steps) of a 784-256-128-10 relu MLP (softmax, Adam, batch 128,
  2048 synthetic MNIST-shaped rows, warm), per step;
- ``update``: ``Adam.update`` alone on a 2**20-entry flat model: the fused Adam kernel, plus
  the clip's launches (``sum_partials`` x 3 + ``clip_by_norm``, or ``clip_by_value``). The
  gradient is refilled before each call (in every variant), so the norm clip scales each time;
- ``clip``: the clip's launches alone on the same 2**20 entries (``Clip.launch``; none: no
  launch), its ratio taken to the ``update`` of no clipping.

Prints per part the first round's times and the median over rounds of each round's ratio to
no clipping, from the median and from the minimum over repeats (the least disturbed run, the
better estimate on a machine shared with other jobs).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

VARIANTS = {"none": {}, "norm": {"clip_norm": 1.0}, "value": {"clip_value": 0.01}}
ROWS, BATCH, N_UPDATE = 2048, 128, 1 << 20
PARTS = ("step", "update", "clip")


def _time(function, calls):
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls


def child(repeats, threads):
    import numba
    import numpy as np

    import gpunn
    from gpunn.backends.cpu import CpuBackend
    from gpunn.control import Control
    from gpunn.optim import get_optimizer
    from gpunn.optim.clip import Clip

    if threads:
        numba.set_num_threads(threads)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((ROWS, 784)).astype(np.float32)
    y = rng.integers(0, 10, ROWS)
    g = rng.standard_normal(N_UPDATE).astype(np.float32)
    parts = {}
    with gpunn.use_backend(CpuBackend()) as be:
        for name, clip in VARIANTS.items():
            model = gpunn.MLP([784, 256, 128, 10], activation="relu", output="softmax", seed=1)
            optimizer = get_optimizer("adam", **clip)

            def epoch(model=model, optimizer=optimizer):
                gpunn.fit(model, X, y, optimizer=optimizer, epochs=1, batch_size=BATCH,
                          progress=False)

            class Flat:  # what an optimizer reads of a model: a backend and two flat buffers
                backend = be
                flat_params = rng.standard_normal(N_UPDATE).astype(np.float32)
                flat_grads = np.empty_like(flat_params)

            control = Control(be, np.float32, 1)
            control.start([1e-3], 0)
            updater = get_optimizer("adam", **clip)

            def update(flat=Flat, updater=updater, control=control):
                flat.flat_grads[:] = g
                updater.update(flat, control.lrs, control.ctrl)

            clipper = Clip(**clip)
            grads = g.copy()

            def clip_alone(clipper=clipper, grads=grads, control=control):
                clipper.launch(be, grads, control.ctrl)

            epoch(), update(), clip_alone()  # compile, record, allocate
            parts[name] = {"step": (epoch, 1, ROWS // BATCH), "update": (update, 10, 1),
                           "clip": (clip_alone, 10, 1)}
        times = {name: {part: [] for part in PARTS} for name in VARIANTS}
        names = list(VARIANTS)
        for k in range(repeats):
            for name in names[k % 3:] + names[:k % 3]:
                for part, (function, calls, per) in parts[name].items():
                    times[name][part].append(_time(function, calls) / per)
    print(json.dumps({name: {part: {"median": statistics.median(v), "min": min(v)}
                             for part, v in by_part.items()}
                      for name, by_part in times.items()}))


def _launches(be, n):
    """``{name: launch}``: the fused Adam kernel, the norm clip and the value clip on ``n``
    float32 entries."""
    import numpy as np

    from gpunn.optim.clip import Clip

    ctrl = np.zeros(8, np.int64)
    g = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    p, m, v = g.copy(), np.zeros_like(g), np.zeros_like(g)
    empty, lrs = np.zeros(0, np.uint16), np.array([1e-3], np.float32)
    norm, value = Clip(clip_norm=1.0), Clip(clip_value=0.01)
    g_norm, g_value = g.copy(), g.copy()
    return {"adam": lambda: be.kernel("adam_step", g, lrs, 1, 0.9, 0.999, 1e-8, 0.0, 0.0, 0,
                                      0, ctrl, p, m, v, empty),
            "norm": lambda: norm.launch(be, g_norm, ctrl),
            "value": lambda: value.launch(be, g_value, ctrl)}


def kernels(calls=40):
    """The clip's launches alone against the fused Adam launch they precede, in one process
    with nothing in between (no fit, no BLAS): per size, min and median microseconds."""
    from gpunn.backends.cpu import CpuBackend

    be = CpuBackend()
    # 2**20 entries, and the 784-256-128-10 MLP of the step part (235146 parameters).
    for n in (N_UPDATE, 235146):
        times = {}
        for name, launch in _launches(be, n).items():
            launch()
            times[name] = sorted(_time(launch, 1) for _ in range(calls))
        adam = statistics.median(times["adam"])
        print(f"n={n}: " + "  ".join(
            f"{name} min {t[0] * 1e6:.0f} us median {statistics.median(t) * 1e6:.0f} us "
            f"(x{statistics.median(t) / adam:.2f} of adam)" for name, t in times.items()))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0,
                        help="Numba threads (default: all; 1 is steadier on a shared machine)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--kernels", action="store_true",
                        help="only the launches: clip alone against the Adam kernel")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kernels:
        kernels()
        return
    if args.child:
        child(args.child, args.threads)
        return
    rounds = []
    for _ in range(args.rounds):
        out = subprocess.run([sys.executable, __file__, "--child", str(args.repeats),
                              "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True)
        rounds.append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {}
    for part in PARTS:
        for stat in ("median", "min"):
            first = rounds[0]
            line = f"{part:>7} {stat:>6}: none {first['none'][part][stat] * 1e6:8.0f} us"
            for variant in ("norm", "value"):
                ratio = statistics.median(r[variant][part][stat] / r["none"]["update"][stat]
                                          if part == "clip" else
                                          r[variant][part][stat] / r["none"][part][stat]
                                          for r in rounds)
                summary[f"{part}_{stat}_{variant}_ratio"] = ratio
                line += (f"  {variant} {first[variant][part][stat] * 1e6:8.0f} us "
                         f"x{ratio:.3f}")
            print(line)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"rounds": rounds, "repeats": args.repeats, "threads": args.threads,
                       "summary": summary}, file, indent=1)


if __name__ == "__main__":
    main()
