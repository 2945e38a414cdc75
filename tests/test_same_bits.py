"""Same bits in every process (DESIGN, Numerics): the Numba twins are cached on disk, a second
process loads every one and compiles nothing and computes the same bits as the processes that
compiled them (FMA contraction once made them differ: issue 19 item 10), and training gives
identical parameters on 1, 2, 3, 8 and 64 Numba threads (more threads than cores on purpose:
the fixed blocks of kernels/config.py, not the thread count, decide how a loop is split).

Compiling every twin takes minutes, so two cold processes share the kernels (each claims a
kernel before running its cases), and when the suite's own Numba cache is still empty (a fresh
clone, as in CI) they compile into it: the suite then loads what they compiled instead of
compiling it a second time. conftest.py runs this module first so that the cache is empty
when it starts; elsewhere the cold processes use an empty folder of their own.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from gpunn.kernels import kernel_specs
from gpunn.kernels.config import CACHE, CACHE_PATH
from kernel_cases import CASES, writes_bf16

# Every kernel case (at a size of several fixed blocks plus a SIMD remainder), then short
# trainings with each optimizer: the digest of every output array. argv: the tests folder;
# "all" (every kernel on all of Numba's threads) or "default"; a folder in which to claim each
# kernel (os.mkdir succeeds in one process only) before running its cases, or "" for every
# kernel; "fits" to train after the kernels (after a FITS line) or "" not to.
RUN_EVERY_KERNEL_AND_TRAIN = """
import hashlib, json, os, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from kernel_cases import CASES, Inputs, in_bf16_storage, writes_bf16
import gpunn
from forced_threads import ForcedThreads
from gpunn.backends.cpu import CpuBackend

def digest(arrays):
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()

# "all": every kernel on all of Numba's threads, whatever its size.
backend = ForcedThreads(True) if sys.argv[2] == "all" else CpuBackend()
claims, digests = sys.argv[3], {}


def mine(kernel):
    if not claims:
        return True
    try:
        os.mkdir(os.path.join(claims, kernel))
    except FileExistsError:
        return False
    return True


kernels = list(dict.fromkeys(case.kernel for case in CASES))
for case in (case for kernel in kernels if mine(kernel) for case in CASES
             if case.kernel == kernel):
    for dtype in case.dtypes:
        args = case.args(Inputs(np.random.default_rng(0), dtype), 37, 301)
        backend.kernel(case.kernel, *args)
        digests[f"{case.id}-{dtype.name}"] = digest([a for a in args if hasattr(a, "dtype")])
        if writes_bf16(case.kernel) and dtype == np.float32:  # also into float32 storage
            args = in_bf16_storage(backend, case.kernel,
                                   case.args(Inputs(np.random.default_rng(0), dtype), 37, 301))
            backend.kernel(case.kernel, *args)
            digests[f"{case.id}-{dtype.name}-storage"] = digest(
                [a for a in args if hasattr(a, "dtype")])
if sys.argv[4] != "fits":
    print(json.dumps(digests))
    sys.exit()
print("FITS", flush=True)
rng = np.random.default_rng(0)
X, y = rng.normal(size=(300, 40)).astype(np.float32), rng.integers(0, 10, size=300)
for optimizer, precision in (("adam", "fp32"), ("rmsprop", "fp32"), ("momentum", "fp32"),
                             ("sgd", "fp32"), ("adam", "bf16")):
    with gpunn.use_backend(backend):
        model = gpunn.MLP([40, 300, 10], activation="tanh", output="softmax", seed=1,
                          dtype="float32", precision=precision)
        gpunn.fit(model, X, y, optimizer=optimizer, lr=0.01, epochs=3, batch_size=64)
    digests[f"fit-{optimizer}-{precision}"] = digest([model.flat_params])
