"""Optimizer updates and elementwise kernels: gpunn against NumPy and PyTorch (per call).

Compare within a group: ``pytest benchmarks/test_kernels_bench.py --benchmark-enable
--benchmark-group-by=group``. ``gpunn bench --sections updates`` runs the same contenders
interleaved and reports ratios of medians.
"""

import numpy as np
import pytest
from gpunn.kernels import kernel_specs

from gpunn.bench import updates

SIZES = [100_000, 1_000_000, 10_000_000]
KINDS = ["adam", "rmsprop", "sgd_momentum"]
KERNELS = ["bias_act_fwd", "act_bwd", "softmax_shift_exp", "softmax_xent", "bce_logits", "mse",
           "adam_step", "rmsprop_step", "sgd_step", "momentum_step", "axpy"]
# Integer arguments for timing: the forward with sigmoid; the backward with relu, whose f' = 1
# for positive outputs keeps dZ from decaying to subnormals over the repetitions.
INTS = {("bias_act_fwd", "act"): 1, ("act_bwd", "act"): 2}


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


def _arguments(backend, spec, n, n_cols=1024):
    """Valid arguments of ``spec`` for ``n`` elements (``n`` a multiple of ``n_cols``)."""
    rng = np.random.default_rng(0)
    sizes = {"n": n, "n_cols": n_cols}
    args = []
    for p in spec.params:
        if p.kind in ("in", "out"):
            numerator, divisor = p.size
            count = sizes[numerator] // (sizes[divisor] if divisor else 1)
            args.append(backend.asarray(rng.random(count) + 0.5, np.float32))
        elif p.kind == "in_int64":
            args.append(backend.asarray(np.zeros(n // n_cols, np.int64)))
        elif p.kind == "real":
            args.append(0.5)
        else:
            args.append(n_cols if p.name == "n_cols" else INTS.get((spec.name, p.name), 0))
    return args


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_launch(benchmark, cpu, kernel):
    """Every kernel on 2^20 float32 elements through ``Backend.kernel``."""
    benchmark.group = "kernels at 2^20 elements"
    args = _arguments(cpu, kernel_specs()[kernel], 1 << 20)
    benchmark(lambda: cpu.kernel(kernel, *args))
    assert all(np.isfinite(a).all() for a in args if isinstance(a, np.ndarray))
