"""AddressSanitizer catches an off-by-one grid-stride kernel in the host build (.ci/asan.sh).

A kernel written against the same shim and ``common.cuh`` as gpunn's, once correct and once
looping to ``i <= n``, is compiled with the host build's ASan flags and launched in a Python
subprocess with libasan preloaded: the correct one runs clean, the off-by-one one aborts with
a heap-buffer-overflow report.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gpunn.kernels import KERNEL_DIR
from host_build import SHIM, sanitize_flags

KERNEL = """
#include "{shim}"
#define GPUNN_REAL double
#define GPUNN_NAME(base) base
#include "{kernels}/common.cuh"

extern "C" __global__ void fill(real* x, long long n) {{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i {compare} n;
         i += (long long)blockDim.x * gridDim.x) {{
        x[i] = real(1);
    }}
}}

extern "C" void launch(real* x, long long n) {{
    gridDim = {{3, 1, 1}};
    blockDim = {{7, 1, 1}};
    for (unsigned b = 0; b < 3; ++b)
        for (unsigned t = 0; t < 7; ++t) {{
            blockIdx = {{b, 0, 0}};
            threadIdx = {{t, 0, 0}};
            fill(x, n);
        }}
}}
"""

RUN = """
import ctypes, sys
import numpy as np
library = ctypes.CDLL(sys.argv[1])
x = np.zeros(1000)
library.launch(ctypes.c_void_p(x.ctypes.data), ctypes.c_longlong(x.size))
assert (x == 1).all()
print("finished")
"""


def _libasan():
    found = subprocess.run(["g++", "-print-file-name=libasan.so"], check=False,
                           capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(found) or not os.path.exists(found):
        pytest.skip("libasan.so is not installed for this g++ (needed to preload ASan)")
    return found


def _build(tmp_path, compare):
    source = tmp_path / f"fill_{'le' if compare == '<=' else 'lt'}.cpp"
    source.write_text(KERNEL.format(shim=SHIM, kernels=KERNEL_DIR, compare=compare))
    library = source.with_suffix(".so")
    subprocess.run(["g++", "-std=c++17", "-shared", "-fPIC", *sanitize_flags(), str(source),
                    "-o", str(library)], check=True, capture_output=True, text=True)
    return library


def _run_under_asan(library):
    env = dict(os.environ, LD_PRELOAD=_libasan(), ASAN_OPTIONS="detect_leaks=0")
    return subprocess.run([sys.executable, "-c", RUN, str(library)], check=False, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("compare, clean", [("<", True), ("<=", False)],
                         ids=["correct", "off_by_one"])
def test_asan_reports_exactly_the_off_by_one(tmp_path, monkeypatch, compare, clean):
    monkeypatch.setenv("GPUNN_HOST_ASAN", "1")
    assert "-fsanitize=address" in sanitize_flags()
    done = _run_under_asan(_build(tmp_path, compare))
    if clean:
        assert done.returncode == 0 and "finished" in done.stdout, done.stderr[-2000:]
    else:
        assert done.returncode != 0 and "finished" not in done.stdout
        assert "AddressSanitizer: heap-buffer-overflow" in done.stderr, done.stderr[-2000:]
        assert "WRITE of size 8" in done.stderr


def test_ci_script_preloads_asan_and_runs_the_host_build_tests():
    script = (Path(__file__).resolve().parents[1] / ".ci" / "asan.sh").read_text()
    for needed in ("GPUNN_HOST_ASAN=1", "LD_PRELOAD", "detect_leaks=0", "test_host_build.py"):
        assert needed in script, needed
