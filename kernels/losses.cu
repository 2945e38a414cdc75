// Output-layer losses: per-element loss terms and dL/dZ in one pass, each row weighted.
// W holds one weight per row (ones when unweighted; with sample or class weights, the weights
// rescaled by the host to mean 1 over each batch, see gpunn.weights), so the terms are w * l
// and dZ is w * dl/dz * scale. scale is the factor of the mean (1 / batch, or 1 / elements for
// MSE), so dZ is the gradient of the (weighted) mean loss and sum(loss) * scale is its value.
#include "common.cuh"
#include "losses.cuh"

// Sigmoid + binary cross-entropy from logits.
// sizes: W[n / n_cols]
extern "C" __global__ void GPUNN_NAME(bce_logits)(
    const real* Z, const real* Y, const real* W, long long n_cols, real scale, real* loss,
    real* dZ, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real z = Z[i];
        real w = W[i / n_cols];
        loss[i] = w * gpunn_bce_logits(z, Y[i]);
        dZ[i] = w * (gpunn_sigmoid(z) - Y[i]) * scale;
    }
}

// Softmax + cross-entropy for integer labels (stored as reals), one thread per row:
// E = exp(z - rowmax) into dZ, rowsum = sum(E); loss[row] = w (log(rowsum) - (z_y - rowmax));
// dZ = w (E / rowsum - [j == y]) * scale. The loss uses z_y - lse as (z_y - rowmax) - log(rowsum):
// rounding lse = rowmax + log(rowsum) itself would cost ulp(rowmax), e.g. 1e-3 at 1e4.
// sizes: labels[n / n_cols] W[n / n_cols] loss[n / n_cols]
extern "C" __global__ void GPUNN_NAME(softmax_xent)(
    const real* Z, const real* labels, const real* W, long long n_cols, real scale, real* loss,
    real* dZ, long long n) {
    GPUNN_GRID_STRIDE(row, n / n_cols) {
        const real* z = Z + row * n_cols;
        real* e = dZ + row * n_cols;
        real rowmax = z[0];
        for (long long j = 1; j < n_cols; ++j) {
            rowmax = z[j] > rowmax ? z[j] : rowmax;
        }
        real rowsum = real(0);
        for (long long j = 0; j < n_cols; ++j) {
            e[j] = exp(z[j] - rowmax);
            rowsum += e[j];
        }
        long long label = (long long)labels[row];
        real inv = real(1) / rowsum;
        real w = W[row];
        for (long long j = 0; j < n_cols; ++j) {
            e[j] = w * (e[j] * inv - (j == label ? real(1) : real(0))) * scale;
        }
        real z_label = (label >= 0 && label < n_cols) ? z[label] : rowmax;
        loss[row] = w * (log(rowsum) - (z_label - rowmax));
    }
}

// Mean squared error: loss = w (z - y)^2, dZ = w 2 (z - y) * scale.
// sizes: W[n / n_cols]
extern "C" __global__ void GPUNN_NAME(mse)(
    const real* Z, const real* Y, const real* W, long long n_cols, real scale, real* loss,
    real* dZ, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        real d = Z[i] - Y[i];
        real w = W[i / n_cols];
        loss[i] = w * (d * d);
        dZ[i] = w * (real(2) * d) * scale;
    }
}
