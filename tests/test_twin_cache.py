"""Numba's cache of the twins is keyed by the whole kernels package, not by each function's
own file: a twin inlines helpers from other files (the dropout masks of counter_rng.py into
activations.py's kernels, vecmath's exp into the losses), and Numba, which stamps a cached
function with its own file's contents alone, would load the old machine code of a kernel
whose helper changed (an editable install after ``git pull``, a patched file): other numbers
than the source says, and than the GPU computes, with no sign of it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

KERNELS = Path(__file__).resolve().parent.parent / "kernels"

# A relu layer's backward with dropout p = 1/2 (threshold 2^31) under the package's masks;
# prints how many of its 4096 outputs are kept (nonzero).
CHILD = """
import numpy as np
from kernels import activations as A
S = np.ones(4096, np.float32)
dZ = np.ones(4096, np.float32)
A.act_bwd_drop(S, A.RELU, np.zeros(8, np.int64), 1, 0, 0, 2**31, np.float32(2.0), dZ)
print(int(np.count_nonzero(dZ)))
"""


def _run(root, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, timeout=600, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


def test_a_changed_helper_file_recompiles_the_kernels_that_inline_it(tmp_path):
    """Half the elements are kept (threshold 2^31); then counter_rng.py alone changes so that
    every element is kept: a process with the cache of the first must keep them all."""
    root, cache = tmp_path / "tree", tmp_path / "cache"
    shutil.copytree(KERNELS, root / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    kept = _run(root, cache)
    assert 1800 < kept < 2300
    helper = root / "kernels" / "counter_rng.py"
    source = helper.read_text()
    changed = source.replace("return scale if u >= np.uint64(drop_below) else type(scale)(0)",
                             "return scale")
    changed = changed.replace("(h & _LOW32) >= below else zero", "(h & _LOW32) >= 0 else zero")
    changed = changed.replace("(h >> _S32) >= below else zero", "(h >> _S32) >= 0 else zero")
    assert changed != source
    helper.write_text(changed)
    assert _run(root, cache) == 4096
