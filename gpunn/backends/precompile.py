"""Compile the CPU backend's Numba twins ahead of the first run: ``gpunn compile``.

The first ``fit`` after an install compiles the kernels it uses (about 10 s for a plain MLP
on 2 cores; benchmarks/RESULTS.md, "The first run's compile"); a process that finds them in
Numba's cache loads them in about a second. pip runs no code when it installs a wheel, so this
is the step to run after it (a Docker ``RUN`` line, a setup script): every twin, in each dtype
asked for, with the argument types :class:`gpunn.backends.cpu.CpuBackend` passes it, compiled
into the cache without running it (``Dispatcher.compile``). ``jobs`` processes share the
twins, each claiming one before compiling it.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from functools import partial

DTYPES = ("float32", "float64")


def signatures(spec, dtype):
    """The argument types of each launch of the twin of ``spec`` that the CPU backend makes
    in ``dtype``: arrays flattened C-contiguous, ``real`` scalars in ``dtype``. A float32 twin
    with bfloat16 parameters runs with uint16 arrays (bits; empty where a kernel's bfloat16
    output is optional) and with the float32 storage of bf16 operands (``bf16_zeros``); a
    twin named for bfloat16 runs in float32 only."""
    from numba import types

    from gpunn.kernels import U16_KINDS

    real = {"float32": types.float32, "float64": types.float64}[dtype]
    halves = any(p.kind in U16_KINDS for p in spec.params)
    if dtype != "float32" and halves and "bf16" in spec.name:
        return []
    scalars = {"real": real, "double": types.float64, "int": types.int32, "int64": types.int64}
    arrays = {"in": real, "out": real, "in_int64": types.int64, "out_int64": types.int64}
    found = []
    for u16 in (types.uint16, types.float32) if halves and dtype == "float32" else (
            types.uint16,):
        found.append(tuple(scalars[p.kind] if not p.is_array
                           else types.Array(arrays.get(p.kind, u16), 1, "C")
                           for p in spec.params))
    return found


def compile_claimed(dtypes, claims=None, say=print, names=None):
    """Compile (or load) every twin (``names``: those only) in ``dtypes``; with ``claims`` (a
    folder shared by the processes of one run) only the twins this process claims there
    first. Returns the count of signatures compiled and of those already in the cache."""
    from gpunn.backends import host_rows
    from gpunn.backends.compile_watch import compile_seconds, watch_compiles
    from gpunn.backends.cpu import start_numba_threads, twin_of
    from gpunn.kernels import kernel_specs

    watch_compiles()
    start_numba_threads()
    compiled = cached = 0
    specs = kernel_specs()
    # every twin, then the staging thread's row scatter (gpunn.backends.host_rows)
    for name in [*specs, "scatter_rows"]:
        if names is not None and name not in names:
            continue
        if claims is not None:
            try:
                os.mkdir(os.path.join(claims, name))
            except FileExistsError:
                continue
        if name in specs:
            twin, sigs = twin_of(specs[name]), partial(signatures, specs[name])
        else:
            twin, sigs = host_rows._scatter_rows, host_rows.signatures
        for dtype in dtypes:
            for sig in sigs(dtype):
                before, start = compile_seconds(), time.perf_counter()
                twin.compile(sig)
                fresh = compile_seconds() > before
                compiled, cached = compiled + fresh, cached + (not fresh)
                say(f"{name} {dtype}: {'compiled' if fresh else 'in the cache'} "
                    f"({time.perf_counter() - start:.1f} s)")
    return compiled, cached


def compile_all(dtypes=("float32",), jobs=None, say=print):
    """Compile every twin in ``dtypes`` into Numba's cache in ``jobs`` processes (None: one
    per core, at most 8). Returns ``(compiled, cached)`` signature counts.

    Raises:
        RuntimeError: Numba has no writable cache here (nothing would be kept), or a worker
            process failed.
    """
    from gpunn.kernels.config import CACHE, CACHE_PATH

    if not CACHE:
        raise RuntimeError("Numba has no writable cache folder here (the install and the "
                           "user's cache folder are read-only): set NUMBA_CACHE_DIR to a "
                           "writable folder; until then every process compiles its kernels")
    jobs = jobs or min(8, os.cpu_count() or 1)
    say(f"compiling the CPU kernels ({', '.join(dtypes)}) into {CACHE_PATH} with {jobs} "
        f"process{'es' if jobs > 1 else ''}")
    if jobs == 1:
        return compile_claimed(dtypes, say=say)
    with tempfile.TemporaryDirectory(prefix="gpunn-compile-") as claims:
        workers = [subprocess.Popen([sys.executable, "-m", "gpunn.backends.precompile", claims,
                                     *dtypes], stdout=subprocess.PIPE, text=True)
                   for _ in range(jobs)]
        totals = [0, 0]
        for worker in workers:
            for line in worker.stdout:
                if line.startswith("counts "):
                    totals = [t + int(c) for t, c in zip(totals, line.split()[1:])]
                else:
                    say(line.rstrip("\n"))
        failed = [w.args for w in workers if w.wait() != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {jobs} compile processes failed (their errors "
                           "are above); what the others compiled is in the cache")
    return tuple(totals)


def check_jobs(text):
    """``--jobs``: an integer from 1 to 64."""
    try:
        jobs = int(text)
    except ValueError:
        jobs = None
    if jobs is None or not 1 <= jobs <= 64:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to 64, got {text!r}")
    return jobs


def add_parser(sub):
    p = sub.add_parser("compile", allow_abbrev=False,
                       help="compile the CPU kernels into Numba's cache ahead of the first run",
                       description="Compile every Numba kernel of the CPU backend into "
                       "Numba's cache, so that the first fit loads it instead of compiling "
                       "it (seconds). Run it once after installing (e.g. in a Dockerfile); "
                       "the cache is the one `gpunn info` names.")
    p.add_argument("--dtype", nargs="+", choices=DTYPES, default=["float32"],
                   help="the dtypes to compile for (default: float32, what MLP uses)")
    p.add_argument("--jobs", type=check_jobs, default=None,
                   help="processes sharing the kernels (default: one per core, at most 8)")
    p.set_defaults(func=_command)


def _command(args):
    start = time.perf_counter()
    compiled, cached = compile_all(tuple(dict.fromkeys(args.dtype)), args.jobs)
    print(f"gpunn compile: {compiled} compiled, {cached} already in the cache, "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":  # a worker of compile_all: CLAIMS DTYPE...
    counts = compile_claimed(tuple(sys.argv[2:]), sys.argv[1], say=lambda s: print(s, flush=True))
    print("counts", *counts, flush=True)
