// Fused bias + activation forward and the activation backward of a Dense layer.
// Arrays are flat, row-major (batch, n_cols); n is the size of the last array. Every array has
// n elements unless a '// sizes:' line right above its kernel says otherwise (the backend checks).
#include "common.cuh"
#include "activations.cuh"
#include "precision.cuh"
#include "counter_rng.cuh"
#include "step.cuh"

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

// Inverted dropout fused into the forward: z = Z[i] + b[i % n_cols], a = f(z); the output is
// A[i] = a * m, m = scale (1 / (1 - p)) where the mask keeps element offset + i, else 0; Z[i]
// keeps what act_bwd_drop reads: z for codes from ACT_FROM_Z_BEGIN on, else a. The mask is
// keyed by (seed, layer, ctrl[T], offset + i) (counter_rng.cuh): nothing is stored, backward
// recomputes it. offset: the first element of this pass in the step's batch (a rank's shard).
// sizes: b[n_cols] ctrl[8]
extern "C" __global__ void GPUNN_NAME(bias_act_fwd_drop)(
    const real* b, long long n_cols, int act, const long long* ctrl, long long seed, int layer,
    long long offset, long long drop_below, real scale, real* Z, real* A, long long n) {
    unsigned long long key = gpunn_dropout_key(seed, layer, ctrl[GPUNN_CTRL_T]);
    GPUNN_GRID_STRIDE(i, n) {
        real z = Z[i] + b[i % n_cols];
        real a = gpunn_activate(z, act);
        Z[i] = act >= ACT_FROM_Z_BEGIN ? z : a;
        A[i] = a * gpunn_dropout_factor(key, offset + i, drop_below, scale);
    }
}

// bias_act_fwd_drop that also writes the bfloat16 bits of A into Ah (float32 only).
// sizes: b[n_cols] ctrl[8]
extern "C" __global__ void GPUNN_NAME(bias_act_fwd_drop_bf16)(
    const real* b, long long n_cols, int act, const long long* ctrl, long long seed, int layer,
    long long offset, long long drop_below, real scale, real* Z, real* A, unsigned short* Ah,
    long long n) {
    unsigned long long key = gpunn_dropout_key(seed, layer, ctrl[GPUNN_CTRL_T]);
    GPUNN_GRID_STRIDE(i, n) {
        real z = Z[i] + b[i % n_cols];
        real a = gpunn_activate(z, act);
        real out = a * gpunn_dropout_factor(key, offset + i, drop_below, scale);
        Z[i] = act >= ACT_FROM_Z_BEGIN ? z : a;
        A[i] = out;
        Ah[i] = gpunn_bf16_bits((float)out);
    }
}

// The backward of bias_act_fwd_drop: dZ[i] = (dA[i] * m) * f'(z_i), the mask m recomputed
// from the same key, f' from S (what the forward kept in its Z); dZ holds dA on entry.
// sizes: ctrl[8]
extern "C" __global__ void GPUNN_NAME(act_bwd_drop)(
    const real* S, int act, const long long* ctrl, long long seed, int layer, long long offset,
    long long drop_below, real scale, real* dZ, long long n) {
    unsigned long long key = gpunn_dropout_key(seed, layer, ctrl[GPUNN_CTRL_T]);
    GPUNN_GRID_STRIDE(i, n) {
        real m = gpunn_dropout_factor(key, offset + i, drop_below, scale);
        dZ[i] = dZ[i] * m * gpunn_activation_grad(S[i], act);
    }
}

// act_bwd_drop that also writes the bfloat16 bits of dZ into dZh.
// sizes: ctrl[8]
extern "C" __global__ void GPUNN_NAME(act_bwd_drop_bf16)(
    const real* S, int act, const long long* ctrl, long long seed, int layer, long long offset,
    long long drop_below, real scale, real* dZ, unsigned short* dZh, long long n) {
    unsigned long long key = gpunn_dropout_key(seed, layer, ctrl[GPUNN_CTRL_T]);
    GPUNN_GRID_STRIDE(i, n) {
        real m = gpunn_dropout_factor(key, offset + i, drop_below, scale);
        real d = dZ[i] * m * gpunn_activation_grad(S[i], act);
        dZ[i] = d;
        dZh[i] = gpunn_bf16_bits((float)d);
    }
}
