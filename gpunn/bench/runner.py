"""Runs the selected sections of ``gpunn bench``; writes the JSON and the plots."""

import json
import math
import time
from pathlib import Path

from gpunn._files import atomic_write
from gpunn.bench import harness, sections


def run_all(args, names):
    """Run the sections ``names``; print the report; write the requested files. Returns 0."""
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
    for name in names:
        harness.say(f"{name} ...")
        begun = time.perf_counter()
        section = sections.SECTIONS[name]
        found = section.run(section.profiles[args.mode], backend, torch, threads)
        results["sections"][name] = {**found, "seconds": time.perf_counter() - begun}
    results["machine"] = harness.machine_info(threads)
    results["runtime_s"] = time.perf_counter() - started
    return report(args, results)


def report(args, results):
    """Print the report of ``results``; write the JSON and plots ``args`` asks for. Returns 0."""
    from gpunn.bench import report as tables

    results["targets"] = tables.targets(results)
    print(tables.render(results, sections.tables(results)))
    if args.plots:
        from gpunn.bench import plots

        results["plots"] = plots.write_all(results, Path(args.plots))
    if args.markdown:
        _write_text("--markdown", args.markdown,
                    tables.render(results, sections.tables(results), markdown=True))
    if args.json:
        _write_text("--json", args.json, json.dumps(_finite(results), indent=1) + "\n")
        harness.say(f"wrote {args.json}")
    return 0


def _write_text(name, path, text):
    atomic_write(path, lambda file: file.write(text.encode("utf-8")), name=name)


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
