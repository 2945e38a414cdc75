"""Every CUDA kernel has a Numba twin with its signature, a reference and a row in the table.

Kernels are enumerated from the ``.cu`` sources (``gpunn.kernels.kernel_specs``), so a kernel
added to a ``.cu`` file without its twin, its float64 reference or a test row fails here.
"""

import importlib
import inspect
import re

import pytest
import reference
import test_kernels
from gpunn.kernels import KERNEL_DIR, MODULES, kernel_specs
from gpunn.kernels.activations import ACTIVATIONS

SPECS = sorted(kernel_specs().values(), key=lambda spec: spec.name)


def _param_names(function):
    return [name for name in inspect.signature(function).parameters]


@pytest.mark.parametrize("module", MODULES)
def test_every_global_function_is_parsed(module):
    source = (KERNEL_DIR / f"{module}.cu").read_text()
    parsed = [spec.name for spec in SPECS if spec.module == module]
    assert len(re.findall(r"\b__global__\b", source)) == len(parsed) > 0, (module, parsed)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_kernel_has_a_numba_twin_with_its_parameters(spec):
    module = importlib.import_module(f"gpunn.kernels.{spec.module}")
    twin = getattr(module, spec.name, None)
    assert twin is not None, f"gpunn.kernels.{spec.module} has no twin {spec.name!r}"
    assert hasattr(twin, "py_func"), f"{spec.name}: the twin is not a Numba function"
    assert _param_names(twin.py_func) == [p.name for p in spec.params]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_kernel_has_a_reference_with_its_parameters(spec):
    function = getattr(reference, spec.name, None)
    assert function is not None, f"tests/reference.py has no {spec.name}()"
    assert _param_names(function) == [p.name for p in spec.params]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_kernel_has_a_row_in_the_test_table(spec):
    rows = [case.id for case in test_kernels.CASES if case.kernel == spec.name]
    assert rows, f"{spec.name} has no row in test_kernels.CASES"


def test_the_table_names_only_existing_kernels_and_unique_ids():
    ids = [case.id for case in test_kernels.CASES]
    assert len(ids) == len(set(ids))
    assert {case.kernel for case in test_kernels.CASES} == {spec.name for spec in SPECS}


def test_activation_codes_agree_with_the_cuda_header():
    header = (KERNEL_DIR / "activations.cuh").read_text()
    defined = {name.lower(): int(code)
               for name, code in re.findall(r"^#define GPUNN_(\w+) (\d+)$", header, re.MULTILINE)}
    assert defined == ACTIVATIONS
    assert reference.ACTIVATION_CODES == ACTIVATIONS


def test_every_activation_is_tested_forward_and_backward():
    for kernel in ("bias_act_fwd", "act_bwd"):
        variants = {case.variant for case in test_kernels.CASES if case.kernel == kernel}
        assert variants == set(ACTIVATIONS), kernel
