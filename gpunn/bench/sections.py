"""The sections of ``gpunn bench``: one registry that the command line, its help, the runner,
the report and the tests read.

A section is a name, a line of help, the backends it runs on by default, its sizes per mode
(``full``, ``quick``, ``smoke``), the function that measures it and the one that tables it.
Adding a section is one module (the measurement) and one :class:`Section` here.
"""

from collections.abc import Callable
from dataclasses import dataclass

from gpunn.bench import harness, report

BIG, SMALL, DIGITS = [784, 1024, 1024, 10], [784, 256, 256, 10], [64, 256, 256, 10]
HUGE = [784, 4096, 4096, 4096, 10]
# The rows of the GPU step table (issue #8): sizes, batch; --quick keeps those with targets.
GPU_ROWS = [[BIG, 128], [BIG, 8192], [HUGE, 1024], [HUGE, 8192], [[64, 256, 256, 10], 512]]
GPU_QUICK_ROWS = [[BIG, 128], [BIG, 8192], [HUGE, 8192]]
ALL_BATCHES = [1, 8, 32, 64, 128, 256, 512, 1024, 2048, None]


@dataclass(frozen=True)
class Section:
    """One section of ``gpunn bench``.

    Attributes:
        name: its ``--sections`` name.
        summary: one line for ``--help``.
        backends: the backends whose default run includes it.
        profiles: ``{mode: sizes}``, what ``run`` receives in each mode.
        run: ``run(profile, backend, torch, threads)``: the section's JSON-ready results.
        tables: ``tables(results)``: ``[(title, headers, rows)]`` of the report.
    """

    name: str
    summary: str
    backends: tuple
    profiles: dict
    run: Callable
    tables: Callable


def _updates(p, backend, torch, threads):
    from gpunn.bench import processes, updates

    rounds, sample_s, sizes = p
    found = updates.run(sizes, backend, torch, rounds, sample_s, progress=harness.say)
    if torch is None or backend.name != "cpu":
        return {"comparisons": found}
    return processes.own_process(found, "torch updates", ("kind", "n"), updates.comparison,
                                 rounds, sample_s, threads)


def _step(p, backend, torch, threads):
    from gpunn.bench import processes, step

    rounds, sample_s, sizes, batches = p
    found = step.run(sizes, batches, torch, rounds, sample_s, progress=harness.say)
    if torch is None or backend.name != "cpu":
        return {"comparisons": found}
    return processes.own_process(found, "torch eager", ("sizes", "batch"), step.comparison,
                                 rounds, sample_s, threads)


def _vectorization(p, backend, torch, threads):
    from gpunn.bench import vectorization

    rounds, sample_s, m_logreg, m_mlp, sizes = p
    return {"comparisons": vectorization.run(m_logreg, m_mlp, sizes, rounds=rounds,
                                             min_sample_s=sample_s)}


def _sweep(data, sizes, batches, budget_s, max_epochs, eval_rows, n=60000):
    return {"data": data, "sizes": sizes, "batches": batches, "budget_s": budget_s,
            "max_epochs": max_epochs, "eval_rows": eval_rows, "n": n}


def _batch(p, backend, torch, threads):
    from gpunn.bench import batch

    sweeps = []
    for s in p:
        X, y = batch.digits() if s["data"] == "digits" else batch.synthetic_mnist(n=s["n"])
        harness.say(f"  {s['data']} {s['sizes']}: {X.shape[0]} rows")
        found = batch.sweep(X, y, s["sizes"], s["batches"], s["budget_s"], s["max_epochs"],
                            eval_rows=s["eval_rows"])
        sweeps.append({**s, "rows": int(X.shape[0]), "optimizer": "sgd", "lr": 0.1, **found})
    return {"sweeps": sweeps}


def _imports(p, backend, torch, threads):
    from gpunn.bench import processes

    rounds, sample_s, sizes, batches, repeats = p
    return processes.import_orders(sizes, batches, repeats, rounds, sample_s, threads)


def _gpu(p, backend, torch, threads):
    from gpunn.bench import processes

    rounds, sample_s, rows, elsewhere, timeout = p
    if backend.name != "cuda" and elsewhere is None:
        return {"skipped": f"needs CUDA: the backend here is {backend.name}"}
    device = "cuda" if backend.name == "cuda" else elsewhere
    return processes.peers(rows, device, rounds, sample_s, threads, timeout=timeout)


