// The training step's own kernels: gather a batch, flag non-finite values, close the step.
// They read the step index from the device control array (step.cuh), so one recorded step
// (a CUDA graph on a GPU) serves every batch of an epoch.
#include "common.cuh"
#include "precision.cuh"
#include "step.cuh"

// The index in src of out[i] for the gather kernels below (position p = first + i / n_cols,
// its row order[p % n_order], column i % n_cols), or -1 where out[i] is left alone: from
// n_pos on, or a row outside src.
__device__ inline long long gpunn_gather_source(
    const long long* order, long long first, long long n_src, long long n_order,
    long long n_pos, long long n_cols, long long i) {
    long long pos = first + i / n_cols;
    if (pos >= n_pos || n_order <= 0) {
        return -1;
    }
    long long row = order[pos < n_order ? pos : pos % n_order];  // in memory: no %
    long long at = row * n_cols + i % n_cols;
    return row >= 0 && at < n_src ? at : -1;
}

// out[i] = src[order[p % n_order] * n_cols + j], p = ctrl[K] * stride + offset + r,
// r = i / n_cols, j = i % n_cols: the rows of this step's batch (or of this rank's shard of
// it). Positions from n_pos on are left alone (the host sizes batches so there are none). The
// order wraps: a streamed epoch (gpunn/staging.py) gathers stream position p from ring row
// p % ring_rows through an order of ring_rows entries, whatever the epoch's length.
// sizes: src[n_src] order[n_order] ctrl[8]
extern "C" __global__ void GPUNN_NAME(gather_rows)(
    const real* src, const long long* order, const long long* ctrl, long long n_src,
    long long n_order, long long n_pos, long long stride, long long offset, long long n_cols,
    real* out, long long n) {
    long long first = ctrl[GPUNN_CTRL_K] * stride + offset;
    GPUNN_GRID_STRIDE(i, n) {
        long long at = gpunn_gather_source(order, first, n_src, n_order, n_pos, n_cols, i);
        if (at >= 0) {
            out[i] = src[at];
        }
    }
}

// gather_rows, and the same rows rounded to bfloat16 bits into half (precision "bf16": the
// first GEMM's operand written by the kernel that produces the batch, not by a round_bf16
// pass over it). A float32 kernel only (see precision.cu).
// sizes: src[n_src] order[n_order] ctrl[8]
extern "C" __global__ void GPUNN_NAME(gather_rows_bf16)(
    const real* src, const long long* order, const long long* ctrl, long long n_src,
    long long n_order, long long n_pos, long long stride, long long offset, long long n_cols,
    real* out, unsigned short* half, long long n) {
    long long first = ctrl[GPUNN_CTRL_K] * stride + offset;
    GPUNN_GRID_STRIDE(i, n) {
        long long at = gpunn_gather_source(order, first, n_src, n_order, n_pos, n_cols, i);
        if (at >= 0) {
            real x = src[at];
            out[i] = x;
            half[i] = gpunn_bf16_bits((float)x);
        }
    }
}

// ctrl[BAD] = 1 when the loss total or any gradient entry is NaN or inf. Plain stores of 1:
// a benign race, every writer writes the same value.
// sizes: total[1] ctrl[8]
extern "C" __global__ void GPUNN_NAME(nonfinite_check)(
    const real* total, const real* g, long long* ctrl, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        if (!isfinite(g[i]) || (i == 0 && !isfinite(total[0]))) {
            ctrl[GPUNN_CTRL_BAD] = 1;
        }
    }
}

// One thread closes the step: records its loss total and status at record[k] and
// record[n_steps + k], counts an applied update, halts on a non-finite update (or on a
// non-finite loss or gradient when halt_on_nonfinite), clears the step's flags, k += 1.
// sizes: ctrl[8] record[n_steps * 2]
extern "C" __global__ void GPUNN_NAME(step_end)(
    const real* total, long long n_steps, int halt_on_nonfinite, long long* ctrl, real* record,
    long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        if (i != 0) {
            continue;
        }
        long long k = ctrl[GPUNN_CTRL_K];
        int status = ctrl[GPUNN_CTRL_HALT] ? GPUNN_STEP_HALTED
                     : ctrl[GPUNN_CTRL_BAD] ? GPUNN_STEP_NONFINITE
                     : ctrl[GPUNN_CTRL_BAD_UPDATE] ? GPUNN_STEP_BAD_UPDATE
                     : GPUNN_STEP_APPLIED;
        if (k >= 0 && k < n_steps) {
            record[k] = total[0];
            record[n_steps + k] = real(status);
        }
        if (status == GPUNN_STEP_APPLIED || status == GPUNN_STEP_BAD_UPDATE) {
            ctrl[GPUNN_CTRL_T] += 1;
        }
        if (status == GPUNN_STEP_BAD_UPDATE ||
            (status == GPUNN_STEP_NONFINITE && halt_on_nonfinite)) {
            ctrl[GPUNN_CTRL_HALT] = 1;
        }
        ctrl[GPUNN_CTRL_BAD] = 0;
        ctrl[GPUNN_CTRL_BAD_UPDATE] = 0;
        ctrl[GPUNN_CTRL_K] = k + 1;
    }
}
