// Per-row LayerNorm statistics, shared by the forward kernels in norm.cu.
#pragma once

// sqrt in the argument's own type, as NVRTC's float overload and the Numba twin take it.
__host__ __device__ inline float gpunn_sqrt(float x) { return sqrtf(x); }
__host__ __device__ inline double gpunn_sqrt(double x) { return sqrt(x); }

// Mean and rstd of one row, two passes (the variance from deviations: no cancellation).
__host__ __device__ inline void gpunn_row_stats(const real* x, long long n_cols, real eps,
                                                real* mu, real* r) {
    real s = real(0);
    for (long long j = 0; j < n_cols; ++j) {
        s += x[j];
    }
    real m = s / (real)n_cols;
    real q = real(0);
    for (long long j = 0; j < n_cols; ++j) {
        real d = x[j] - m;
        q += d * d;
    }
    *mu = m;
    *r = real(1) / gpunn_sqrt(q / (real)n_cols + eps);
}
