// Gradient clipping over the flat gradient buffer, launched by the optimizer just before its
// fused update (gpunn.optim.clip): by global norm (PyTorch's clip_grad_norm_, optax's
// clip_by_global_norm) and by value (clip_grad_value_, optax's clip).
//
// The global norm is a reduction of a fixed shape, in three launches of sum_partials: the
// squares of g into P1 partial sums, those into P2, those into one (P1 and P2 depend on n
// only: gpunn.optim.clip.partials). Thread j sums x[j], x[j + P], x[j + 2P], ... in that
// order (coalesced on the GPU), in double, and stores its sum in the dtype; no thread reads
// another's result within a launch, so the host build is a faithful emulation and every
// backend adds the same numbers in the same order. In float32 a square is exact in double, so
// an FMA (NVRTC contracts) rounds as the add does: the float32 norm has the same bits on the
// GPU as on the CPU.
#include "common.cuh"
#include "step.cuh"

// out[j] = sum over k of x[j + k n]^2 (square != 0) or x[j + k n] (square == 0), for k in
// order while j + k n < n_x; accumulated in double. One thread per partial sum.
// sizes: x[n_x]
extern "C" __global__ void GPUNN_NAME(sum_partials)(
    const real* x, long long n_x, int square, real* out, long long n) {
    GPUNN_GRID_STRIDE(j, n) {
        double s = 0.0;
        for (long long i = j; i < n_x; i += n) {
            double v = (double)x[i];
            s += square ? v * v : v;
        }
        out[j] = (real)s;
    }
}

// PyTorch's clip_grad_norm_: g *= min(1, max_norm / (norm + 1e-6)), norm = sqrt(sumsq[0]);
// g is left alone when the factor is 1 (multiplying by 1 changes no bit). A non-finite norm
// (a NaN/inf gradient, or squares whose sum overflows the dtype) sets ctrl[BAD] and leaves g:
// the step counts as non-finite and its update is skipped. Plain stores of 1 (a benign race).
// sizes: sumsq[1] ctrl[8]
extern "C" __global__ void GPUNN_NAME(clip_by_norm)(
    const real* sumsq, double max_norm, long long* ctrl, real* g, long long n) {
    double norm = sqrt((double)sumsq[0]);
    if (!isfinite(norm)) {
        ctrl[GPUNN_CTRL_BAD] = 1;
        return;
    }
    double factor = max_norm / (norm + 1e-6);
    if (factor >= 1.0) {
        return;
    }
    real s = (real)factor;
    GPUNN_GRID_STRIDE(i, n) {
        g[i] = g[i] * s;
    }
}

// PyTorch's clip_grad_value_: g = clamp(g, -max_value, max_value); NaN stays NaN (the
// comparisons are false for it), so the non-finite check still sees it.
extern "C" __global__ void GPUNN_NAME(clip_by_value)(real max_value, real* g, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real x = g[i];
        g[i] = x > max_value ? max_value : (x < -max_value ? -max_value : x);
    }
}
