"""The first run's kernel compile: said once, left out of the epoch times, time columns named."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import gpunn
from gpunn.backends import compile_watch
from gpunn.callbacks import Callback

numba = pytest.importorskip("numba")


def _fresh_function():
    """A new jitted function (uncached): its first call compiles; it calls a helper, whose
    compile nests inside its own."""
    @numba.njit(cache=False)
    def helper(x):
        return x * 2.0 + 1.0

    @numba.njit(cache=False)
    def outer(x):
        return helper(x) - 1.0

    return outer


def test_compile_watch_counts_nested_compiles_once():
    said = []
    compile_watch.watch_compiles(lambda: said.append(1))
    before = compile_watch.compile_seconds()
    started = time.perf_counter()
    assert _fresh_function()(3.0) == 6.0
    wall = time.perf_counter() - started
    spent = compile_watch.compile_seconds() - before
    compile_watch.forget_announcement()
    assert said == [1]                  # once, though two functions compiled
    assert 0 < spent <= wall            # nested compiles not counted twice
    _fresh_function()(1.0)
    assert said == [1]                  # said once, not at each compile


class _CompileInFirstEpoch(Callback):
    """Compiles a fresh function during epoch 1's first batch, and times each epoch from
    outside, around everything fit counts."""

    wants_batches = True

    def __init__(self):
        self.walls, self.compiled, self.t0 = [], None, None

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.compiled is None:
            before = compile_watch.compile_seconds()
            _fresh_function()(1.0)
            self.compiled = compile_watch.compile_seconds() - before

    def on_epoch_end(self, epoch, logs=None):
        self.walls.append(time.perf_counter() - self.t0)


def test_fit_leaves_compile_out_of_epoch_times_and_says_so(capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = gpunn.MLP([5, 8, 3], activation="relu", output="softmax", seed=0)
    probe = _CompileInFirstEpoch()
    history = gpunn.fit(model, X, y, epochs=2, batch_size=32, callbacks=[probe], verbose=2)
    out, err = capsys.readouterr()
    assert probe.compiled > 0
    first = history.seconds[0]
    assert first + probe.compiled <= probe.walls[0]      # the compile is not in epoch 1's time
    assert err.count("gpunn: compiling kernels (first run") == 1
    assert err.count("gpunn: compiled kernels in") == 1
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2
    epoch_time = float(lines[1].split("  time ")[1].split(" s")[0])
    total = float(lines[1].split("  total ")[1].split(" s")[0])
    assert epoch_time == pytest.approx(history.seconds[1] - history.seconds[0], abs=0.006)
    assert total == pytest.approx(history.seconds[1], abs=0.006)


_CACHED = '''
import numba
from gpunn.backends import compile_watch

@numba.njit(cache=True)
def twice(x):
    return x * 2.0

compile_watch.watch_compiles()
assert twice(2.0) == 4.0
print(compile_watch.compile_seconds(), compile_watch.load_seconds())
'''


def test_load_from_cache_is_counted_apart_from_compiles(tmp_path):
    """A twin loaded from Numba's cache costs no compile but is counted by load_seconds, which
    fit leaves out of epoch 1 (it made epoch 1 read ~1 s on every run)."""
    script = tmp_path / "cached_twin.py"
    script.write_text(_CACHED)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                           text=True, check=True, timeout=120).stdout.split()
            for _ in range(2)]
    (compiled1, loaded1), (compiled2, loaded2) = [[float(v) for v in run] for run in runs]
    assert 0 < compiled1 <= loaded1    # a compile holds the lock: counted by both
    assert compiled2 == 0 < loaded2    # from the cache: no compile, but a load