def _mnist(p, backend, torch, threads):
    from gpunn.bench import realdata

    return realdata.run(backend.name, threads, **p)


CPU, CUDA = ("cpu",), ("cuda",)
# Profiles: (rounds, seconds per sample, sizes...); "gpu" adds where it runs without CUDA and
# the seconds each peer's process may take (JAX compiles, and autotunes, each row's shape).
# --quick fits the GPU check: gpu and updates in 100 s on an H200, process starts included;
# smoke runs the GPU peers' scripts on the CPU where there is no CUDA.
SECTIONS = {s.name: s for s in (
    Section("updates", "fused optimizer updates vs PyTorch and NumPy, and the stream bandwidth",
            CPU + CUDA, {"full": (9, 0.03, [1e5, 1e6, 1e7]), "quick": (5, 0.02, [1e5, 1e6, 1e7]),
                         "smoke": (3, 0.002, [1e4])}, _updates, report.updates_tables),
    Section("step", "an MLP training step vs its GEMM floor, PyTorch eager and NumPy",
            CPU + CUDA, {"full": (7, 0.1, BIG, [32, 64, 128, 256, 512, 1024, 2048]),
                         "quick": (5, 0.05, BIG, [32, 128, 512, 2048]),
                         "smoke": (3, 0.002, [64, 32, 32, 10], [32])},
            _step, report.step_tables),
    Section("gpu", "on CUDA: the step vs PyTorch eager, PyTorch CUDA graph and JAX jit, each in "
            "its own process", CUDA,
            {"full": (7, 0.05, GPU_ROWS, None, 600), "quick": (5, 0.02, GPU_QUICK_ROWS, None, 17),
             "smoke": (3, 0.002, [[[64, 32, 32, 10], 32]], "cpu", 120)},
            _gpu, report.gpu_tables),
    Section("vectorization", "per-sample loops vs vectorized", CPU + CUDA,
            {"full": (5, 0.02, 2000, 256, SMALL), "quick": (5, 0.02, 1000, 128, SMALL),
             "smoke": (3, 0.002, 64, 16, [64, 16, 10])}, _vectorization,
            report.vectorization_tables),
    Section("batch", "batch vs mini-batch vs stochastic gradient descent", CPU + CUDA, {
        "full": [_sweep("digits", DIGITS, ALL_BATCHES, 2.0, 60, 1797),
                 _sweep("synthetic", SMALL, ALL_BATCHES, 6.0, 10, 5000),
                 _sweep("synthetic", BIG, ALL_BATCHES, 10.0, 5, 3000)],
        "quick": [_sweep("digits", DIGITS, [1, 8, 64, 512, None], 1.0, 30, 1797),
                  _sweep("synthetic", SMALL, [1, 32, 256, 2048, None], 2.0, 3, 2000)],
        "smoke": [_sweep("digits", [64, 16, 10], [1, 64, None], 0.1, 2, 500),
                  _sweep("synthetic", [784, 16, 10], [32, None], 0.1, 1, 500, 2000)]},
            _batch, report.batch_tables),
    Section("imports", "the CPU step in fresh processes per import order", CPU,
            {"full": (5, 0.05, BIG, [32, 128, 512, 2048], 3),
             "quick": (3, 0.05, BIG, [128, 2048], 1),
             "smoke": (3, 0.002, [64, 32, 32, 10], [32], 1)}, _imports, report.imports_tables),
    Section("mnist", "real MNIST end to end: gpunn vs a PyTorch loop, scikit-learn and Keras 3, "
            "fp32 and bf16 (fetches 11.5 MB once)", (), {
                "full": {"batches": [32, 64, 128, 256, 512, 1024, 2048], "epochs": 5,
                         "rounds": 3},
                "quick": {"batches": [128, 2048], "epochs": 2, "rounds": 1},
                "smoke": {"batches": [100], "epochs": 1, "rounds": 1, "rows": 1000,
                          "contenders": ("gpunn", "pytorch")}},
            _mnist, report.mnist_tables),
)}


def defaults(backend_name):
    """The sections a run on ``backend_name`` includes when ``--sections`` is not given."""
    return [name for name, s in SECTIONS.items() if backend_name in s.backends]


def tables(results):
    """``[(title, headers, rows)]`` of every section in ``results``, in their order."""
    return [t for name, s in results["sections"].items() for t in SECTIONS[name].tables(s)]
