// Conversions of the mixed-precision modes (gpunn precision "bf16" and "tf32"): float32 to the
// bfloat16 bits cuBLAS reads (CUDA_R_16BF, stored as unsigned short), back, and TF32 rounding.
// bfloat16 kernels take float32 only: the backend refuses float64 arrays for any kernel with
// an unsigned short argument (the float64 build compiles, converting to float first, and is
// never launched).
#include "common.cuh"
#include "precision.cuh"

// out[i] = bfloat16 bits of x[i], rounded to nearest even.
extern "C" __global__ void GPUNN_NAME(round_bf16)(
    const real* x, unsigned short* out, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        out[i] = gpunn_bf16_bits((float)x[i]);
    }
}

// out[i] = the value of the bfloat16 bits h[i] (exact).
extern "C" __global__ void GPUNN_NAME(bf16_to_f32)(
    const unsigned short* h, real* out, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        out[i] = gpunn_bf16_float(h[i]);
    }
}

// x[i] rounded to TF32 in place (what the CPU backend feeds its GEMM in precision "tf32").
extern "C" __global__ void GPUNN_NAME(round_tf32)(real* x, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        x[i] = gpunn_tf32((float)x[i]);
    }
}
