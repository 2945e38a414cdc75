"""How the CPU backend shares the cores: kernel thread thresholds and the MLP step vs its floor.

Measurement only (no pass/fail): writes ``benchmarks/results/cpu_threading.json``.

- ``thresholds``: per kernel family, sizes 2^10 to 2^21 timed on the calling thread alone and
  on all of Numba's threads, interleaved: the smallest size at which all threads took at most
  ``PARALLEL_GAIN`` of one thread's time, and the median over it and every larger size too
  (``measured_parallel_from``, what ``gpunn.backends.cpu.PARALLEL_FROM`` holds). Where the
  other cores are busy there is none; a model gives the size where the pool pays on an idle
  machine, from an idle pool's wake-up time w and the one-thread time per element c: the
  smallest power of two n with w + n c / threads <= gain n c (``model_parallel_from``, with
  w = ``--wake-us``; the measured w is recorded beside it).
- ``steps``: MLP 784-1024-1024-10 (sigmoid, softmax, Adam), the step ``gpunn.fit`` runs per
  batch (``gpunn.bench.step.loop``) on synthetic data, its time over its GEMM floor (the step's
  matrix products alone on preallocated buffers: three forward, five backward; not the bias
  gradients' GEMVs), at batch 32, 128, 512 and 2048, in fresh
  processes: no PyTorch, PyTorch imported first, gpunn first; on the layer gpunn picks, on
  OpenMP (``NUMBA_THREADING_LAYER=omp``, gpunn's fallback), and with
  ``OPENBLAS_THREAD_TIMEOUT=4``, and on one thread (kernels and BLAS: what the step costs
  beyond its GEMMs, without any sharing of cores). Processes are interleaved round by round;
  each reports the fastest step and floor it saw (timed call by call, interleaved) and their
  process CPU time per call (all threads, spinning ones included), and the result is the
  median over rounds.

    python benchmarks/cpu_threading.py [--sections thresholds,steps] [--rounds 3]
"""

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZES = [784, 1024, 1024, 10]
BATCHES = [32, 128, 512, 2048]
ORDERS = ["no torch", "torch first", "gpunn first"]
CONFIGS = {"default": {}, "omp": {"NUMBA_THREADING_LAYER": "omp"},
           "default + OPENBLAS_THREAD_TIMEOUT=4": {"OPENBLAS_THREAD_TIMEOUT": "4"},
           "one thread": {"OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}}
VARIABLES = ("NUMBA_THREADING_LAYER", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS",
             "NUMBA_NUM_THREADS")
OUT = Path(__file__).resolve().parent / "results" / "cpu_threading.json"


def quiet_time(function, seconds, least=5):
    """Seconds per call of ``function``: the fastest of the calls filling about ``seconds``.

    The fastest, not the median: on a shared machine most samples include time taken by other
    processes, and the quiet ones are what the code costs.
    """
    return sample(function, seconds, least)[0]


def sample(function, seconds, least=5):
    """``(fastest wall seconds, process CPU seconds per call)`` over calls filling about
    ``seconds``. CPU time counts every thread of the process, spinning ones included, and
    hardly depends on what other processes do."""
    function()
    times, cpu = [], time.process_time()
    while sum(times) < seconds or len(times) < least:
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times), (time.process_time() - cpu) / len(times)


def kernel_calls(backend, family, n):
    """A zero-argument call of one launch of ``family`` over ``n`` elements on ``backend``."""
    import numpy as np

    import gpunn

    rng = np.random.default_rng(0)
    if family == "adam_step":  # through the public optimizer: its kernel's signature may change
        with gpunn.use_backend(backend):
            model = gpunn.MLP([n - 1, 1], output=None, seed=0)
        optimizer = gpunn.Adam(lr=1e-3)
        model.flat_grads[:] = rng.standard_normal(model.flat_grads.size).astype(np.float32)
        return lambda: optimizer.step(model)
    Z = rng.standard_normal(n).astype(np.float32)
    if family == "bias_act_fwd":
        cols = min(n, 1024)
        b = np.zeros(cols, np.float32)
        return lambda: backend.kernel("bias_act_fwd", b, cols, 1, Z)
    A = rng.uniform(0, 1, n).astype(np.float32)
    return lambda: backend.kernel("act_bwd", A, 1, Z)


def forced_backend(everywhere):
    """A CPU backend whose every launch runs on all of Numba's threads (``everywhere``) or on
    the calling thread, in place of the library's size thresholds: for this study only."""
    from gpunn.backends.cpu import CpuBackend

    class Forced(CpuBackend):
        def parallel(self, kernel, n):
            return everywhere

    return Forced()


def wake_cost(one, every, samples=40):
    """Seconds a launch on all threads costs more than on one when the pool has been idle
    for a while (as in a training step, where BLAS runs between kernels): the median
    difference (the wake-up time varies with what the other cores are doing), over a launch
    of 8 rows that spans every thread."""
    calls = [kernel_calls(backend, "bias_act_fwd", 8192) for backend in (one, every)]
    differences = []
    for _ in range(samples):
        pair = []
        for call in calls:
            time.sleep(0.005)
            start = time.perf_counter()
            call()
            pair.append(time.perf_counter() - start)
        differences.append(pair[1] - pair[0])
    return max(0.0, statistics.median(differences))


def model_threshold(wake, per_element, gain, threads):
    """Smallest power of two n with wake + n c / threads <= gain n c: where the pool pays."""
    n = wake / (per_element * (gain - 1 / threads))
    return 1 << max(10, math.ceil(math.log2(max(n, 1))))


def thresholds(gain, rounds, wake_assumed):
    """Per family and size: one-thread and all-thread times, the sizes from which all threads
    won (None: nowhere) and, from the idle pool's wake-up cost and the one-thread cost per
    element, where they should win on an otherwise idle machine."""
    from gpunn.backends.cpu import numba_runtime

    one, every = forced_backend(False), forced_backend(True)
    wake, threads = wake_cost(one, every), numba_runtime()["threads"]
    found = {"wake_measured_s": wake, "wake_assumed_s": wake_assumed, "threads": threads}
    for family in ("bias_act_fwd", "act_bwd", "adam_step"):
        rows = []
        for n in (2 ** k for k in range(10, 22)):
            calls = [kernel_calls(backend, family, n) for backend in (one, every)]
            pairs = [[quiet_time(call, 0.02) for call in calls] for _ in range(rounds)]
            single, parallel = (statistics.median(p[i] for p in pairs) for i in (0, 1))
            rows.append({"n": n, "one_thread_s": single, "all_threads_s": parallel,
                         "ratio": parallel / single})
        ratios = [row["ratio"] for row in rows]
        first = next((i for i in range(len(rows)) if ratios[i] <= gain
                      and statistics.median(ratios[i:]) <= gain), None)
        per_element = rows[-1]["one_thread_s"] / rows[-1]["n"]
        found[family] = {"sizes": rows, "measured_parallel_from": None if first is None
                         else rows[first]["n"], "one_thread_s_per_element": per_element,
                         "model_parallel_from": model_threshold(wake_assumed, per_element,
                                                                gain, threads)}
        print(f"{family}: wake {wake * 1e6:.0f} us, model {found[family]['model_parallel_from']}"
              f", measured {found[family]['measured_parallel_from']}: " + ", ".join(
                  f"{row['n']}:{row['ratio']:.2f}" for row in rows), flush=True)
    return found


def gemm_floor(batch):
    """The step's matrix products alone, through the backend's matmul, float32 (the same
    floor ``gpunn bench`` measures)."""
    import gpunn
    from gpunn.bench.step import gemm_floor as floor

    return floor(SIZES, batch, gpunn.get_backend())


def train_step(batch, steps=8):
    """One training step per call: what ``gpunn.fit`` runs per batch (``gpunn.bench.step.loop``:
    gather, forward, loss, backward, finiteness check, Adam), on ``steps`` batches of data."""
    import numpy as np

    import gpunn
    from gpunn.bench.step import loop
    from gpunn.step import TrainStep

    rng = np.random.default_rng(0)
    X = rng.standard_normal((steps * batch, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], steps * batch)
    model = gpunn.MLP(SIZES, activation="sigmoid", output="softmax", seed=0)
    Xd, T, loss = model.prepare(X, y)
    trainer = TrainStep(model, loss, gpunn.Adam(lr=1e-3), Xd, T, batch)
    trainer.shuffle(rng)
    return loop(trainer)


def child(order, batches, seconds):
    """In a fresh process: step / floor per batch size, imports in ``order``."""
    if order == "torch first":
        import torch

        torch.ones(64, 64) @ torch.ones(64, 64)  # its OpenMP pool started, as a user's would
    from gpunn.backends.cpu import numba_runtime

    runtime = numba_runtime()
    if order == "gpunn first":
        import torch

        torch.ones(64, 64) @ torch.ones(64, 64)
    results = {}
    for batch in batches:
        step, floor = train_step(batch), gemm_floor(batch)
        samples = {"step": [], "floor": []}
        for _ in range(3):  # interleaved: a quiet spell for one is given to the other too
            samples["step"].append(sample(step, seconds))
            samples["floor"].append(sample(floor, seconds / 2))
        found = {name: (min(s[0] for s in runs), statistics.median(s[1] for s in runs))
                 for name, runs in samples.items()}
        results[batch] = {"step_s": found["step"][0], "floor_s": found["floor"][0],
                          "step_over_floor": found["step"][0] / found["floor"][0],
                          "step_cpu_s": found["step"][1], "floor_cpu_s": found["floor"][1],
                          "cpu_step_over_floor": found["step"][1] / found["floor"][1]}
    return {"layer": runtime["layer"], "tbb": runtime["tbb"], "batches": results}


def spawn(order, config, batches, seconds):
    """Run :func:`child` in a fresh interpreter with ``config``'s environment."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(CONFIGS[config])
    code = [sys.executable, __file__, "--child", json.dumps([order, batches, seconds])]
    done = subprocess.run(code, capture_output=True, text=True, env=env, timeout=1800,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{order}, {config}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def steps(rounds, batches, seconds, configs, orders, partial=None):
    """Interleaved fresh processes per round; medians over rounds per (config, order, batch).
    Each process's result is also appended to ``partial`` (JSON lines) as it comes."""
    runs = {}
    for round_index in range(rounds):
        for config, order in itertools.product(configs, orders):
            found = spawn(order, config, batches, seconds)
            runs.setdefault(config, {}).setdefault(order, []).append(found)
            if partial is not None:
                with partial.open("a") as file:
                    file.write(json.dumps({"config": config, "order": order, **found}) + "\n")
            print(f"round {round_index} {config} / {order} ({found['layer']}): " + ", ".join(
                f"b{b} {r['step_over_floor']:.2f} (cpu {r['cpu_step_over_floor']:.2f})"
                for b, r in found["batches"].items()), flush=True)
    return {config: {order: summarize(found) for order, found in orders.items()}
            for config, orders in runs.items()}


def summarize(found):
    """Median over rounds of each batch's step, floor and step/floor."""
    batches = found[0]["batches"]
    return {"layer": found[0]["layer"], "rounds": found, "median": {
        batch: {key: statistics.median(run["batches"][batch][key] for run in found)
                for key in found[0]["batches"][batch]} for batch in batches}}


def machine():
    """What the numbers were measured on."""
    import numpy as np
    from threadpoolctl import threadpool_info

    from gpunn.backends.cpu import numba_runtime

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent, check=False).stdout.strip()
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "load_average": os.getloadavg(), "numpy": np.__version__, "commit": commit,
            "numba": numba_runtime(), "blas": [
                {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                for p in threadpool_info() if p.get("user_api") == "blas"]}


def main(argv=None):
    """Run the sections asked for and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="thresholds,steps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--seconds", type=float, default=1.0, help="per sample")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--orders", default=",".join(ORDERS))
    parser.add_argument("--wake-us", type=float, default=70.0,
                        help="an idle pool's wake-up time for the threshold model")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*json.loads(args.child))))
        return 0
    sections = args.sections.split(",")
    report = {"machine": machine(), "parallel_gain": None}
    if "thresholds" in sections:
        from gpunn.backends.cpu import PARALLEL_GAIN

        report["parallel_gain"] = PARALLEL_GAIN
        report["thresholds"] = thresholds(PARALLEL_GAIN, args.rounds, args.wake_us * 1e-6)
    if "steps" in sections:
        batches = [int(b) for b in args.batches.split(",")]
        report["steps"] = steps(args.rounds, batches, args.seconds, args.configs.split(","),
                                args.orders.split(","), args.out.with_suffix(".partial.jsonl"))
    report["machine"]["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
