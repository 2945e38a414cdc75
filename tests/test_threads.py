"""Threads: the backend choice is per thread, and two models trained at once on the CPU give
bit-for-bit what each gives alone (the kernels are elementwise, each BLAS call independent)."""

import threading

import numpy as np
from conftest import _make

import gpunn
from gpunn.backends import get_backend


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


def train(seed, results, barrier=None):
    """Train a seeded model on seeded data on the CPU; its parameters go to ``results``."""
    with gpunn.use_backend(_make("cpu")):
        rng = np.random.default_rng(seed)
        X, y = rng.normal(size=(120, 8)), rng.integers(0, 3, size=120)
        model = gpunn.MLP([8, 32, 3], activation="relu", output="softmax", seed=seed)
        if barrier is not None:
            barrier.wait()
        gpunn.fit(model, X, y, epochs=8, batch_size=16, seed=seed)
        results[seed] = np.array(model.flat_params)


def test_two_models_trained_at_once_match_each_trained_alone():
    alone, together, barrier = {}, {}, threading.Barrier(2, timeout=60)
    for seed in (1, 2):
        train(seed, alone)
    threads = [threading.Thread(target=train, args=(seed, together, barrier)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(together) == [1, 2]
    for seed in (1, 2):
        np.testing.assert_array_equal(together[seed], alone[seed])
    assert not np.array_equal(alone[1], alone[2])
