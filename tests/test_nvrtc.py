"""The exact source the CUDA backend compiles, with its exact NVRTC options, for every module.

Runs without a GPU: ``cupy.cuda.nvrtc`` is a thin wrapper over libnvrtc, which needs no device.
The backend compiles with NVRTC itself (``gpunn.backends.nvrtc.nvrtc_compile``): CuPy's
RawModule would append ``-ftz=true`` after any option, and gpunn keeps subnormals
(``-ftz=false``) so that the GPU agrees with the CPU. The options are the backend's
``NVRTC_OPTIONS`` and ``-arch=sm_XX``, plus ``--ptxas-options=-v`` for the resource report:
every kernel compiles to an entry function with no spills, no stack frame and few registers.
"""

import re
from functools import cache

import pytest
from gpunn.kernels import DTYPE_SUFFIX, MODULES, cuda_source, kernel_specs

from gpunn.backends.nvrtc import NVRTC_OPTIONS, device_arch, nvrtc_compile

cupy = pytest.importorskip("cupy", reason="cupy is not installed (pip install -e .[test])")
nvrtc = cupy.cuda.nvrtc

ARCHS = ("80", "90")
MAX_REGISTERS = 64
_ENTRY = re.compile(r"Compiling entry function '(\w+)' for 'sm_(\d+)'")


def rawmodule_options(arch):
    """The options NVRTC sees when the CUDA backend compiles for ``sm_<arch>``, plus the
    resource report."""
    return [*NVRTC_OPTIONS, f"-arch=sm_{arch}", "--ptxas-options=-v"]


@cache
def compile_module(module, dtype, arch):
    """``(cubin, log)`` of ``cuda_source(module, dtype)`` compiled for ``sm_<arch>``."""
    program = nvrtc.createProgram(cuda_source(module, dtype), f"{module}.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(program, rawmodule_options(arch))
        except nvrtc.NVRTCError as error:
            raise AssertionError(f"{module} {dtype} sm_{arch}: {error}\n"
                                 f"{nvrtc.getProgramLog(program)}") from None
        return nvrtc.getCUBIN(program), nvrtc.getProgramLog(program)
    finally:
        nvrtc.destroyProgram(program)


def ptxas_report(log):
    """``{entry function: {"arch", "registers", "spill_stores", "spill_loads", "stack"}}``."""
    report = {}
    blocks = _ENTRY.split(log)
    for name, arch, text in zip(blocks[1::3], blocks[2::3], blocks[3::3]):
        spills = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                           r"(\d+) bytes spill loads", text)
        registers = re.search(r"Used (\d+) registers", text)
        assert spills and registers, f"unparsed ptxas report for {name}:\n{text}"
        report[name] = {"arch": arch, "registers": int(registers.group(1)),
                        "stack": int(spills.group(1)), "spill_stores": int(spills.group(2)),
                        "spill_loads": int(spills.group(3))}
    return report


def test_options_keep_subnormals_and_follow_cupy():
    options = rawmodule_options("90")
    assert options[: len(NVRTC_OPTIONS)] == list(NVRTC_OPTIONS)
    for option in ("-ftz=false", "-arch=sm_90", "--device-as-default-execution-space"):
        assert option in options
    assert "-ftz=true" not in options
    assert sum(option.lstrip("-").startswith("std=") for option in options) == 1


def _flushing_instructions(ptx):
    """PTX instructions that flush subnormals, apart from the ``.approx`` seeds inside
    libdevice's exp and division, whose callers scale their inputs out of the subnormal range."""
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    return {op for op in re.findall(r"\b[\w.]*\.ftz[\w.]*", ptx) if ".approx." not in op}


@pytest.mark.parametrize("module", MODULES)
def test_the_backend_compiler_keeps_subnormals(module):
    """The backend's own compile emits no flushing arithmetic or comparison; the H200 run,
    compiled by CuPy with -ftz=true, saw relu' of a subnormal as 0 where the CPU sees 1."""
    ptx, _ = nvrtc_compile(nvrtc, cuda_source(module, "float32"), "compute_90")
    assert _flushing_instructions(ptx) == set()


def test_the_subnormal_check_sees_flushing():
    program = nvrtc.createProgram(cuda_source("activations", "float32"), "a.cu", [], [])
    try:
        nvrtc.compileProgram(program, [*NVRTC_OPTIONS, "-ftz=true", "-arch=compute_90"])
        assert any(op.startswith("setp.") for op in _flushing_instructions(
            nvrtc.getPTX(program)))
    finally:
        nvrtc.destroyProgram(program)


def test_backend_compile_gives_a_cubin_and_picks_the_device_arch():
    cubin, _ = nvrtc_compile(nvrtc, cuda_source("step", "float64"), "sm_80")
    assert cubin[:4] == b"\x7fELF"
    assert device_arch(nvrtc, "90") == "sm_90"
    newest = max(int(a) for a in nvrtc.getSupportedArchs())
    assert device_arch(nvrtc, str(newest + 1)) == f"compute_{newest}"


@pytest.mark.parametrize("arch", ARCHS, ids=lambda arch: f"sm_{arch}")
@pytest.mark.parametrize("dtype", list(DTYPE_SUFFIX))
@pytest.mark.parametrize("module", MODULES)
def test_module_compiles_without_spills(module, dtype, arch):
    cubin, log = compile_module(module, dtype, arch)
    assert cubin[:4] == b"\x7fELF", "NVRTC returned no cubin"
    assert "warning" not in log.lower(), log
    report = ptxas_report(log)
    expected = {spec.cuda_name(dtype) for spec in kernel_specs().values()
                if spec.module == module}
    assert set(report) == expected, log
    for name, usage in report.items():
        assert usage["arch"] == arch, (name, usage)
        assert usage["spill_stores"] == usage["spill_loads"] == 0, (name, usage)
        # Element-wise kernels need no local memory; a stack frame would mean it is used.
        assert usage["stack"] == 0, (name, usage)
        assert usage["registers"] <= MAX_REGISTERS, (name, usage)


def test_ptxas_parser_sees_spills_and_registers():
    log = ("ptxas info    : Compiling entry function 'gpunn_x_f32' for 'sm_80'\n"
           "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
           "ptxas info    : Used 70 registers, 380 bytes cmem[0]\n")
    assert ptxas_report(log) == {"gpunn_x_f32": {"arch": "80", "registers": 70, "stack": 8,
                                                 "spill_stores": 4, "spill_loads": 4}}


def test_a_broken_source_fails_with_the_compiler_log():
    program = nvrtc.createProgram('extern "C" __global__ void k() { undefined(); }', "k.cu",
                                  [], [])
    try:
        with pytest.raises(nvrtc.NVRTCError):
            nvrtc.compileProgram(program, rawmodule_options("80"))
        assert "undefined" in nvrtc.getProgramLog(program)
    finally:
        nvrtc.destroyProgram(program)
