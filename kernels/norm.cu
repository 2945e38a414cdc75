// LayerNorm (forward, backward, parameter gradients) and the residual connection of a Dense
// layer with norm="layer" and/or residual=True: A = [A_prev +] f(LN(A_prev) @ W + b).
// LayerNorm normalizes each row of X (rows, n_cols): mean and biased variance over the row,
// Y = (x - mean) * rstd * gamma + beta, rstd = 1 / sqrt(var + eps) (PyTorch's nn.LayerNorm).
// The statistics are kept in `real` (float32 for float32 and bf16 models: never bfloat16).
// Row kernels take one thread per row, as softmax_xent: a row is one layer's width.
#include "common.cuh"
#include "activations.cuh"
#include "precision.cuh"
#include "counter_rng.cuh"
#include "step.cuh"
#include "norm.cuh"

// Y = LN(X) * gamma + beta; mean and rstd of each row kept for the backward.
// sizes: gamma[n_cols] beta[n_cols] mean[n / n_cols] rstd[n / n_cols]
extern "C" __global__ void GPUNN_NAME(layernorm_fwd)(
    const real* X, const real* gamma, const real* beta, long long n_cols, real eps, real* mean,
    real* rstd, real* Y, long long n) {
    GPUNN_GRID_STRIDE(row, n / n_cols) {
        const real* x = X + row * n_cols;
        real* y = Y + row * n_cols;
        real mu, r;
        gpunn_row_stats(x, n_cols, eps, &mu, &r);
        mean[row] = mu;
        rstd[row] = r;
        for (long long j = 0; j < n_cols; ++j) {
            y[j] = (x[j] - mu) * r * gamma[j] + beta[j];
        }
    }
}

// layernorm_fwd writing only the bfloat16 bits of Y (the GEMM's input in precision "bf16");
// the statistics stay float32, from the float32 X.
// sizes: gamma[n_cols] beta[n_cols] mean[n / n_cols] rstd[n / n_cols]
extern "C" __global__ void GPUNN_NAME(layernorm_fwd_bf16)(
    const real* X, const real* gamma, const real* beta, long long n_cols, real eps, real* mean,
    real* rstd, unsigned short* Yh, long long n) {
    GPUNN_GRID_STRIDE(row, n / n_cols) {
        const real* x = X + row * n_cols;
        unsigned short* y = Yh + row * n_cols;
        real mu, r;
        gpunn_row_stats(x, n_cols, eps, &mu, &r);
        mean[row] = mu;
        rstd[row] = r;
        for (long long j = 0; j < n_cols; ++j) {
            y[j] = gpunn_bf16_bits((float)((x[j] - mu) * r * gamma[j] + beta[j]));
        }
    }
}

// dX = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dY * gamma, xhat = (x - mean) * rstd;
// with residual != 0, dX += dR (the gradient that skips the block).
// sizes: gamma[n_cols] mean[n / n_cols] rstd[n / n_cols]
extern "C" __global__ void GPUNN_NAME(layernorm_bwd)(
    const real* X, const real* gamma, const real* mean, const real* rstd, const real* dY,
    const real* dR, long long n_cols, int residual, real* dX, long long n) {
    GPUNN_GRID_STRIDE(row, n / n_cols) {
        long long start = row * n_cols;
        real mu = mean[row], r = rstd[row];
        // Row sums in norm.cuh's lane order (gpunn_lane_sum), as the Numba twin adds them.
        real a = gpunn_lane_sum(n_cols, [&](long long j) { return dY[start + j] * gamma[j]; });
        real c = gpunn_lane_sum(n_cols, [&](long long j) {
            return dY[start + j] * gamma[j] * ((X[start + j] - mu) * r);
        });
        a = a / (real)n_cols;
        c = c / (real)n_cols;
        for (long long j = 0; j < n_cols; ++j) {
            real g = dY[start + j] * gamma[j];
            real v = r * (g - a - ((X[start + j] - mu) * r) * c);
            dX[start + j] = residual ? v + dR[start + j] : v;
        }
    }
}

// dgamma[j] = sum over rows of dY * xhat, dbeta[j] = sum of dY: one thread per column
// (coalesced on row-major data), rows in order.
// sizes: X[n_rows * n] mean[n_rows] rstd[n_rows] dY[n_rows * n]
extern "C" __global__ void GPUNN_NAME(layernorm_bwd_params)(
    const real* X, const real* mean, const real* rstd, const real* dY, long long n_rows,
    real* dgamma, real* dbeta, long long n) {
    GPUNN_GRID_STRIDE(j, n) {
        real g = real(0), s = real(0);
        for (long long row = 0; row < n_rows; ++row) {
            real d = dY[row * n + j];
            g += d * ((X[row * n + j] - mean[row]) * rstd[row]);
            s += d;
        }
        dgamma[j] = g;
        dbeta[j] = s;
    }
}

// A = R + f(Z + b); Z keeps what act_bwd reads: z for the activations from ACT_FROM_Z_BEGIN
// on, f(z) for the others.
// sizes: b[n_cols]
extern "C" __global__ void GPUNN_NAME(bias_act_residual)(
    const real* b, const real* R, long long n_cols, int act, real* Z, real* A, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real z = Z[i] + b[i % n_cols];
        real f = gpunn_activate(z, act);
        Z[i] = act >= ACT_FROM_Z_BEGIN ? z : f;
        A[i] = R[i] + f;
    }
}