print(json.dumps(digests))
"""


def command(mode="default", claims="", fits="fits"):
    return [sys.executable, "-c", RUN_EVERY_KERNEL_AND_TRAIN, str(Path(__file__).parent), mode,
            str(claims), fits]


def environment(cache_dir, debug_cache=False, threads=None):
    """The script's environment: ``cache_dir`` as Numba's cache (None: the suite's own);
    ``threads``: NUMBA_NUM_THREADS."""
    env = dict(os.environ, NUMBA_DEBUG_CACHE="1" if debug_cache else "0")
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    return env


def run_every_kernel(cache_dir, debug_cache=False, threads=None):
    """Run the script in a fresh process; its stdout. ``threads``: every kernel on all of
    that many Numba threads."""
    done = subprocess.run(command("default" if threads is None else "all"), capture_output=True,
                          text=True, env=environment(cache_dir, debug_cache, threads),
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def compile_every_kernel(cache_dir, claims, processes=2):
    """The stdouts of ``processes`` fresh processes sharing the kernels between them (the first
    also trains), with ``cache_dir`` empty when they start."""
    with tempfile.TemporaryFile("w+") as err0, tempfile.TemporaryFile("w+") as err1:
        errs = [err0, err1][:processes]
        running = [subprocess.Popen(command(claims=claims, fits="fits" if i == 0 else ""),
                                    stdout=subprocess.PIPE, stderr=err, text=True,
                                    env=environment(cache_dir, debug_cache=True))
                   for i, err in enumerate(errs)]
        outs = [proc.communicate(timeout=900)[0] for proc in running]
        for proc, err in zip(running, errs):
            err.seek(0)
            assert proc.returncode == 0, err.read()[-3000:]
    return outs


def digests(log):
    return json.loads(log.strip().splitlines()[-1])


def cache_entries(log, event):
    """Counter of (module, twin) for each machine-code entry ``event`` ("saved to" or
    "loaded from") in a NUMBA_DEBUG_CACHE log."""
    return Counter(re.findall(rf"\[cache\] data {event} '[^']*/(\w+)\.(\w+)-\d+\.py", log))


def every_entry():
    """One machine-code entry per twin and dtype it runs in (bfloat16 twins: float32 only),
    and one more for a twin that writes bfloat16 bits into the CPU's float32 storage of them
    (CpuBackend.bf16_zeros)."""
    dtypes = {name: set() for name in kernel_specs()}
    for case in CASES:
        dtypes[case.kernel].update(case.dtypes)
    return Counter({(spec.module, name): len(dtypes[name]) + writes_bf16(name)
                    for name, spec in kernel_specs().items()})


def suite_cache_is_empty():
    """Whether the suite's own Numba cache holds no twin yet (nothing compiled so far)."""
    path = CACHE_PATH if CACHE else None
    return path is not None and not any(Path(path).glob("*.nbi"))


@pytest.fixture(scope="module")
def cold_and_warm(tmp_path_factory):
    """The logs of the processes that compile every twin (an empty cache), of one after them,
    and the cache folder (None: the suite's own)."""
    cache = None if suite_cache_is_empty() else tmp_path_factory.mktemp("numba_cache")
    cold = compile_every_kernel(cache, tmp_path_factory.mktemp("claims"))
    return cold, run_every_kernel(cache, debug_cache=True), cache


def test_cold_processes_compile_every_twin_and_load_none(cold_and_warm):
    """Each twin's machine code was compiled by the cold process that ran its cases, none loaded
    (helpers that twins call, such as norm.rsqrt, may come from the other process's cache)."""
    kernel_logs = [log.partition("FITS")[0] for log in cold_and_warm[0]]

    def twins(entries):
        return Counter({key: n for key, n in entries.items() if key[1] in kernel_specs()})

    assert twins(sum((cache_entries(log, "saved to") for log in kernel_logs), Counter())) == \
        every_entry()
    assert [twins(cache_entries(log, "loaded from")) for log in kernel_logs] == [Counter()] * 2
    assert {case.kernel for case in CASES} == set(kernel_specs())


def test_second_process_loads_every_twin_from_the_cache(cold_and_warm):
    log = cold_and_warm[1]
    assert cache_entries(log, "saved to") == Counter(), "recompiled in a warm process"
    assert cache_entries(log, "loaded from") == every_entry()


def test_compiled_and_cached_twins_give_the_same_bits(cold_and_warm):
    cold = {key: value for log in cold_and_warm[0] for key, value in digests(log).items()}
    warm = digests(cold_and_warm[1])
    assert cold.keys() == warm.keys()
    differ = sorted(key for key in cold if cold[key] != warm[key])
    assert differ == [], f"cold and cached processes disagree on {differ}"


def test_bf16_twins_write_the_same_bits_into_float32_storage(cold_and_warm):
    """A twin writing into the CPU's float32 storage of bfloat16 operands leaves the same
    bits (the storage's upper halves) as into uint16 arrays, in a cached process too."""
    warm = digests(cold_and_warm[1])
    stored = [key for key in warm if key.endswith("-storage")]
    assert {key.split("-")[0] for key in stored} == {
        name for name in kernel_specs() if writes_bf16(name)}
    differ = sorted(key for key in stored if warm[key] != warm[key.removesuffix("-storage")])
    assert differ == [], f"float32 storage and uint16 bits differ on {differ}"


def test_every_kernel_and_training_give_the_same_bits_on_any_thread_count(cold_and_warm):
    """Each thread count in a fresh process (NUMBA_NUM_THREADS is read once, at start)."""
    expected = digests(cold_and_warm[1])
    for threads in (1, 2, 3, 8, 64):
        got = digests(run_every_kernel(cold_and_warm[2], threads=threads))
        differ = sorted(key for key in expected if got[key] != expected[key])
        assert differ == [], f"{threads} threads disagree with the default on {differ}"
