"""Runs the selected sections of ``gpunn bench``; writes the JSON and the plots."""

import json
import math
import time
from pathlib import Path

from gpunn.bench import harness

BIG, SMALL, DIGITS = [784, 1024, 1024, 10], [784, 256, 256, 10], [64, 256, 256, 10]
HUGE = [784, 4096, 4096, 4096, 10]
# The rows of the GPU step table (issue #8): sizes, batch; --quick keeps those with targets.
GPU_ROWS = [[BIG, 128], [BIG, 8192], [HUGE, 1024], [HUGE, 8192], [[64, 256, 256, 10], 512]]
GPU_QUICK_ROWS = [[BIG, 128], [BIG, 8192], [HUGE, 8192]]
ALL_BATCHES = [1, 8, 32, 64, 128, 256, 512, 1024, 2048, None]


def _sweep(data, sizes, batches, budget_s, max_epochs, eval_rows, n=60000):
    return {"data": data, "sizes": sizes, "batches": batches, "budget_s": budget_s,
            "max_epochs": max_epochs, "eval_rows": eval_rows, "n": n}


# Per mode: (rounds, seconds per sample) of each section and its sizes; for "gpu" also the
# seconds each peer's process may take (JAX compiles, and autotunes, each row's shape).
# --quick fits the GPU check: gpu and updates in 120 s on an H200, process starts included.
PROFILES = {
    "full": {"updates": (9, 0.03, [1e5, 1e6, 1e7]),
             "step": (7, 0.1, BIG, [32, 64, 128, 256, 512, 1024, 2048]),
             "vectorization": (5, 0.02, 2000, 256, SMALL),
             "batch": [_sweep("digits", DIGITS, ALL_BATCHES, 2.0, 60, 1797),
                       _sweep("synthetic", SMALL, ALL_BATCHES, 6.0, 10, 5000),
                       _sweep("synthetic", BIG, ALL_BATCHES, 10.0, 5, 3000)],
             "imports": (5, 0.05, BIG, [32, 128, 512, 2048], 3),
             "gpu": (7, 0.05, GPU_ROWS, None, 600)},
    "quick": {"updates": (5, 0.02, [1e5, 1e6, 1e7]),
              "step": (5, 0.05, BIG, [32, 128, 512, 2048]),
              "vectorization": (5, 0.02, 1000, 128, SMALL),
              "batch": [_sweep("digits", DIGITS, [1, 8, 64, 512, None], 1.0, 30, 1797),
                        _sweep("synthetic", SMALL, [1, 32, 256, 2048, None], 2.0, 3, 2000)],
              "imports": (3, 0.05, BIG, [128, 2048], 1),
              "gpu": (5, 0.02, GPU_QUICK_ROWS, None, 22)},
    "smoke": {"updates": (3, 0.002, [1e4]),
              "step": (3, 0.002, [64, 32, 32, 10], [32]),
              "vectorization": (3, 0.002, 64, 16, [64, 16, 10]),
              "batch": [_sweep("digits", [64, 16, 10], [1, 64, None], 0.1, 2, 500),
                        _sweep("synthetic", [784, 16, 10], [32, None], 0.1, 1, 500, 2000)],
              "imports": (3, 0.002, [64, 32, 32, 10], [32], 1),
              # On a machine without CUDA the smoke run still runs the GPU peers' scripts,
              # on the CPU, so that they are exercised everywhere.
              "gpu": (3, 0.002, [[[64, 32, 32, 10], 32]], "cpu", 120)},
}


def _own_process(comparisons, peer, keys, build, rounds, sample_s, threads):
    """``{"comparisons"}`` with PyTorch's ``peer`` measured again in its own process (on the
    CPU in-process PyTorch shares gpunn's OpenMP runtime); its error, if any, as a note."""
    from gpunn.bench import processes

    answer = processes.measure({"peer": peer, "device": "cpu", "rounds": rounds,
                                "min_sample_s": sample_s, "threads": threads,
                                "rows": [[c[k] for k in keys] for c in comparisons]})
    found = {json.dumps(row["row"]): row for row in answer["rows"]}
    note = {k: answer[k] for k in ("skipped", "error") if k in answer}
    joined = []
    for c in comparisons:
        row = found.get(json.dumps([c[k] for k in keys]), {"timings": {}, "not_available": {}})
        own = {f"{name} (own process)": t for name, t in row["timings"].items()}
        missing = {f"{name} (own process)": why for name, why in row["not_available"].items()}
        joined.append(build(*[c[k] for k in keys], {**c["contenders"], **own},
                            {**c["not_available"], **missing}))
    return {"comparisons": joined} | ({"own_process": note} if note else {})


