"""Threads: the backend choice is per thread, and two models trained at once on the CPU give
bit-for-bit what each gives alone (the kernels are elementwise, each BLAS call independent),
on one thread or all of Numba's, on the TBB and the OpenMP threading layer."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import _make
from forced_threads import ForcedThreads

import gpunn
from gpunn.backends import get_backend
from gpunn.backends.cpu import load_tbb


def test_use_backend_as_a_context_manager_is_per_thread():
    names, seen, barrier = ("cpu", "cuda-emulated"), {}, threading.Barrier(2, timeout=60)

    def worker(name):
        with gpunn.use_backend(_make(name)):
            barrier.wait()  # both threads are inside their own `with` now
            seen[name] = (get_backend(), gpunn.MLP([2, 1]).backend)
            barrier.wait()
        seen[name + " after"] = get_backend()

    outer = get_backend()
    threads = [threading.Thread(target=worker, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in names:
        assert seen[name][0] is _make(name) and seen[name][1] is _make(name)
        assert seen[name + " after"] is outer
    assert get_backend() is outer


def train(seed, results, barrier=None, backend=None):
    """Train a seeded model on seeded data on the CPU; its parameters go to ``results``."""
    with gpunn.use_backend(backend or _make("cpu")):
        rng = np.random.default_rng(seed)
        X, y = rng.normal(size=(120, 8)), rng.integers(0, 3, size=120)
        model = gpunn.MLP([8, 40, 24, 3], activation=("sigmoid", "tanh")[seed % 2],
                          output="softmax", seed=seed)
        if barrier is not None:
            barrier.wait()
        gpunn.fit(model, X, y, epochs=8, batch_size=16, seed=seed)
        results[seed] = np.array(model.flat_params)


def train_alone_and_together(backend=None):
    """Two seeded models, each trained alone, then both at once in two Python threads."""
    alone, together, barrier = {}, {}, threading.Barrier(2, timeout=60)
    for seed in (1, 2):
        train(seed, alone, backend=backend)
    threads = [threading.Thread(target=train, args=(seed, together, barrier, backend))
               for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return alone, together


@pytest.mark.parametrize("threads", ["chosen", "all"])
def test_two_models_trained_at_once_match_each_trained_alone(threads):
    backend = ForcedThreads(True) if threads == "all" else None
    alone, together = train_alone_and_together(backend)
    assert sorted(together) == [1, 2]
    for seed in (1, 2):
        np.testing.assert_array_equal(together[seed], alone[seed])
    assert not np.array_equal(alone[1], alone[2])


def test_training_on_all_threads_matches_one_thread():
    on_all, on_one = {}, {}
    train(1, on_all, backend=ForcedThreads(True))
    train(1, on_one, backend=ForcedThreads(False))
    np.testing.assert_array_equal(on_all[1], on_one[1])


LAYER_RUN = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from forced_threads import ForcedThreads
from test_threads import train_alone_and_together
from gpunn.backends.cpu import numba_runtime

digests = {}
alone, together = train_alone_and_together(ForcedThreads(True))
for key, runs in (("alone", alone), ("together", together)):
    digests[key] = [hashlib.sha256(runs[s].tobytes()).hexdigest() for s in (1, 2)]
print(json.dumps({"layer": numba_runtime()["layer"], "digests": digests}))
"""


def _layer_run(layer):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER",)}
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    done = subprocess.run([sys.executable, "-c", LAYER_RUN, str(Path(__file__).parent)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_results_identical_on_tbb_and_openmp_layers():
    """gpunn picks TBB where the wheel is installed and falls back to OpenMP: the same bits."""
    if load_tbb() is None:
        pytest.skip("the tbb wheel is not installed: only the OpenMP layer can run here")
    chosen, omp = _layer_run(None), _layer_run("omp")
    assert (chosen["layer"], omp["layer"]) == ("tbb", "omp")
    digests = {tuple(d) for run in (chosen, omp) for d in run["digests"].values()}
    assert len(digests) == 1, (chosen, omp)
