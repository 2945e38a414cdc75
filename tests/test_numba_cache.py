"""The Numba twins are cached on disk: a second process loads every one and compiles nothing."""

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from gpunn.kernels import kernel_specs
from kernel_cases import CASES

CALL_EVERY_KERNEL = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from kernel_cases import CASES, Inputs
from gpunn.backends.cpu import CpuBackend

backend = CpuBackend()
for case in CASES:
    for dtype in case.dtypes:
        args = case.args(Inputs(np.random.default_rng(0), dtype), 3, 5)
        backend.kernel(case.kernel, *args)
"""


def _run(debug_cache):
    env = dict(os.environ, NUMBA_DEBUG_CACHE="1" if debug_cache else "0")
    done = subprocess.run([sys.executable, "-c", CALL_EVERY_KERNEL, str(Path(__file__).parent)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_second_process_loads_every_twin_from_the_cache():
    _run(debug_cache=False)  # compiles whatever is not cached yet
    log = _run(debug_cache=True)
    saved = re.findall(r"\[cache\] data saved to '([^']+)'", log)
    loaded = Counter(re.findall(r"\[cache\] data loaded from '[^']*/(\w+)\.(\w+)-\d+\.py", log))
    assert saved == [], f"recompiled in a warm process: {saved}"
    # One machine-code entry per twin and dtype it runs in (bfloat16 twins: float32 only), all
    # from the cache.
    dtypes = {name: set() for name in kernel_specs()}
    for case in CASES:
        dtypes[case.kernel].update(case.dtypes)
    assert loaded == Counter({(spec.module, name): len(dtypes[name])
                              for name, spec in kernel_specs().items()})
    assert {case.kernel for case in CASES} == set(kernel_specs())