def _updates(p, backend, torch, threads):
    from gpunn.bench import updates

    rounds, sample_s, sizes = p["updates"]
    found = updates.run(sizes, backend, torch, rounds, sample_s, progress=harness.say)
    if torch is None or backend.name != "cpu":
        return {"comparisons": found}
    return _own_process(found, "torch updates", ("kind", "n"), updates.comparison, rounds,
                        sample_s, threads)


def _step(p, backend, torch, threads):
    from gpunn.bench import step

    rounds, sample_s, sizes, batches = p["step"]
    found = step.run(sizes, batches, torch, rounds, sample_s, progress=harness.say)
    if torch is None or backend.name != "cpu":
        return {"comparisons": found}
    return _own_process(found, "torch eager", ("sizes", "batch"), step.comparison, rounds,
                        sample_s, threads)


def _vectorization(p, backend, torch, threads):
    from gpunn.bench import vectorization

    rounds, sample_s, m_logreg, m_mlp, sizes = p["vectorization"]
    return {"comparisons": vectorization.run(m_logreg, m_mlp, sizes, rounds=rounds,
                                             min_sample_s=sample_s)}


def _batch(p, backend, torch, threads):
    from gpunn.bench import batch

    sweeps = []
    for s in p["batch"]:
        X, y = batch.digits() if s["data"] == "digits" else batch.synthetic_mnist(n=s["n"])
        harness.say(f"  {s['data']} {s['sizes']}: {X.shape[0]} rows")
        found = batch.sweep(X, y, s["sizes"], s["batches"], s["budget_s"], s["max_epochs"],
                            eval_rows=s["eval_rows"])
        sweeps.append({**s, "rows": int(X.shape[0]), "optimizer": "sgd", "lr": 0.1, **found})
    return {"sweeps": sweeps}


def _imports(p, backend, torch, threads):
    from gpunn.bench import processes

    rounds, sample_s, sizes, batches, repeats = p["imports"]
    return processes.import_orders(sizes, batches, repeats, rounds, sample_s, threads)


def _gpu(p, backend, torch, threads):
    from gpunn.bench import processes

    rounds, sample_s, rows, elsewhere, timeout = p["gpu"]
    if backend.name != "cuda" and elsewhere is None:
        return {"skipped": f"needs CUDA: the backend here is {backend.name}"}
    device = "cuda" if backend.name == "cuda" else elsewhere
    return processes.peers(rows, device, rounds, sample_s, threads, timeout=timeout)


RUNNERS = {"updates": _updates, "step": _step, "gpu": _gpu, "vectorization": _vectorization,
           "batch": _batch, "imports": _imports}


def run_all(args, sections):
    """Run ``sections``; print the report; write the requested files. Returns 0."""
    from gpunn.backends import use_backend
    from gpunn.backends.cpu import start_numba_threads

    started = time.perf_counter()
    backend = use_backend(args.backend).backend
    start_numba_threads()  # before PyTorch loads: see processes.import_orders for the others
    torch = None if args.no_torch else harness.import_optional("torch")
    threads = args.threads or harness.usable_cpus()
    harness.set_threads(threads)
    results = {"schema": 2, "mode": args.mode, "backend": backend.name,
               "device": backend.device, "sections": {}}
    for name in sections:
        harness.say(f"{name} ...")
        begun = time.perf_counter()
        section = RUNNERS[name](PROFILES[args.mode], backend, torch, threads)
        results["sections"][name] = {**section, "seconds": time.perf_counter() - begun}
    results["machine"] = harness.machine_info(threads)
    results["runtime_s"] = time.perf_counter() - started
    return report(args, results)


def report(args, results):
    """Print the report of ``results``; write the JSON and plots ``args`` asks for. Returns 0."""
    from gpunn.bench import report as tables

    results["targets"] = tables.targets(results)
    print(tables.render(results))
    if args.plots:
        from gpunn.bench import plots

        results["plots"] = plots.write_all(results, Path(args.plots))
    if args.markdown:
        Path(args.markdown).write_text(tables.render(results, markdown=True))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(_finite(results), indent=1) + "\n")
        harness.say(f"wrote {args.json}")
    return 0


def report_from(args):
    """Re-render an earlier run's JSON (``--report-from``). Returns 0."""
    return report(args, json.loads(Path(args.report_from).read_text()))


def _finite(value):
    """JSON without NaN/inf: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
