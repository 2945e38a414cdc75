"""A roofline MODEL of gpunn's kernels on an H100, and the measured numbers when a GPU is here.

The model is arithmetic, not a measurement: per float32 element, the bytes a kernel must move
and the floating-point operations it does (sqrt, divide and exp counted as one each); its time
on N elements is ``launch + max(bytes * N / bandwidth, flops * N / fp32_peak)``. The bytes
assume each array is read or written once per element; per-row arrays (bias, row max and sum,
labels) stay in cache and are not counted.
"""

import itertools
import time

import numpy as np

from gpunn.kernels import kernel_specs

H100 = {"name": "NVIDIA H100 SXM (model)", "hbm_bytes_per_s": 3.35e12,
        "fp32_flops_per_s": 67e12, "launch_s": 3e-6, "sgemm_efficiency": 0.7}

# kernel: (bytes per element, flops per element, arrays read, arrays written), float32.
KERNELS = {
    "adam_step": (28, 18, "g p m v", "p m v"),
    "rmsprop_step": (20, 9, "g p v", "p v"),
    "sgd_step": (20, 7, "g p buf", "p buf"),
    "momentum_step": (20, 5, "g p v", "p v"),
    "bias_act_fwd": (8, 5, "Z", "Z"),
    "act_bwd": (12, 3, "A dZ", "dZ"),
    "softmax_xent": (16, 8, "Z dZ", "loss dZ"),
    "bce_logits": (16, 12, "Z Y", "loss dZ"),
    "mse": (16, 5, "Z Y", "loss dZ"),
}
# Integer scalars for timing runs: the forward is timed with sigmoid; the backward with relu,
# whose f' = 1 for positive outputs keeps dZ from decaying to denormals over the repetitions
# (the bytes moved are the same).
_INTS = {("bias_act_fwd", "act"): 1, ("act_bwd", "act"): 2}


def model_seconds(kernel, n, gpu=H100):
    """Modelled seconds of ``kernel`` on ``n`` float32 elements."""
    nbytes, flops, _, _ = KERNELS[kernel]
    return gpu["launch_s"] + max(nbytes * n / gpu["hbm_bytes_per_s"],
                                 flops * n / gpu["fp32_flops_per_s"])


def model_table(sizes, gpu=H100):
    """Every kernel at every size: bytes, flops, modelled time and the GB/s it implies."""
    rows = []
    for kernel, (nbytes, flops, reads, writes) in KERNELS.items():
        for n in sizes:
            seconds = model_seconds(kernel, int(n), gpu)
            rows.append({"kernel": kernel, "n": int(n), "bytes_per_element": nbytes,
                         "flops_per_element": flops, "reads": reads, "writes": writes,
                         "model_s": seconds, "model_gb_per_s": nbytes * n / seconds / 1e9,
                         "bound": "memory" if nbytes / gpu["hbm_bytes_per_s"]
                         >= flops / gpu["fp32_flops_per_s"] else "compute"})
    return rows


def model_step(sizes, batch, gpu=H100):
    """Modelled seconds of one MLP training step: SGEMMs at a fraction of the FP32 peak,
    plus the elementwise kernels and one Adam update at HBM bandwidth."""
    pairs = list(itertools.pairwise(sizes))
    gemm_flops = 2 * batch * (3 * sum(a * b for a, b in pairs) - sizes[0] * sizes[1])
    gemm = gemm_flops / (gpu["fp32_flops_per_s"] * gpu["sgemm_efficiency"])
    params = sum(a * b + b for a, b in pairs)
    elementwise = (sum(model_seconds("bias_act_fwd", batch * s, gpu) for s in sizes[1:])
                   + sum(model_seconds("act_bwd", batch * s, gpu) for s in sizes[1:-1])
                   + model_seconds("softmax_xent", batch * sizes[-1], gpu)
                   + model_seconds("adam_step", params, gpu))
    return {"batch": batch, "gemm_flops": gemm_flops, "model_gemm_s": gemm,
            "model_elementwise_s": elementwise,
            "model_step_s": gemm + elementwise,
            "model_samples_per_s": batch / (gemm + elementwise)}


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
            args.append(n_cols if p.name == "n_cols" else _INTS.get((spec.name, p.name), 0))
    return args


def measure(backend, sizes, repeats=20):
    """Measured seconds per launch of every modelled kernel on ``backend`` (synchronized)."""
    rows = []
    for kernel in KERNELS:
        spec = kernel_specs()[kernel]
        for n in sizes:
            n = int(n) // 1024 * 1024 or 1024
            args = _arguments(backend, spec, n)
            backend.kernel(kernel, *args)
            backend.synchronize()
            start = time.perf_counter()
            for _ in range(repeats):
                backend.kernel(kernel, *args)
            backend.synchronize()
            seconds = (time.perf_counter() - start) / repeats
            rows.append({"kernel": kernel, "n": n, "backend": backend.name,
                         "measured_s": seconds,
                         "measured_gb_per_s": KERNELS[kernel][0] * n / seconds / 1e9})
    return rows
