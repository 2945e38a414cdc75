"""Runs the selected sections of ``gpunn bench`` and writes the table, JSON, plots and page."""

import json
import math
import os
import sys
import time
from pathlib import Path

from gpunn.bench import harness
from gpunn.bench.profiles import PROFILES

SCHEMA = 1


def _say(text):
    print(f"[gpunn bench] {text}", file=sys.stderr, flush=True)


def _kernels(profile, backend, torch):
    from gpunn.bench import ceiling, kernels

    return {"ceiling": ceiling.measure(backend, profile["ceiling_bytes"],
                                              profile["ceiling_rounds"]),
            "comparisons": kernels.run(profile["kernel_sizes"], backend, torch,
                                       profile["kernel_rounds"], profile["kernel_sample_s"])}


def _peers(profile, backend, torch):
    from gpunn.bench import peers

    return {"comparisons": peers.run(profile["peer_sizes"], profile["peer_batches"], torch,
                                     profile["peer_rounds"], profile["peer_sample_s"])}


def _vectorization(profile, backend, torch):
    from gpunn.bench import vectorization

    return {"comparisons": vectorization.run(
        profile["vec_logreg_rows"], profile["vec_mlp_rows"], profile["vec_mlp_sizes"],
        rounds=profile["vec_rounds"])}


def _training(profile, backend, torch):
    from gpunn.bench import training

    sweeps = []
    for config in profile["sweeps"]:
        if config["data"] == "digits":
            X, y = training.digits()
        else:
            X, y = training.synthetic_mnist(n=config.get("n", 60000))
        _say(f"  sweep {config['data']} {config['sizes']}: {X.shape[0]} rows")
        result = training.sweep(X, y, config["sizes"], config["batches"], config["budget_s"],
                                config["max_epochs"], eval_rows=config["eval_rows"])
        sweeps.append({"data": config["data"], "rows": int(X.shape[0]),
                       "sizes": config["sizes"], "budget_s": config["budget_s"],
                       "max_epochs": config["max_epochs"], "optimizer": "sgd", "lr": 0.1,
                       **result})
    return {"sweeps": sweeps}


def _gpu(profile, backend, torch):
    from gpunn.bench import gpu_model

    section = {"gpu": gpu_model.H100,
               "kernels": gpu_model.model_table(profile["gpu_sizes"]),
               "steps": [gpu_model.model_step(profile["peer_sizes"], b)
                         for b in profile["gpu_step_batches"]],
               "measured": None}
    if backend.name != "cpu":
        section["measured"] = gpu_model.measure(backend, profile["gpu_sizes"])
    return section


def _torch_alone(results, profile, threads):
    """Add PyTorch's own-process rows (see :mod:`gpunn.bench.torch_alone`) to the kernel and
    peer comparisons, with gpunn's ratios against them."""
    import subprocess

    sections = results["sections"]
    spec = {"threads": threads}
    if "kernels" in sections:
        spec["kernels"] = {"kinds": ["adam", "rmsprop", "sgd_momentum"],
                           "sizes": profile["kernel_sizes"], "rounds": profile["kernel_rounds"],
                           "sample_s": profile["kernel_sample_s"]}
    if "peers" in sections:
        spec["peers"] = {"sizes": profile["peer_sizes"], "batches": profile["peer_batches"],
                         "rounds": profile["peer_rounds"], "sample_s": profile["peer_sample_s"]}
    if len(spec) == 1:
        return
    _say("PyTorch in its own process ...")
    done = subprocess.run([sys.executable, "-m", "gpunn.bench.torch_alone", json.dumps(spec)],
                          capture_output=True, text=True, check=True)
    rows = json.loads(done.stdout)
    for section, keys in (("kernels", ("kind", "n")), ("peers", ("batch",))):
        for row in rows[section]:
            for comparison in sections[section]["comparisons"]:
                if all(comparison[k] == row[k] for k in keys):
                    _add_contender(comparison, row["name"], row["timing"])


def _add_contender(comparison, name, timing):
    gpunn = comparison["contenders"]["gpunn"]
    extra = {k: v * gpunn["median_s"] / timing["median_s"] for k, v in gpunn.items()
             if k.endswith("_per_s")}
    comparison["contenders"][name] = {**timing, **extra}
    comparison["ratios"][f"gpunn vs {name}"] = timing["median_s"] / gpunn["median_s"]


RUNNERS = {"kernels": _kernels, "peers": _peers, "vectorization": _vectorization,
           "training": _training, "gpu": _gpu}


def _setup(args):
    """Pick the backend, start Numba's threads as gpunn does, then import PyTorch and set the
    thread counts; ``(backend, torch, threads, restore)``.

    PyTorch and Numba's OpenMP layer end up sharing one GNU OpenMP runtime, whichever loads
    first: started first, gpunn's runs with its passive wait policy and PyTorch shares it;
    imported first, PyTorch's spinning workers would take the cores from OpenBLAS in gpunn's
    steps (the step of MLP 784-1024-1024-10 at batch 128: 9.5 ms vs 55 ms on 2 cores).
    """
    from gpunn.backends import use_backend
    from gpunn.backends.cpu import start_numba_threads

    backend = use_backend(args.backend).backend
    start_numba_threads()
    torch = None if args.no_torch else harness.import_torch()
    threads = args.threads or harness.usable_cpus()
    return backend, torch, threads, harness.set_threads(threads)


def run_all(args, sections):
    """Run ``sections``; print the report; write the requested files. Returns 0."""
    from gpunn.bench import report

    started = time.perf_counter()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    backend, torch, threads, restore = _setup(args)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    results = {"schema": SCHEMA, "mode": mode, "backend": backend.name,
               "device": backend.device, "threads": threads, "sections": {}}
    try:
        for name in sections:
            _say(f"{name} ...")
            begun = time.perf_counter()
            results["sections"][name] = RUNNERS[name](PROFILES[mode], backend, torch)
            results["sections"][name]["seconds"] = time.perf_counter() - begun
        if torch is not None and backend.name == "cpu":
            _torch_alone(results, PROFILES[mode], threads)
    finally:
        restore()
    results["machine"] = harness.machine_info(threads=threads)
    results["machine"]["loadavg_before"] = load_before
    results["machine"]["loadavg_after"] = os.getloadavg() if load_before else None
    results["runtime_s"] = time.perf_counter() - started
    results["targets"] = report.targets(results)
    print(report.render(results))
    _write(args, results)
    return 0


def report_from(args):
    """Print the report of the JSON ``args.report_from``; write its plots and page. Returns 0."""
    from gpunn.bench import report

    results = json.loads(Path(args.report_from).read_text())
    print(report.render(results))
    _write(args, results)
    return 0


def _finite(value):
    """JSON without NaN/inf: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _write(args, results):
    if args.plots:
        from gpunn.bench import plots

        results["plots"] = plots.write_all(results, Path(args.plots))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(_finite(results), indent=1) + "\n")
        _say(f"wrote {args.json}")
    if args.markdown:
        from gpunn.bench import report

        page = Path(args.markdown)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(report.markdown(results, base=page.parent))
        _say(f"wrote {args.markdown}")
