"""Interleaved timing, and the machine record every benchmark figure carries.

pytest-benchmark does the statistics (``Stats``: min, median, max, IQR, ...) and the machine
and commit records; it cannot interleave contenders (each benchmark runs to completion before
the next), and neither can pyperf (each benchmark in its own worker processes), so the
round-robin loop is kept here: round ``r`` times every contender once, the order rotating each
round, so a slow spell of a shared machine hits all of them alike. A sample is the mean of
``number`` back-to-back calls, ``number`` calibrated so a sample lasts ``min_sample_s``.
"""

import os
import subprocess
import sys
import time

ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
            "OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS",
            "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "GPUNN_BACKEND")
STATS = ("min", "median", "max", "mean", "stddev", "iqr", "rounds")


def _calibrate(func, min_sample_s, sync):
    """Calls per sample so that one sample lasts at least ``min_sample_s`` (after a warm-up).

    Synchronized like a sample: a device launch returns before it ran, so unsynchronized calls
    would time the launch queue, and the count would overshoot by the ratio of a step's time
    to its launch's (a 26 ms GPU step launched in 10 us: thousands of calls per sample).
    The count grows at most tenfold per try for the same reason.
    """
    sync()
    func()
    sync()
    number = 1
    while True:
        sync()
        start = time.perf_counter()
        for _ in range(number):
            func()
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_sample_s or number >= 1 << 20:
            return number
        number = min(10 * number, max(number * 2, int(number * min_sample_s
                                                      / max(elapsed, 1e-9) * 1.2)))


def say(text):
    """One progress line on stderr, at once (a benchmark cut by a timeout shows where it was)."""
    print(f"[gpunn bench] {text}", file=sys.stderr, flush=True)


def interleaved(contenders, rounds=7, min_sample_s=0.02, sync=None, progress=None):
    """Time zero-argument callables round-robin in this process.

    Args:
        contenders: ``{name: callable}``; each is called once to warm up.
        rounds: samples per contender.
        min_sample_s: a sample repeats a call until it lasts at least this long.
        sync: called before the clock starts and before it stops (a device synchronize).
        progress: called with a line of text as each contender warms up and as the rounds
            start (e.g. :func:`say`).

    Returns:
        ``{name: {min, median, max, mean, stddev, iqr, rounds (pytest-benchmark's Stats),
        calls_per_round}}``, in seconds per call.
    """
    from pytest_benchmark.stats import Stats

    sync = sync or (lambda: None)
    progress = progress or (lambda text: None)
    names = list(contenders)
    number = {}
    for n in names:
        progress(f"  {n}: warm-up, calibration")
        number[n] = _calibrate(contenders[n], min_sample_s, sync)
    progress(f"  {rounds} rounds of {', '.join(f'{n} x{number[n]}' for n in names)}")
    stats = {n: Stats() for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            func, calls = contenders[n], number[n]
            sync()
            start = time.perf_counter()
            for _ in range(calls):
                func()
            sync()
            stats[n].update((time.perf_counter() - start) / calls)
    return {n: {**{k: getattr(s, k) for k in STATS}, "calls_per_round": number[n]}
            for n, s in stats.items()}


def build_peers(builders):
    """Build each of a peer's contenders and call it once.

    A peer library's version may lack a variant (PyTorch 2.11 has no fused RMSprop): such a
    contender is reported, never allowed to stop the benchmark.

    Args:
        builders: ``{name: zero-argument function returning the contender's callable}``.

    Returns:
        ``(contenders, missing)``: ``{name: callable}`` of those that ran, and
        ``{name: "not available: <exception>"}`` of those that did not.
    """
    found, missing = {}, {}
    for name, build in builders.items():
        try:
            func = build()
            func()
        except (TypeError, ValueError, RuntimeError, NotImplementedError, AttributeError) as why:
            missing[name] = f"not available: {type(why).__name__}: {why}"
        else:
            found[name] = func
    return found, missing


def usable_cpus():
    """CPUs this process may run on (its affinity), else the logical CPU count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_threads(n):
    """Give Numba, BLAS (and PyTorch, if imported) ``n`` threads each."""
    from threadpoolctl import threadpool_limits

    from gpunn.backends.cpu import set_numba_threads

    threadpool_limits(limits=n, user_api="blas")
    set_numba_threads(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def import_optional(name):
    """The module ``name``, or None when it is not installed (its contenders are left out)."""
    try:
        return __import__(name)
    except ImportError:  # an optional peer that is absent is just absent
        return None


def versions():
    """Versions of Python, gpunn and the libraries it is measured with (None: not loaded)."""
    import gpunn

    found = {"python": sys.version.split()[0], "gpunn": gpunn.__version__}
    for name in ("numpy", "numba", "torch", "jax", "cupy", "threadpoolctl"):
        found[name] = getattr(sys.modules.get(name), "__version__", None)
    return found


def machine_info(threads):
    """Machine (pytest-benchmark's record, CPU flags left out), BLAS and OpenMP pools
    (threadpoolctl: kernel architecture, threads), thread counts, versions, git commit and
    the BLAS- and OpenMP-related environment variables."""
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
    from pytest_benchmark.utils import get_commit_info
    from threadpoolctl import threadpool_info

    from gpunn.backends.cpu import numba_runtime

    machine = pytest_benchmark_generate_machine_info()
    machine["cpu"] = {k: v for k, v in machine["cpu"].items() if k != "flags"}
    pools = threadpool_info()
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer",
            "filepath")
    numba = numba_runtime()
    commit = _commit(get_commit_info)
    return {**machine, "usable_cpus": usable_cpus(), "logical_cpus": os.cpu_count(),
            "blas": [{k: p.get(k) for k in keep} for p in pools if p["user_api"] == "blas"],
            "openmp": [{k: p.get(k) for k in keep} for p in pools if p["user_api"] == "openmp"],
            "threads": {"requested": threads, "numba": numba["threads"],
                        "numba_layer": numba["layer"], "torch": _torch_threads()},
            "versions": versions(), "commit": commit,
            "env": {k: os.environ.get(k) for k in ENV_VARS},
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _commit(get_commit_info):
    """pytest-benchmark's record of the git checkout gpunn runs from (asked of git, so an
    installed gpunn, in no checkout, records none)."""
    import gpunn

    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, cwd=os.path.dirname(gpunn.__file__), check=False)
    except OSError as why:  # no git here
        return {"id": None, "dirty": None, "error": str(why)}
    if top.returncode:
        return {"id": None, "dirty": None, "error": "gpunn is not in a git checkout"}
    cwd = os.getcwd()
    try:
        os.chdir(top.stdout.strip())  # get_commit_info reads the working directory's checkout
        return get_commit_info()
    finally:
        os.chdir(cwd)


def _torch_threads():
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None
