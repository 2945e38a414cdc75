"""Same bits in every process (DESIGN, Numerics): the Numba twins are cached on disk, a second
process loads every one and compiles nothing and computes the same bits as the process that
compiled them (FMA contraction once made them differ: issue 19 item 10), and training gives
identical parameters on 1, 2, 3, 8 and 64 Numba threads (more threads than cores on purpose:
the fixed blocks of kernels/config.py, not the thread count, decide how a loop is split)."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from gpunn.kernels import kernel_specs
from kernel_cases import CASES, writes_bf16

# Every kernel case (at a size of several fixed blocks plus a SIMD remainder), then short
# trainings with each optimizer: the digest of every output array.
RUN_EVERY_KERNEL_AND_TRAIN = """
import hashlib, json, sys
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
digests = {}
for case in CASES:
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


def run_every_kernel(cache_dir, debug_cache=False, threads=None):
    """Run the script in a fresh process with ``cache_dir`` as Numba's cache; its stdout.
    ``threads``: NUMBA_NUM_THREADS, and every kernel on all of them."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir),
               NUMBA_DEBUG_CACHE="1" if debug_cache else "0")
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, "-c", RUN_EVERY_KERNEL_AND_TRAIN,
                           str(Path(__file__).parent), "default" if threads is None else "all"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def digests(log):
    return json.loads(log.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cold_and_warm(tmp_path_factory):
    """The logs of a process that compiles every twin (an empty cache) and of one after it."""
    cache = tmp_path_factory.mktemp("numba_cache")
    cold = run_every_kernel(cache)
    return cold, run_every_kernel(cache, debug_cache=True), cache


def test_second_process_loads_every_twin_from_the_cache(cold_and_warm):
    log = cold_and_warm[1]
    saved = re.findall(r"\[cache\] data saved to '([^']+)'", log)
    loaded = Counter(re.findall(r"\[cache\] data loaded from '[^']*/(\w+)\.(\w+)-\d+\.py",
                                log))
    assert saved == [], f"recompiled in a warm process: {saved}"
    # One machine-code entry per twin and dtype it runs in (bfloat16 twins: float32 only), and
    # one more for a twin that writes bfloat16 bits into the CPU's float32 storage of them
    # (CpuBackend.bf16_zeros), all from the cache.
    dtypes = {name: set() for name in kernel_specs()}
    for case in CASES:
        dtypes[case.kernel].update(case.dtypes)
    assert loaded == Counter({(spec.module, name): len(dtypes[name]) + writes_bf16(name)
                              for name, spec in kernel_specs().items()})
    assert {case.kernel for case in CASES} == set(kernel_specs())


def test_compiled_and_cached_twins_give_the_same_bits(cold_and_warm):
    cold, warm = map(digests, cold_and_warm[:2])
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
