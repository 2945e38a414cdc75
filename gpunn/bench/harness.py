"""Interleaved timing and the machine record that every benchmark figure carries.

Contenders of one comparison run in the same process, round-robin: round ``r`` times each
contender once (the order rotates every round), so a slow spell of the machine hits all of
them alike. Each sample is the mean of ``number`` back-to-back calls, ``number`` calibrated so
that a sample lasts at least ``min_sample_s``. Figures are min / median / max over the rounds;
a comparison is the ratio of medians.
"""

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                 "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS",
                 "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one contender: min, median and max over the rounds."""

    min: float
    median: float
    max: float
    rounds: int
    number: int

    def as_dict(self):
        return {"min_s": self.min, "median_s": self.median, "max_s": self.max,
                "rounds": self.rounds, "calls_per_round": self.number}


def _calibrate(func, min_sample_s):
    """Calls per sample so that one sample lasts at least ``min_sample_s`` (after a warm-up)."""
    func()
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            func()
        elapsed = time.perf_counter() - start
        if elapsed >= min_sample_s or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_sample_s / max(elapsed, 1e-9) * 1.2))


def interleaved(contenders, rounds=7, min_sample_s=0.02, sync=None):
    """Time callables round-robin in this process.

    Args:
        contenders: ``{name: zero-argument callable}``; each is called once to warm up.
        rounds: samples per contender.
        min_sample_s: a sample repeats a call until it lasts at least this long.
        sync: called after each sample before the clock stops (a device synchronize).

    Returns:
        ``{name: Timing}`` in seconds per call.
    """
    sync = sync or (lambda: None)
    names = list(contenders)
    number = {n: _calibrate(contenders[n], min_sample_s) for n in names}
    samples = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            func, calls = contenders[n], number[n]
            sync()
            start = time.perf_counter()
            for _ in range(calls):
                func()
            sync()
            samples[n].append((time.perf_counter() - start) / calls)
    return {n: Timing(float(np.min(s)), float(np.median(s)), float(np.max(s)), rounds,
                      number[n]) for n, s in samples.items()}


def ratio(slow, fast):
    """``slow.median / fast.median``: how many times faster ``fast`` is."""
    return slow.median / fast.median


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit():
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], text=True,
                             capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"], text=True, capture_output=True,
                               timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": out, "dirty": bool(dirty)}


def _versions():
    import gpunn
    from gpunn.backends.cpu import numba_runtime

    versions = {"python": sys.version.split()[0], "gpunn": gpunn.__version__,
                "numpy": np.__version__, "numba": numba_runtime()["version"]}
    for name in ("torch", "sklearn", "cupy", "threadpoolctl", "matplotlib"):
        module = sys.modules.get(name)
        if module is None and name in ("torch", "sklearn", "threadpoolctl"):
            try:
                module = __import__(name)
            except ImportError:  # an optional peer that is absent is just absent
                module = None
        versions[name] = getattr(module, "__version__", None)
    return versions


def usable_cpus():
    """CPUs this process may run on (its affinity), else the logical CPU count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_info(threads=None):
    """CPU model and cores, BLAS (threadpoolctl: kernel architecture, threads), thread counts
    (``threads``: the count the benchmark asked for), library versions, the git commit and
    the BLAS- and OpenMP-related environment variables."""
    from threadpoolctl import threadpool_info

    from gpunn.backends.cpu import numba_runtime

    pools = threadpool_info()
    blas = [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                   "threading_layer", "filepath")}
            for p in pools if p.get("user_api") == "blas"]
    openmp = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
              for p in pools if p.get("user_api") == "openmp"]
    numba = numba_runtime()
    return {"cpu": _cpu_model(), "machine": platform.machine(), "platform": platform.platform(),
            "logical_cpus": os.cpu_count(), "usable_cpus": usable_cpus(),
            "blas": blas, "openmp": openmp,
            "threads": {"requested": threads, "numba": numba["threads"],
                        "numba_layer": numba["layer"],
                        "blas": [b["num_threads"] for b in blas], "torch": _torch_threads()},
            "versions": _versions(), "git": _git_commit(),
            "env": {k: os.environ.get(k) for k in BLAS_ENV_VARS},
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _torch_threads():
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def set_threads(n):
    """Give Numba, BLAS (and PyTorch, if imported) the same ``n`` threads; returns a restorer."""
    from threadpoolctl import threadpool_limits

    from gpunn.backends.cpu import set_numba_threads

    limiter = threadpool_limits(limits=n, user_api="blas")
    old_numba = set_numba_threads(n)
    torch = sys.modules.get("torch")
    old_torch = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)

    def restore():
        set_numba_threads(old_numba)
        limiter.restore_original_limits()
        if old_torch is not None:
            torch.set_num_threads(old_torch)

    return restore


def import_torch():
    """PyTorch, or None when it is not installed (its comparisons are then skipped)."""
    try:
        import torch
    except ImportError:  # not installed: its comparisons are skipped
        return None
    return torch
