"""Optimizer updates and elementwise kernels: gpunn against NumPy and PyTorch (per call).

Compare within a group: ``pytest benchmarks/test_kernels_bench.py --benchmark-enable
--benchmark-group-by=group``. ``gpunn bench`` runs the same contenders interleaved and
reports ratios of medians.
"""

import numpy as np
import pytest

from gpunn.bench import gpu_model, kernels

SIZES = [100_000, 1_000_000, 10_000_000]
KINDS = ["adam", "rmsprop", "sgd_momentum"]


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"N{n:.0e}")
@pytest.mark.parametrize("kind", KINDS)
def test_gpunn_update(benchmark, cpu, kind, n):
    benchmark.group = f"{kind} N={n:.0e}"
    benchmark(kernels.gpunn_step(kind, cpu, n))


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"N{n:.0e}")
@pytest.mark.parametrize("kind", KINDS)
def test_numpy_inplace_update(benchmark, kind, n):
    benchmark.group = f"{kind} N={n:.0e}"
    benchmark(kernels.numpy_inplace(kind, n))


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"N{n:.0e}")
@pytest.mark.parametrize("kind", KINDS)
def test_torch_update(benchmark, torch, kind, n):
    benchmark.group = f"{kind} N={n:.0e}"
    options = {"fused": True} if kind == "adam" else {}
    benchmark(kernels.torch_step(torch, kind, n, **options))


@pytest.mark.parametrize("kernel", sorted(gpu_model.KERNELS))
def test_kernel_launch(benchmark, cpu, kernel):
    """Every kernel on 2^20 float32 elements through ``Backend.kernel``."""
    from gpunn.kernels import kernel_specs

    benchmark.group = "kernels at 2^20 elements"
    args = gpu_model._arguments(cpu, kernel_specs()[kernel], 1 << 20)
    benchmark(lambda: cpu.kernel(kernel, *args))
    assert all(np.isfinite(a).all() for a in args if isinstance(a, np.ndarray))