// bias_act_residual that also writes the bfloat16 bits of A into Ah (float32 only).
// sizes: b[n_cols]
extern "C" __global__ void GPUNN_NAME(bias_act_residual_bf16)(
    const real* b, const real* R, long long n_cols, int act, real* Z, real* A,
    unsigned short* Ah, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real z = Z[i] + b[i % n_cols];
        real f = gpunn_activate(z, act);
        real a = R[i] + f;
        Z[i] = act >= ACT_FROM_Z_BEGIN ? z : f;
        A[i] = a;
        Ah[i] = gpunn_bf16_bits((float)a);
    }
}

// dZ = dA * f'(S), S as bias_act_residual keeps it: act_bwd into another array, because the
// residual connection passes dA itself on too.
extern "C" __global__ void GPUNN_NAME(residual_act_bwd)(
    const real* S, const real* dA, int act, real* dZ, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        dZ[i] = dA[i] * gpunn_activation_grad(S[i], act);
    }
}

// residual_act_bwd that also writes the bfloat16 bits of dZ into dZh (float32 only).
extern "C" __global__ void GPUNN_NAME(residual_act_bwd_bf16)(
    const real* S, const real* dA, int act, real* dZ, unsigned short* dZh, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real d = dA[i] * gpunn_activation_grad(S[i], act);
        dZ[i] = d;
        dZh[i] = gpunn_bf16_bits((float)d);
    }
}

// A = R + f(Z + b) * m: dropout on the residual branch before the add (PyTorch's
// x + dropout(f(...)) in a pre-norm block), m = scale where the mask of (seed, layer, ctrl[T],
// offset + i) keeps the element, else 0, as bias_act_fwd_drop draws it; Z keeps what
// residual_act_bwd_drop reads, as bias_act_residual.
// sizes: b[n_cols] ctrl[8]
extern "C" __global__ void GPUNN_NAME(bias_act_residual_drop)(
    const real* b, const real* R, long long n_cols, int act, const long long* ctrl,
    long long seed, int layer, long long offset, long long drop_below, real scale, real* Z,
    real* A, long long n) {
    unsigned long long key = gpunn_dropout_key(seed, layer, ctrl[GPUNN_CTRL_T]);
    GPUNN_GRID_STRIDE(i, n) {
        real z = Z[i] + b[i % n_cols];
        real f = gpunn_activate(z, act);
        Z[i] = act >= ACT_FROM_Z_BEGIN ? z : f;
        A[i] = R[i] + f * gpunn_dropout_factor(key, offset + i, drop_below, scale);
    }
}

// bias_act_residual_drop that also writes the bfloat16 bits of A into Ah (float32 only).
// sizes: b[n_cols] ctrl[8]
extern "C" __global__ void GPUNN_NAME(bias_act_residual_drop_bf16)(
    const real* b, const real* R, long long n_cols, int act, const long long* ctrl,
    long long seed, int layer, long long offset, long long drop_below, real scale, real* Z,
    real* A, unsigned short* Ah, long long n) {
    unsigned long long key = gpunn_dropout_key(seed, layer, ctrl[GPUNN_CTRL_T]);
    GPUNN_GRID_STRIDE(i, n) {
        real z = Z[i] + b[i % n_cols];
        real f = gpunn_activate(z, act);
        real a = R[i] + f * gpunn_dropout_factor(key, offset + i, drop_below, scale);
        Z[i] = act >= ACT_FROM_Z_BEGIN ? z : f;
        A[i] = a;
        Ah[i] = gpunn_bf16_bits((float)a);
    }
}

// The branch's backward of bias_act_residual_drop: dZ = (dA * m) * f'(S), the mask recomputed;
// dA kept (the residual connection passes it on).
// sizes: ctrl[8]
extern "C" __global__ void GPUNN_NAME(residual_act_bwd_drop)(
    const real* S, const real* dA, int act, const long long* ctrl, long long seed, int layer,
    long long offset, long long drop_below, real scale, real* dZ, long long n) {
    unsigned long long key = gpunn_dropout_key(seed, layer, ctrl[GPUNN_CTRL_T]);
    GPUNN_GRID_STRIDE(i, n) {
        real m = gpunn_dropout_factor(key, offset + i, drop_below, scale);
        dZ[i] = dA[i] * m * gpunn_activation_grad(S[i], act);
    }
}

// residual_act_bwd_drop that also writes the bfloat16 bits of dZ into dZh (float32 only).
// sizes: ctrl[8]
extern "C" __global__ void GPUNN_NAME(residual_act_bwd_drop_bf16)(
    const real* S, const real* dA, int act, const long long* ctrl, long long seed, int layer,
    long long offset, long long drop_below, real scale, real* dZ, unsigned short* dZh,
    long long n) {
    unsigned long long key = gpunn_dropout_key(seed, layer, ctrl[GPUNN_CTRL_T]);
    GPUNN_GRID_STRIDE(i, n) {
        real m = gpunn_dropout_factor(key, offset + i, drop_below, scale);
        real d = dA[i] * m * gpunn_activation_grad(S[i], act);
        dZ[i] = d;
        dZh[i] = gpunn_bf16_bits((float)d);
    }
}

// C = A + B: a residual layer without LayerNorm joins its two input gradients.
extern "C" __global__ void GPUNN_NAME(residual_add)(
    const real* A, const real* B, real* C, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        C[i] = A[i] + B[i];
    }
}
