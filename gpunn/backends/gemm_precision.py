"""GEMMs per precision: ``fp32``, ``tf32`` (TF32 tensor cores) and ``bf16`` (bfloat16 inputs).

Every precision accumulates and writes float32. ``tf32`` reads float32 operands and rounds
them to 10 mantissa bits inside the GEMM; ``bf16`` reads bfloat16 operands, stored as their 16
bits in ``uint16`` arrays (``CUDA_R_16BF``), written by the kernels of ``kernels/precision.cu``.

On CUDA one ``cublasGemmEx`` call does it (``gpunn.backends.cublas.Cublas.gemm_ex``, with the
row-major to column-major mapping of the fp32 GEMMs): ``CUBLAS_COMPUTE_32F_FAST_TF32`` for
tf32, ``CUDA_R_16BF`` inputs with ``CUBLAS_COMPUTE_32F`` for bf16. Elsewhere the backend
emulates it (:meth:`gpunn.backends.base.Backend.matmul`): the operands are rounded to TF32 or
widened from bfloat16 into float32 scratch arrays (on the CPU bf16 operands are float32 values
already: ``CpuBackend.bf16_zeros``), and the float32 GEMM runs on those; the
products of the rounded values are then exact in float32, so the results differ from the GPU's
only by accumulation order (and by how the tensor cores round to TF32, which NVIDIA leaves
unspecified; the emulation rounds to nearest even).
"""

import numpy as np

from gpunn._checks import choice_key

PRECISIONS = ("fp32", "tf32", "bf16")
# The operand dtype each precision's GEMM reads; the output is float32 for all.
OPERAND_DTYPES = {"fp32": np.dtype(np.float32), "tf32": np.dtype(np.float32),
                  "bf16": np.dtype(np.uint16)}

# Enum values of CUDA 12's library_types.h (cudaDataType) and cublas_api.h.
CUDA_R_32F, CUDA_R_16BF = 0, 14
CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32 = 68, 77
CUBLAS_GEMM_DEFAULT = -1
# cublasGemmEx's (operand type, output type, compute type) per precision.
GEMM_EX_TYPES = {
    "fp32": (CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F),
    "tf32": (CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32),
    "bf16": (CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F),
}


def check_precision(precision, argument="precision"):
    """``precision`` as one of :data:`PRECISIONS` (case-insensitive), else ValueError."""
    key = choice_key(precision)
    if key not in PRECISIONS:
        raise ValueError(f"{argument}: expected one of {list(PRECISIONS)}, got {precision!r}")
    return key


def check_operands(a, b, out, precision):
    """The operands' dtypes must be what ``precision``'s GEMM reads, ``out`` float32.

    Returns:
        The checked precision name.
    """
    precision = check_precision(precision)
    want = OPERAND_DTYPES[precision]
    for name, array in (("a", a), ("b", b)):
        if array.dtype != want:
            what = "bfloat16 bits" if precision == "bf16" else "float32"
            raise TypeError(f"matmul: {name}: expected dtype {want} ({what}) for precision "
                            f"{precision!r}, got {array.dtype}")
    if out is not None and out.dtype != np.float32:
        raise TypeError(f"matmul: out: expected dtype float32 for precision {precision!r}, "
                        f"got {out.dtype}")
    return precision
