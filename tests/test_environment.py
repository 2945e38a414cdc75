"""The CPU backend in a hostile environment (issue 19 item 9): no writable Numba cache (a
read-only install and home) trains uncached and ``gpunn info`` says so; a NUMBA_NUM_THREADS
that Numba would refuse or ignore is refused with a message naming it."""

import os
import subprocess
import sys

import pytest

TRAIN = """
import sys
if sys.argv[1] == "no-cache":
    # What Numba finds in a read-only install with a read-only home: no cache locator that
    # can write (root ignores file modes, so the test takes every locator away instead).
    from numba.core import caching
    caching.CacheImpl._locator_classes = []
import numpy as np
import gpunn
model = gpunn.MLP([3, 5, 1], seed=0)
gpunn.fit(model, np.ones((8, 3)), np.ones((8, 1)), optimizer="adam", epochs=2)
print("cache:", gpunn.info()["numba_cache"])
"""


def run(mode, **env):
    done = subprocess.run([sys.executable, "-c", TRAIN, mode], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600, check=False)
    return done.returncode, done.stdout, done.stderr


def test_no_writable_cache_trains_uncached_and_info_says_so():
    code, out, err = run("no-cache")
    assert code == 0, err[-2000:]
    assert "cache: off: no writable cache folder" in out
    assert "NUMBA_CACHE_DIR" in out


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_numba_num_threads_out_of_range_is_named(value):
    code, _, err = run("cache", NUMBA_NUM_THREADS=value)
    assert code != 0
    assert f"NUMBA_NUM_THREADS: expected a whole number of threads >= 1, got {value!r}" in err
