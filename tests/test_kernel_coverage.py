"""Every CUDA kernel has a Numba twin with its signature, a reference and a row in the table.

Kernels are enumerated from the ``.cu`` sources (``gpunn.kernels.kernel_specs``), so a kernel
added to a ``.cu`` file without its twin, its float64 reference or a test row fails here.
"""

import importlib
import inspect
import re

import numpy as np
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


def test_every_activation_code_is_distinct_and_handled_by_both_switches():
    """The codes parsed from activations.cuh are the activations: each one distinct, and
    each but identity (the ``default:``) a case of the forward and the derivative switch."""
    header = (KERNEL_DIR / "activations.cuh").read_text()
    assert {"identity", "sigmoid", "relu", "tanh"} <= set(ACTIVATIONS)
    assert len(set(ACTIVATIONS.values())) == len(ACTIVATIONS)
    for function in ("gpunn_activate", "gpunn_activation_grad"):
        body = header[header.index(f" {function}("):].split("\n}\n", 1)[0]
        cases = {name.lower() for name in re.findall(r"case GPUNN_(\w+):", body)}
        assert cases == set(ACTIVATIONS) - {"identity"}, function


def test_every_activation_has_references():
    z = np.linspace(-3.0, 3.0, 7)
    for name in ACTIVATIONS:
        assert reference.activation(name, z).shape == z.shape
        assert reference.activation_derivative_from_output(name, z).shape == z.shape


def test_every_activation_is_tested_forward_and_backward():
    for kernel in ("bias_act_fwd", "act_bwd"):
        variants = {case.variant for case in test_kernels.CASES if case.kernel == kernel}
        assert variants == set(ACTIVATIONS), kernel
