// Output-layer losses: per-element loss terms and dL/dZ in one pass.
// scale is the factor of the mean (1 / batch, or 1 / elements for MSE), so dZ is the
// gradient of the mean loss and sum(loss) * scale is its value.
#include "common.cuh"
#include "losses.cuh"

// Sigmoid + binary cross-entropy from logits.
extern "C" __global__ void GPUNN_NAME(bce_logits)(
    const real* Z, const real* Y, real scale, real* loss, real* dZ, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real z = Z[i];
        loss[i] = gpunn_bce_logits(z, Y[i]);
        dZ[i] = (gpunn_sigmoid(z) - Y[i]) * scale;
    }
}

// E[i] = exp(Z[i] - rowmax[row]): the shifted exponentials whose row sums feed softmax_xent.
// sizes: rowmax[n / n_cols]
extern "C" __global__ void GPUNN_NAME(softmax_shift_exp)(
    const real* Z, const real* rowmax, long long n_cols, real* E, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        E[i] = exp(Z[i] - rowmax[i / n_cols]);
    }
}

// Softmax + cross-entropy for integer labels, by log-sum-exp, lse = rowmax + log(rowsum):
// loss = [j == y] * (lse - z); dZ = (exp(z - lse) - [j == y]) * scale. Both use z - lse as
// (z - rowmax) - log(rowsum): rounding lse itself would cost ulp(rowmax), e.g. 1e-3 at 1e4.
// sizes: rowmax[n / n_cols] rowsum[n / n_cols] labels[n / n_cols]
extern "C" __global__ void GPUNN_NAME(softmax_xent)(
    const real* Z, const real* rowmax, const real* rowsum, const long long* labels,
    long long n_cols, real scale, real* loss, real* dZ, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        long long row = i / n_cols;
        real shifted = (Z[i] - rowmax[row]) - log(rowsum[row]);
        real hit = (i % n_cols == labels[row]) ? real(1) : real(0);
        loss[i] = -hit * shifted;
        dZ[i] = (exp(shifted) - hit) * scale;
    }
}

// Mean squared error: loss = (z - y)^2, dZ = 2 (z - y) * scale.
extern "C" __global__ void GPUNN_NAME(mse)(
    const real* Z, const real* Y, real scale, real* loss, real* dZ, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real d = Z[i] - Y[i];
        loss[i] = d * d;
        dZ[i] = real(2) * d * scale;
    }
}
