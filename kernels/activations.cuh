// Per-element activation math, shared by the kernels in activations.cu.
// Every `#define GPUNN_<NAME> <code>` in this file is an activation: the host reads the names
// and codes from here (gpunn.kernels.activation_codes), so no other file lists them.
#pragma once

#define GPUNN_IDENTITY 0
#define GPUNN_SIGMOID 1
#define GPUNN_RELU 2
#define GPUNN_TANH 3
#define GPUNN_LEAKY_RELU 4

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

template <typename T>
__host__ __device__ inline T gpunn_activate(T x, int act) {
    switch (act) {
        case GPUNN_SIGMOID: return gpunn_sigmoid(x);
        case GPUNN_RELU: return x > T(0) ? x : T(0);
        case GPUNN_TANH: return tanh(x);
        case GPUNN_LEAKY_RELU: return x > T(0) ? x : gpunn_leaky_slope<T>() * x;
        default: return x;
    }
}

// f'(z) written in terms of the activation's output a = f(z), so the
// backward pass needs no copy of the pre-activations. tanh: 1 - a^2 as (1 - a)(1 + a), which
// does not cancel when |a| is near 1 (1 - a is exact there).
template <typename T>
__host__ __device__ inline T gpunn_activation_grad(T a, int act) {
    switch (act) {
        case GPUNN_SIGMOID: return a * (T(1) - a);
        case GPUNN_RELU: return a > T(0) ? T(1) : T(0);
        case GPUNN_TANH: return (T(1) - a) * (T(1) + a);
        // a > 0 exactly when z > 0 (the slope is positive); z = 0 takes the slope, as torch.
        case GPUNN_LEAKY_RELU: return a > T(0) ? T(1) : gpunn_leaky_slope<T>();
        default: return T(1);
    }
}
