"""Data-parallel training on CPUs: samples/s at 1 and 2 ranks, the all-reduce's share of a step,
and a MODEL (arithmetic, not a measurement) of the step at k GPUs.

    python benchmarks/distributed.py [--rounds 5] [--steps 8] [--json PATH] [--markdown PATH]

The script launches itself with ``mpiexec`` (the 'mpi' extra's MPICH) three times, on the
MLP 784-1024-1024-10 (float32, sigmoid, Adam) at 256 rows per rank per step:

- 1 rank on 1 thread, 1 rank on 2 threads, 2 ranks on 1 thread each (the 2 cores here);
- in each rank, interleaved in rounds: the training step with the all-reduce
  (:class:`~gpunn.step.TrainStep` with an :class:`~gpunn.comm.MPIComm`), the same step alone
  (no communicator, every rank at once, so the cores are as busy) and the all-reduce of the
  flat gradient alone.

The all-reduce's share of a step is (step with all-reduce - step alone) / step with all-reduce;
medians over the rounds; rank 0 reports.
"""

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES, PER_RANK = [784, 1024, 1024, 10], 256
CONFIGS = [(1, 1), (1, 2), (2, 1)]  # (ranks, threads per rank)
# Assumptions of the GPU model (NOT measurements made here): NCCL bus bandwidth of an
# all-reduce as nccl-tests reports it ("busbw"), and a per-collective latency.
LINKS = {"NVLink (H100/H200 SXM node)": 450e9, "PCIe Gen4 x16 (workstation)": 20e9}
NCCL_LATENCY_S = 20e-6
# The one-GPU step when no GPU is here: an H100 SXM roofline MODEL. SGEMMs at 70% of the FP32
# peak; per element, (bytes, flops) of the step's other kernels at HBM speed, 3 us per launch.
H100 = {"name": "NVIDIA H100 SXM (model)", "hbm_bytes_per_s": 3.35e12,
        "fp32_flops_per_s": 67e12, "launch_s": 3e-6, "sgemm_efficiency": 0.7}
KERNEL_COST = {"bias_act_fwd": (8, 5), "act_bwd": (12, 3), "softmax_xent": (16, 8),
               "adam_step": (28, 18)}


def _median(values):
    return float(np.median(values))


def _kernel_s(kernel, n):
    nbytes, flops = KERNEL_COST[kernel]
    return H100["launch_s"] + max(nbytes * n / H100["hbm_bytes_per_s"],
                                  flops * n / H100["fp32_flops_per_s"])


def model_step(sizes, batch):
    """MODELLED seconds of one training step on the H100 above (not a measurement)."""
    pairs = list(itertools.pairwise(sizes))
    flops = 2 * batch * (3 * sum(a * b for a, b in pairs) - sizes[0] * sizes[1])
    gemm = flops / (H100["fp32_flops_per_s"] * H100["sgemm_efficiency"])
    return (gemm + sum(_kernel_s("bias_act_fwd", batch * s) for s in sizes[1:])
            + sum(_kernel_s("act_bwd", batch * s) for s in sizes[1:-1])
            + _kernel_s("softmax_xent", batch * sizes[-1])
            + _kernel_s("adam_step", sum(a * b + b for a, b in pairs)))


def _timed(func, steps):
    started = time.perf_counter()
    for _ in range(steps):
        func()
    return (time.perf_counter() - started) / steps


def _contenders(comm):
    """The three functions one rank times: step with all-reduce, step alone, all-reduce."""
    import gpunn
    from gpunn.bench.step import loop, synthetic
    from gpunn.step import TrainStep

    # Four global batches, so that steps gather their rows as in fit.
    X, y = synthetic(4 * PER_RANK * comm.size, SIZES[0], SIZES[-1])
    model = gpunn.MLP(SIZES, activation="sigmoid", output="softmax", seed=0)
    Xd, T, loss = model.prepare(X, y)
    together = TrainStep(model, loss, gpunn.Adam(lr=1e-3), Xd, T, PER_RANK * comm.size,
                         comm=comm)
    alone = TrainStep(model, loss, gpunn.Adam(lr=1e-3), Xd[:4 * PER_RANK], T[:4 * PER_RANK],
                      PER_RANK)
    flat = model.flat_grads.copy()
    return {"step with all-reduce": loop(together), "step alone": loop(alone),
            "all-reduce alone": lambda: comm.allreduce_sum(flat)}, model.n_params


def worker(threads, rounds, steps):
    """One rank's measurements (rank 0 prints them as JSON)."""
    from gpunn.bench.harness import machine_info, set_threads
    from gpunn.comm import MPIComm

    comm = MPIComm()
    set_threads(threads)
    contenders, n_params = _contenders(comm)
    for func in contenders.values():  # warm-up: compile, allocate
        func()
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, func in contenders.items():
            comm.barrier()
            times[name].append(_timed(func, steps))
    if comm.rank == 0:
        medians = {name: _median(values) for name, values in times.items()}
        print(json.dumps({"ranks": comm.size, "threads": threads, "n_params": n_params,
                          "seconds": times, "median_s": medians,
                          "samples_per_s": PER_RANK * comm.size
                          / medians["step with all-reduce"],
                          "load_average": os.getloadavg(), "machine": machine_info(threads)}))


