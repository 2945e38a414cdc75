// Per-element loss math, shared by the kernels in losses.cu.
#pragma once
#include "activations.cuh"

// Binary cross-entropy of sigmoid(z) against y, from the logit z:
// max(z, 0) - z*y + log1p(exp(-|z|)); finite for any finite z.
template <typename T>
__host__ __device__ inline T gpunn_bce_logits(T z, T y) {
    T pos = z > T(0) ? z : T(0);
    return pos - z * y + log1p(exp(-fabs(z)));
}
