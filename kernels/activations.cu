// Fused bias + activation forward and the activation backward of a Dense layer.
// Arrays are flat, row-major (batch, n_cols); n is the size of the last array. Every array has
// n elements unless a '// sizes:' line right above its kernel says otherwise (the backend checks).
#include "common.cuh"
#include "activations.cuh"
#include "precision.cuh"

// Z[i] = f(Z[i] + b[i % n_cols]), in place.
// sizes: b[n_cols]
extern "C" __global__ void GPUNN_NAME(bias_act_fwd)(
    const real* b, long long n_cols, int act, real* Z, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        Z[i] = gpunn_activate(Z[i] + b[i % n_cols], act);
    }
}

// Z[i] += b[i % n_cols], A[i] = f(Z[i]): the forward of an activation whose backward reads
// the pre-activation Z (codes from ACT_FROM_Z_BEGIN on).
// sizes: b[n_cols]
extern "C" __global__ void GPUNN_NAME(bias_act_fwd_keep)(
    const real* b, long long n_cols, int act, real* Z, real* A, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real z = Z[i] + b[i % n_cols];
        Z[i] = z;
        A[i] = gpunn_activate(z, act);
    }
}

// bias_act_fwd_keep that also writes the bfloat16 bits of A into Ah (float32 only).
// sizes: b[n_cols]
extern "C" __global__ void GPUNN_NAME(bias_act_fwd_keep_bf16)(
    const real* b, long long n_cols, int act, real* Z, real* A, unsigned short* Ah,
    long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real z = Z[i] + b[i % n_cols];
        real a = gpunn_activate(z, act);
        Z[i] = z;
        A[i] = a;
        Ah[i] = gpunn_bf16_bits((float)a);
    }
}

// dZ[i] = dA[i] * f'(z_i) with f' taken from the layer output A (or, for codes from
// ACT_FROM_Z_BEGIN on, from the pre-activation kept by bias_act_fwd_keep); dZ holds dA on entry.
extern "C" __global__ void GPUNN_NAME(act_bwd)(const real* A, int act, real* dZ, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        dZ[i] *= gpunn_activation_grad(A[i], act);
    }
}

// bias_act_fwd that also writes the bfloat16 bits of its output into Zh: the next layer's GEMM
// input in precision "bf16" (float32 only, as every kernel with bfloat16 arguments).
// sizes: b[n_cols]
extern "C" __global__ void GPUNN_NAME(bias_act_fwd_bf16)(
    const real* b, long long n_cols, int act, real* Z, unsigned short* Zh, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real a = gpunn_activate(Z[i] + b[i % n_cols], act);
        Z[i] = a;
        Zh[i] = gpunn_bf16_bits((float)a);
    }
}

// act_bwd that also writes the bfloat16 bits of dZ into dZh, the input of both GEMMs of the
// layer's backward pass in precision "bf16".
extern "C" __global__ void GPUNN_NAME(act_bwd_bf16)(
    const real* A, int act, real* dZ, unsigned short* dZh, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real d = dZ[i] * gpunn_activation_grad(A[i], act);
        dZ[i] = d;
        dZh[i] = gpunn_bf16_bits((float)d);
    }
}