def launch(ranks, threads, rounds, steps):
    """Run :func:`worker` under ``mpiexec -n ranks``; rank 0's JSON."""
    launcher = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}"
                                           f"{os.environ.get('PATH', '')}")
    if launcher is None:
        sys.exit("no mpiexec: pip install -e '.[mpi]'")
    done = subprocess.run([launcher, "-n", str(ranks), sys.executable, __file__, "--worker",
                           str(threads), "--rounds", str(rounds), "--steps", str(steps)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"mpiexec -n {ranks} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def gpu_step_seconds(override_ms):
    """The one-GPU step time the model starts from, and where it comes from."""
    if override_ms is not None:
        return override_ms / 1e3, "given with --gpu-step-ms"
    from gpunn.backends import cuda_status

    backend = cuda_status()[0]
    if backend is None:
        return model_step(SIZES, PER_RANK), f"MODELLED: {H100['name']}"
    from gpunn.backends import use_backend
    from gpunn.bench.step import gpunn_step, synthetic

    with use_backend(backend):
        step, _ = gpunn_step(SIZES, *synthetic(PER_RANK, SIZES[0], SIZES[-1]), PER_RANK)
        step()
        backend.synchronize()
        seconds = _timed(step, 50)
        backend.synchronize()
    return seconds, f"measured on {backend.device}, 1 GPU"


def gpu_model(step_s, n_params):
    """MODEL of a data-parallel step at k GPUs, 256 rows each: the one-GPU step plus NCCL's
    ring all-reduce of the float32 gradient, ``2 (k-1)/k * bytes / busbw`` plus a latency per
    collective (two per step: gradient and loss sums); no overlap (the update needs it)."""
    rows, nbytes = [], 4 * n_params
    for (link, busbw), k in itertools.product(LINKS.items(), (1, 2, 4, 8)):
        allreduce = 0.0 if k == 1 else 2 * NCCL_LATENCY_S + 2 * (k - 1) / k * nbytes / busbw
        total = step_s + allreduce
        rows.append({"link": link, "busbw_assumed": busbw, "gpus": k, "step_s": total,
                     "allreduce_s": allreduce, "allreduce_share": allreduce / total,
                     "samples_per_s": k * PER_RANK / total, "efficiency": step_s / total})
    return rows


def summary(runs):
    """The figures the issue asks for, from the three runs."""
    by = {(r["ranks"], r["threads"]): r for r in runs}
    two = by[(2, 1)]["median_s"]
    return {
        "samples_per_s": {f"{r} rank(s) x {t} thread(s)": by[(r, t)]["samples_per_s"]
                          for r, t in CONFIGS},
        "efficiency_vs_1_rank_1_thread": by[(2, 1)]["samples_per_s"]
        / (2 * by[(1, 1)]["samples_per_s"]),
        "speedup_vs_1_rank_2_threads": by[(2, 1)]["samples_per_s"]
        / by[(1, 2)]["samples_per_s"],
        "allreduce_share_of_step_2_ranks": (two["step with all-reduce"] - two["step alone"])
        / two["step with all-reduce"],
        "allreduce_alone_over_step_2_ranks": two["all-reduce alone"]
        / two["step with all-reduce"],
    }


def markdown(runs, figures, model, source):
    lines = ["| ranks x threads | step with all-reduce | step alone | all-reduce alone "
             "| samples/s |", "|---|---|---|---|---|"]
    for r in runs:
        m = r["median_s"]
        lines.append(f"| {r['ranks']} x {r['threads']} | {m['step with all-reduce'] * 1e3:.1f} "
                     f"ms | {m['step alone'] * 1e3:.1f} ms | {m['all-reduce alone'] * 1e3:.2f} "
                     f"ms | {r['samples_per_s']:.0f} |")
    lines += ["", f"- all-reduce share of a 2-rank step: "
              f"{figures['allreduce_share_of_step_2_ranks']:.1%} (step with minus step alone); "
              f"the all-reduce alone: {figures['allreduce_alone_over_step_2_ranks']:.1%}",
              f"- 2 ranks vs 1 rank on 1 thread: efficiency "
              f"{figures['efficiency_vs_1_rank_1_thread']:.2f}; vs 1 rank on 2 threads: "
              f"{figures['speedup_vs_1_rank_2_threads']:.2f}x", "",
              f"MODEL, not a measurement (one-GPU step: {source}; busbw and a "
              f"{NCCL_LATENCY_S * 1e6:.0f} us latency assumed):", "",
              "| link (busbw assumed) | GPUs | step | all-reduce | share | samples/s "
              "| efficiency |", "|---|---|---|---|---|---|---|"]
    for row in model:
        lines.append(f"| {row['link']} ({row['busbw_assumed'] / 1e9:.0f} GB/s) | {row['gpus']} "
                     f"| {row['step_s'] * 1e6:.0f} us | {row['allreduce_s'] * 1e6:.0f} us | "
                     f"{row['allreduce_share']:.0%} | {row['samples_per_s']:.3g} | "
                     f"{row['efficiency']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8, help="steps timed per round")
    parser.add_argument("--gpu-step-ms", type=float, default=None,
                        help="a measured one-GPU step (batch 256) for the model")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker, args.rounds, args.steps)
    runs = [launch(r, t, args.rounds, args.steps) for r, t in CONFIGS]
    figures = summary(runs)
    step_s, source = gpu_step_seconds(args.gpu_step_ms)
    model = gpu_model(step_s, runs[0]["n_params"])
    text = markdown(runs, figures, model, source)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summary": figures, "gpu_model": model,
                                         "gpu_step_source": source}, indent=1))
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
