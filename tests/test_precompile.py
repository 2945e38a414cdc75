"""``gpunn compile``: every twin compiled ahead with the argument types the CPU backend
passes, so that a later process loads every kernel it runs and compiles none."""

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from gpunn.kernels import kernel_specs
from kernel_cases import CASES, Inputs, in_bf16_storage, writes_bf16

from gpunn.backends.cpu import CpuBackend
from gpunn.backends.precompile import signatures
from gpunn.cli import main


def launch_types(backend, spec, args):
    converted = backend._convert_args(spec, args)[0]
    return tuple(numba.typeof(a) for a in converted)


def test_signatures_cover_every_launch_of_the_kernel_table():
    """Each case's launch types (and the float32 storage of bf16 outputs) are among the
    signatures compiled ahead for its dtype."""
    backend, missing = CpuBackend(), []
    for case in CASES:
        spec = kernel_specs()[case.kernel]
        for dtype in case.dtypes:
            ahead = set(signatures(spec, np.dtype(dtype).name))
            variants = [case.args(Inputs(np.random.default_rng(0), dtype), 5, 7)]
            if writes_bf16(case.kernel) and np.dtype(dtype) == np.float32:
                variants.append(in_bf16_storage(backend, case.kernel, case.args(
                    Inputs(np.random.default_rng(0), dtype), 5, 7)))
            missing += [(case.id, np.dtype(dtype).name) for args in variants
                        if launch_types(backend, spec, args) not in ahead]
    assert missing == []


CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from kernel_cases import CASES, Inputs
from gpunn.backends.cpu import CpuBackend
from gpunn.backends.precompile import compile_claimed
from gpunn.backends.host_rows import scatter_rows
names = {"gather_rows", "sgd_step", "round_bf16", "scatter_rows"}
if sys.argv[2] == "compile":
    print("counts", *compile_claimed(("float32", "float64"), names=names, say=lambda s: None))
else:
    backend = CpuBackend()
    for case in (c for c in CASES if c.kernel in names):
        for dtype in case.dtypes:
            backend.kernel(case.kernel, *case.args(Inputs(np.random.default_rng(0), dtype), 5, 7))
    for dtype in ("float32", "float64"):  # streaming's rows: a block, a read-only map's
        block = np.zeros((3, 4), dtype)
        mapped = block.copy()
        mapped.flags.writeable = False
        for rows in (block, mapped):
            scatter_rows(rows, np.arange(3), np.zeros((3, 4), dtype))
"""


def test_a_later_process_loads_what_was_compiled_ahead(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_DEBUG_CACHE="1")
    run = [sys.executable, "-c", CHILD, str(Path(__file__).parent)]
    first = subprocess.run(run + ["compile"], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    compiled = [int(c) for c in first.stdout.splitlines()[-1].split()[1:]]
    assert compiled[0] >= 4 and compiled[1] == 0
    later = subprocess.run(run + ["use"], env=env, capture_output=True, text=True, timeout=600)
    assert later.returncode == 0, later.stderr[-2000:]
    assert "data loaded" in later.stdout
    assert "data saved" not in later.stdout, "a kernel compiled ahead was compiled again"


@pytest.mark.parametrize("argv, expected", [
    (["--jobs", "0"], "argument --jobs: expected an integer from 1 to 64, got '0'"),
    (["--jobs", "many"], "argument --jobs: expected an integer from 1 to 64, got 'many'"),
    (["--jobs", "65"], "argument --jobs: expected an integer from 1 to 64, got '65'"),
    (["--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
])
def test_bad_arguments_are_refused_by_name(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_:
        main(["compile", *argv])
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err


def test_without_a_writable_cache_it_says_so_and_compiles_nothing(monkeypatch, capsys):
    import gpunn.kernels.config as config

    monkeypatch.setattr(config, "CACHE", False)
    assert main(["compile", "--jobs", "1"]) == 1
    assert "no writable cache folder" in capsys.readouterr().err
