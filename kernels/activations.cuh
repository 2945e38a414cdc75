// Per-element activation math, shared by the kernels in activations.cu.
// Every `#define GPUNN_<NAME> <code>` in this file is an activation: the host reads the names
// and codes from here (gpunn.kernels.activation_codes), so no other file lists them.
#pragma once

#define GPUNN_IDENTITY 0
#define GPUNN_SIGMOID 1
#define GPUNN_RELU 2
#define GPUNN_TANH 3
#define GPUNN_LEAKY_RELU 4
#define GPUNN_GELU 5
#define GPUNN_GELU_TANH 6
#define GPUNN_SILU 7

// Codes from ACT_FROM_Z_BEGIN on are activations not invertible from their output (gelu, silu
// have a minimum): their f' is taken from the pre-activation z, which a layer of one keeps
// (bias_act_fwd_keep). The host reads this line too (gpunn.kernels.from_z_activations).
#define ACT_FROM_Z_BEGIN 5

// leaky_relu's slope for z < 0: PyTorch's nn.LeakyReLU default (negative_slope=0.01).
template <typename T>
__host__ __device__ inline T gpunn_leaky_slope() {
    return T(0.01);
}

// Two-branch stable sigmoid: exp never overflows, finite for any finite x.
template <typename T>
__host__ __device__ inline T gpunn_sigmoid(T x) {
    if (x >= T(0)) {
        return T(1) / (T(1) + exp(-x));
    }
    T e = exp(x);
    return e / (T(1) + e);
}

// gelu_tanh's 2u = 2 sqrt(2/pi) (z + 0.044715 z^3), so that 0.5 (1 + tanh(u)) = sigmoid(2u):
// no cancellation in 1 + tanh(u) for z < 0. Its derivative d(2u)/dz is gpunn_gelu_tanh_du.
template <typename T>
__host__ __device__ inline T gpunn_gelu_tanh_2u(T z) {
    return T(1.5957691216057308) * (z + T(0.044715) * z * z * z);
}

template <typename T>
__host__ __device__ inline T gpunn_gelu_tanh_du(T z) {
    return T(1.5957691216057308) * (T(1) + T(0.134145) * z * z);
}

// gelu (erf form) 0.5 z (1 + erf(z / sqrt 2)) as 0.5 z erfc(-z / sqrt 2): no cancellation for
// z < 0, where 1 + erf is tiny.
template <typename T>
__host__ __device__ inline T gpunn_gelu(T z) {
    return T(0.5) * z * erfc(T(-0.7071067811865476) * z);
}

// Derivatives from z. gelu's Phi(z) + z phi(z): for huge |z|, z z is inf and exp(-inf) = 0,
// so z phi(z) is 0, never inf * 0.
template <typename T>
__host__ __device__ inline T gpunn_gelu_grad(T z) {
    return T(0.5) * erfc(T(-0.7071067811865476) * z)
        + z * T(0.3989422804014327) * exp(T(-0.5) * z * z);
}

// gelu_tanh's: past |z| = 30 it is 1, or below 1e-800 (0 in float64), to the last bit, and
// z (dU/dz) sigmoid(-2u) could be inf * 0 for huge |z|, so those are returned as such.
template <typename T>
__host__ __device__ inline T gpunn_gelu_tanh_grad(T z) {
    if (fabs(z) > T(30)) {
        return z > T(0) ? T(1) : T(0);
    }
    T u2 = gpunn_gelu_tanh_2u(z);
    return gpunn_sigmoid(u2) * (T(1) + z * gpunn_gelu_tanh_du(z) * gpunn_sigmoid(-u2));
}

// silu' = s (1 + z (1 - s)), 1 - s as sigmoid(-z): no cancellation.
template <typename T>
__host__ __device__ inline T gpunn_silu_grad(T z) {
    return gpunn_sigmoid(z) * (T(1) + z * gpunn_sigmoid(-z));
}

template <typename T>
__host__ __device__ inline T gpunn_activate(T x, int act) {
    switch (act) {
        case GPUNN_SIGMOID: return gpunn_sigmoid(x);
        case GPUNN_RELU: return x > T(0) ? x : T(0);
        case GPUNN_TANH: return tanh(x);
        case GPUNN_LEAKY_RELU: return x > T(0) ? x : gpunn_leaky_slope<T>() * x;
        case GPUNN_GELU: return gpunn_gelu(x);
        case GPUNN_GELU_TANH: return x * gpunn_sigmoid(gpunn_gelu_tanh_2u(x));
        case GPUNN_SILU: return x * gpunn_sigmoid(x);
        default: return x;
    }
}

// f'(z) written in terms of the activation's output a = f(z), so the backward pass needs no
// copy of the pre-activations; for codes from ACT_FROM_Z_BEGIN on, `a` is z itself. tanh:
// 1 - a^2 as (1 - a)(1 + a), which does not cancel when |a| is near 1 (1 - a is exact there).
template <typename T>
__host__ __device__ inline T gpunn_activation_grad(T a, int act) {
    switch (act) {
        case GPUNN_SIGMOID: return a * (T(1) - a);
        case GPUNN_RELU: return a > T(0) ? T(1) : T(0);
        case GPUNN_TANH: return (T(1) - a) * (T(1) + a);
        // a > 0 exactly when z > 0 (the slope is positive); z = 0 takes the slope, as torch.
        case GPUNN_LEAKY_RELU: return a > T(0) ? T(1) : gpunn_leaky_slope<T>();
        // In float64 for float32 too: each has a root (gelu's and silu's minimum), near which
        // its sum of two terms cancels, and float32 lost up to 2e-5 relative there.
        case GPUNN_GELU: return T(gpunn_gelu_grad((double)a));
        case GPUNN_GELU_TANH: return T(gpunn_gelu_tanh_grad((double)a));
        case GPUNN_SILU: return T(gpunn_silu_grad((double)a));
        default: return T(1);
    }
}
