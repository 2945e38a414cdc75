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

// Softmax + cross-entropy for integer labels (stored as reals), one thread per row:
// E = exp(z - rowmax) into dZ, rowsum = sum(E); loss[row] = log(rowsum) - (z_y - rowmax);
// dZ = (E / rowsum - [j == y]) * scale. The loss uses z_y - lse as (z_y - rowmax) - log(rowsum):
// rounding lse = rowmax + log(rowsum) itself would cost ulp(rowmax), e.g. 1e-3 at 1e4.
// sizes: labels[n / n_cols] loss[n / n_cols]
extern "C" __global__ void GPUNN_NAME(softmax_xent)(
    const real* Z, const real* labels, long long n_cols, real scale, real* loss, real* dZ,
    long long n) {
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
        for (long long j = 0; j < n_cols; ++j) {
            e[j] = (e[j] * inv - (j == label ? real(1) : real(0))) * scale;
        }
        real z_label = (label >= 0 && label < n_cols) ? z[label] : rowmax;
        loss[row] = log(rowsum) - (z_label - rowmax);
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
