// Optimizer updates over the flat parameter buffer: one launch updates the whole model.
// Order: gradient, the per-step learning-rate table, host scalars, the control array (step.cuh),
// then the arrays updated in place (parameters, state), then w.
//
// w: the bfloat16 working copy of the parameters (precision "bf16", float32 only), written in
// the same pass as the float32 master p (chainer's use_fp32_update, optax's mu_dtype), so the
// GEMMs of the next step read the new weights without another pass over them. working = 1
// writes it (w has n elements); working = 0 leaves it (w is empty).
//
// Per step everything comes from the device, so a recorded step stays valid: lr = lrs[k] with
// k = ctrl[K] (the host computes the schedule), t = ctrl[T] + 1 (updates applied so far + 1;
// bias corrections are computed from it here, in double). An update does nothing when
// ctrl[BAD] or ctrl[HALT] is set (a non-finite loss or gradient, or training halted).
//
// Finite or held: an element whose new parameter or new optimizer state would be NaN or inf
// (an overflowing learning rate, or a finite gradient whose square does not fit the dtype in
// Adam's or RMSprop's v) keeps all its previous values, and ctrl[BAD_UPDATE] is set (training
// then stops). Parameters and state are never written non-finite, so a checkpoint of them
// always loads.
//
// Flushed state: optimizer state below the dtype's smallest normal number is stored as 0.
// Adam's m and v of a parameter whose gradient stays 0 (a dead relu unit, a pixel that is
// always 0) decay into the subnormal range and stay there (0.9 m rounds back to m for the
// smallest subnormals), and every update then computes on subnormals, many times slower on
// CPUs. Flushed here by the same select on every backend, not by the CPU's FTZ/DAZ modes (the
// GPU build keeps subnormals, -ftz=false, so the backends still agree bit for bit). What it
// changes: a flushed m moves a parameter by at most step_size * FLT_MIN / eps; a flushed v
// changes a denominator sqrt(v) + eps by at most sqrt(FLT_MIN) ~ 1.1e-19, below half an ulp
// of eps for eps > 2e-12 (float32); the same bounds, with DBL_MIN, for float64.
#include "common.cuh"
#include "step.cuh"
#include "precision.cuh"

// The dtype's smallest normal number (FLT_MIN, DBL_MIN), without <cfloat> for NVRTC.
__device__ __host__ inline float gpunn_min_normal(float) { return 1.17549435082228750797e-38f; }
__device__ __host__ inline double gpunn_min_normal(double) { return 2.2250738585072014e-308; }

// x, or 0 where x is subnormal (NaN and inf stay: the comparison is false for them).
__device__ __host__ inline real gpunn_flush(real x) {
    return fabs(x) < gpunn_min_normal(x) ? real(0) : x;
}

// The learning rate of this step (0 past the table's end: no update).
__device__ __host__ inline real gpunn_step_lr(const real* lrs, long long n_lrs,
                                              const long long* ctrl) {
    long long k = ctrl[GPUNN_CTRL_K];
    return (k >= 0 && k < n_lrs) ? lrs[k] : real(0);
}

// PyTorch SGD: d = g + wd p; buf = first ? d : momentum buf + (1 - dampening) d;
// d = nesterov ? d + momentum buf : buf (when momentum != 0); p -= lr d. first: t == 1.
// sizes: lrs[n_lrs] ctrl[8] w[n * working]
extern "C" __global__ void GPUNN_NAME(sgd_step)(
    const real* g, const real* lrs, long long n_lrs, real momentum, real dampening,
    real weight_decay, int nesterov, long long working, long long* ctrl, real* p, real* buf,
    unsigned short* w, long long n) {
    if (GPUNN_UPDATE_SKIPPED(ctrl)) {
        return;
    }
    real lr = gpunn_step_lr(lrs, n_lrs, ctrl);
    int first = ctrl[GPUNN_CTRL_T] == 0;
    GPUNN_GRID_STRIDE(i, n) {
        real d = g[i] + weight_decay * p[i];
        real b = real(0);
        if (momentum != real(0)) {
            b = gpunn_flush(first ? d : momentum * buf[i] + (real(1) - dampening) * d);
            d = nesterov ? d + momentum * b : b;
        }
        real pi = p[i] - lr * d;
        if (isfinite(pi) && isfinite(b)) {
            p[i] = pi;
            if (momentum != real(0)) {
                buf[i] = b;
            }
        } else {
            pi = p[i];  // held: the working copy below stays that of the kept parameter
            ctrl[GPUNN_CTRL_BAD_UPDATE] = 1;
        }
        if (working) {
            w[i] = gpunn_bf16_bits((float)pi);
        }
    }
}

