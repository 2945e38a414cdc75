// Fused bias + activation forward and the activation backward of a Dense layer.
// Arrays are flat, row-major (batch, n_cols); n is the size of the last array. Every array has
// n elements unless a '// sizes:' line right above its kernel says otherwise (the backend checks).
#include "common.cuh"
#include "activations.cuh"

// Z[i] = f(Z[i] + b[i % n_cols]), in place.
// sizes: b[n_cols]
extern "C" __global__ void GPUNN_NAME(bias_act_fwd)(
    const real* b, long long n_cols, int act, real* Z, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        Z[i] = gpunn_activate(Z[i] + b[i % n_cols], act);
    }
}

// dZ[i] = dA[i] * f'(z_i) with f' taken from the layer output A; dZ holds dA on entry.
extern "C" __global__ void GPUNN_NAME(act_bwd)(const real* A, int act, real* dZ, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        dZ[i] *= gpunn_activation_grad(A[i], act);
    }
}
