"""Optimizer updates and elementwise kernels: gpunn against NumPy and PyTorch (per call).

Compare within a group: ``pytest benchmarks/test_kernels_bench.py --benchmark-enable
--benchmark-group-by=group``. ``gpunn bench --sections updates`` runs the same contenders
interleaved and reports ratios of medians.
"""

import numpy as np
import pytest

from gpunn.bench import updates

SIZES = [100_000, 1_000_000, 10_000_000]
KINDS = ["adam", "rmsprop", "sgd_momentum"]
# The elementwise kernels; the optimizer kernels are timed through the updates above.
KERNELS = ["bias_act_fwd", "act_bwd", "softmax_xent", "bce_logits", "mse", "axpy"]


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"N{n:.0e}")
@pytest.mark.parametrize("kind", KINDS)
def test_gpunn_update(benchmark, cpu, kind, n):
    benchmark.group = f"{kind} N={n:.0e}"
    benchmark(updates.gpunn_update(kind, cpu, n))


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"N{n:.0e}")
@pytest.mark.parametrize("kind", KINDS)
def test_numpy_update(benchmark, kind, n):
    benchmark.group = f"{kind} N={n:.0e}"
    benchmark(updates.numpy_update(kind, n))


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"N{n:.0e}")
@pytest.mark.parametrize("kind", KINDS)
def test_torch_update(benchmark, torch, kind, n):
    benchmark.group = f"{kind} N={n:.0e}"
    options = {"fused": True} if kind == "adam" else {}
    benchmark(updates.torch_update(torch, kind, n, **options))


def _arguments(backend, kernel, n=1 << 20, n_cols=1024):
    """Valid arguments of an elementwise ``kernel`` on ``n`` float32 elements in rows of
    ``n_cols``; sigmoid forward, relu backward (f' = 1 keeps dZ from decaying to subnormals
    over the repetitions)."""
    rng = np.random.default_rng(0)

    def f(count):
        return backend.asarray(rng.random(count) + 0.5, np.float32)

    rows = n // n_cols
    return {"bias_act_fwd": lambda: [f(n_cols), n_cols, 1, f(n)],
            "act_bwd": lambda: [f(n), 2, f(n)],
            "bce_logits": lambda: [f(n), f(n), f(rows), n_cols, 0.5, f(n), f(n)],
            "mse": lambda: [f(n), f(n), f(rows), n_cols, 0.5, f(n), f(n)],
            "softmax_xent": lambda: [f(n), backend.zeros(rows, np.float32), f(rows), n_cols,
                                     0.5, f(rows), f(n)],
            "axpy": lambda: [f(n), 0.5, f(n)]}[kernel]()


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_launch(benchmark, cpu, kernel):
    """Every elementwise kernel on 2^20 float32 elements through ``Backend.kernel``."""
    benchmark.group = "kernels at 2^20 elements"
    args = _arguments(cpu, kernel)
    benchmark(lambda: cpu.kernel(kernel, *args))
    assert all(np.isfinite(a).all() for a in args if isinstance(a, np.ndarray))
