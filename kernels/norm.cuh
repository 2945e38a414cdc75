// Per-row LayerNorm statistics, shared by the forward kernels in norm.cu.
#pragma once

// sqrt in the argument's own type, as NVRTC's float overload and the Numba twin take it.
__host__ __device__ inline float gpunn_sqrt(float x) { return sqrtf(x); }
__host__ __device__ inline double gpunn_sqrt(double x) { return sqrt(x); }

// The sum of term(0) .. term(n - 1) in 8 interleaved partial sums: lane k adds term(k),
// term(k + 8), ... in order, then the lanes are added pairwise, ((0 + 1) + (2 + 3)) + ((4 + 5) +
// (6 + 7)). Eight independent chains instead of one: a GPU thread (one per row) gets the
// instruction-level parallelism, a CPU adds them side by side. The Numba twins (norm.py,
// lane_sum) add in the same order, so they give the host build's bits.
template <typename Term>
__host__ __device__ inline real gpunn_lane_sum(long long n, Term term) {
    real s[8] = {real(0), real(0), real(0), real(0), real(0), real(0), real(0), real(0)};
    long long j = 0;
    for (; j + 8 <= n; j += 8) {
        for (int k = 0; k < 8; ++k) {
            s[k] += term(j + k);
        }
    }
    for (int k = 0; k < 8; ++k) {  // a fixed count, unrolled: s stays in registers
        if (j + k < n) {
            s[k] += term(j + k);
        }
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// Mean and rstd of one row, two passes (the variance from deviations: no cancellation).
__host__ __device__ inline void gpunn_row_stats(const real* x, long long n_cols, real eps,
                                                real* mu, real* r) {
    real m = gpunn_lane_sum(n_cols, [&](long long j) { return x[j]; }) / (real)n_cols;
    real q = gpunn_lane_sum(n_cols, [&](long long j) {
        real d = x[j] - m;
        return d * d;
    });
    *mu = m;
    *r = real(1) / gpunn_sqrt(q / (real)n_cols + eps);
}