// The course's momentum, an exponentially weighted average of gradients:
// v = beta v + (1 - beta) g; p -= lr * v * correction, correction = 1 / (1 - beta^t) when
// bias_correction, else 1.
// sizes: lrs[n_lrs] ctrl[8] w[n * working]
extern "C" __global__ void GPUNN_NAME(momentum_step)(
    const real* g, const real* lrs, long long n_lrs, double beta, int bias_correction,
    long long working, long long* ctrl, real* p, real* v, unsigned short* w, long long n) {
    if (GPUNN_UPDATE_SKIPPED(ctrl)) {
        return;
    }
    double t = double(ctrl[GPUNN_CTRL_T] + 1);
    real scale = real(double(gpunn_step_lr(lrs, n_lrs, ctrl))
                      * (bias_correction ? 1.0 / (1.0 - pow(beta, t)) : 1.0));
    real b = real(beta);
    GPUNN_GRID_STRIDE(i, n) {
        real vi = gpunn_flush(b * v[i] + (real(1) - b) * g[i]);
        real pi = p[i] - scale * vi;
        if (isfinite(pi) && isfinite(vi)) {
            v[i] = vi;
            p[i] = pi;
        } else {
            pi = p[i];  // held: the working copy below stays that of the kept parameter
            ctrl[GPUNN_CTRL_BAD_UPDATE] = 1;
        }
        if (working) {
            w[i] = gpunn_bf16_bits((float)pi);
        }
    }
}

// PyTorch RMSprop: d = g + wd p; v = alpha v + (1 - alpha) d^2;
// p -= lr d / (sqrt(v) + eps), or lr d / sqrt(v + eps) when eps_in_sqrt (Keras, the course).
// sizes: lrs[n_lrs] ctrl[8] w[n * working]
extern "C" __global__ void GPUNN_NAME(rmsprop_step)(
    const real* g, const real* lrs, long long n_lrs, real alpha, real eps, real weight_decay,
    int eps_in_sqrt, long long working, long long* ctrl, real* p, real* v, unsigned short* w,
    long long n) {
    if (GPUNN_UPDATE_SKIPPED(ctrl)) {
        return;
    }
    real lr = gpunn_step_lr(lrs, n_lrs, ctrl);
    GPUNN_GRID_STRIDE(i, n) {
        real d = g[i] + weight_decay * p[i];
        real vi = gpunn_flush(alpha * v[i] + (real(1) - alpha) * d * d);
        real denom = eps_in_sqrt ? sqrt(vi + eps) : sqrt(vi) + eps;
        real pi = p[i] - lr * (d / denom);  // d / denom first: lr d underflows for tiny d
        if (isfinite(pi) && isfinite(vi)) {
            v[i] = vi;
            p[i] = pi;
        } else {
            pi = p[i];  // held: the working copy below stays that of the kept parameter
            ctrl[GPUNN_CTRL_BAD_UPDATE] = 1;
        }
        if (working) {
            w[i] = gpunn_bf16_bits((float)pi);
        }
    }
}

// Adam / AdamW as in PyTorch (Kingma & Ba, Algorithm 1):
// p *= 1 - lr decoupled_wd (AdamW); d = g + weight_decay p (Adam's L2);
// m = b1 m + (1 - b1) d; v = b2 v + (1 - b2) d^2;
// p -= step_size m / (sqrt(v) / sqrt(bc2) + eps), step_size = lr / (1 - b1^t), bc2 = 1 - b2^t;
// eps_in_sqrt: p -= step_size m / sqrt(v / bc2 + eps) (the course's form).
// sizes: lrs[n_lrs] ctrl[8] w[n * working]
extern "C" __global__ void GPUNN_NAME(adam_step)(
    const real* g, const real* lrs, long long n_lrs, double beta1, double beta2, real eps,
    real weight_decay, real decoupled_wd, int eps_in_sqrt, long long working, long long* ctrl,
    real* p, real* m, real* v, unsigned short* w, long long n) {
    if (GPUNN_UPDATE_SKIPPED(ctrl)) {
        return;
    }
    double t = double(ctrl[GPUNN_CTRL_T] + 1);
    double lr = double(gpunn_step_lr(lrs, n_lrs, ctrl));
    real step_size = real(lr / (1.0 - pow(beta1, t)));
    real bc2 = real(1.0 - pow(beta2, t));
    real keep_p = real(1) - real(lr * double(decoupled_wd));
    real bc2_sqrt = sqrt(bc2);
    real b1 = real(beta1), b2 = real(beta2);
    GPUNN_GRID_STRIDE(i, n) {
        real pi = p[i] * keep_p;
        real d = g[i] + weight_decay * pi;
        real mi = gpunn_flush(b1 * m[i] + (real(1) - b1) * d);
        real vi = gpunn_flush(b2 * v[i] + (real(1) - b2) * d * d);
        real denom = eps_in_sqrt ? sqrt(vi / bc2 + eps) : sqrt(vi) / bc2_sqrt + eps;
        pi = pi - step_size * mi / denom;
        if (isfinite(pi) && isfinite(mi) && isfinite(vi)) {
            m[i] = mi;
            v[i] = vi;
            p[i] = pi;
        } else {
            pi = p[i];  // held: the working copy below stays that of the kept parameter
            ctrl[GPUNN_CTRL_BAD_UPDATE] = 1;
        }
        if (working) {
            w[i] = gpunn_bf16_bits((float)pi);
        }
    }
}

// a += s * b: the plain gradient step (s = -lr) and the in-place stream the benchmarks take as
// this device's bandwidth ceiling for the updates above (12 bytes per element).
extern "C" __global__ void GPUNN_NAME(axpy)(const real* b, real s, real* a, long long n) {
    GPUNN_GRID_STRIDE(i, n) {
        a[i] += s * b[i];
    }
}
