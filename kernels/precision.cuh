// Per-element rounding to the GEMM input formats of the mixed-precision modes, on the float32
// bit pattern, so the host build, NVRTC and the Numba twins (kernels/precision.py) agree bit
// for bit. Round to nearest, ties to even, as __float2bfloat16_rn and cvt.rn do: overflow goes
// to inf, inf stays inf, NaN stays NaN with the quiet bit set, subnormals round like normals.
#pragma once

#ifdef __CUDA_ARCH__
__device__ inline unsigned int gpunn_float_bits(float x) { return __float_as_uint(x); }
__device__ inline float gpunn_bits_float(unsigned int u) { return __uint_as_float(u); }
#else
// memcpy, not a union or pointer cast: the one type pun C++ defines (g++ folds it to a move).
inline unsigned int gpunn_float_bits(float x) {
    unsigned int u;
    memcpy(&u, &x, sizeof u);
    return u;
}
inline float gpunn_bits_float(unsigned int u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
#endif

// The bit pattern rounded to nearest even at bit `shift`, low bits cleared. Adding half an ulp
// minus one plus the kept lsb carries exactly on ties to odd and above half; a carry out of
// the mantissa raises the exponent, and out of the largest finite exponent it gives inf.
__host__ __device__ inline unsigned int gpunn_round_bits(unsigned int u, int shift) {
    unsigned int half = (1u << (shift - 1)) - 1u;
    unsigned int lsb = (u >> shift) & 1u;
    return ((u + half + lsb) >> shift) << shift;
}

__host__ __device__ inline bool gpunn_is_nan_bits(unsigned int u) {
    return (u & 0x7fffffffu) > 0x7f800000u;
}

// bfloat16 bits (the top 16 of a float32: 8 exponent bits, 7 mantissa bits) of x.
__host__ __device__ inline unsigned short gpunn_bf16_bits(float x) {
    unsigned int u = gpunn_float_bits(x);
    if (gpunn_is_nan_bits(u)) {
        return (unsigned short)((u >> 16) | 0x0040u);  // quiet; payload bits past 16 dropped
    }
    return (unsigned short)(gpunn_round_bits(u, 16) >> 16);
}

// The float32 of bfloat16 bits: exact, every bfloat16 is a float32.
__host__ __device__ inline float gpunn_bf16_float(unsigned short h) {
    return gpunn_bits_float((unsigned int)h << 16);
}

// x rounded to TF32 (float32 with 10 mantissa bits), as a float32.
__host__ __device__ inline float gpunn_tf32(float x) {
    unsigned int u = gpunn_float_bits(x);
    if (gpunn_is_nan_bits(u)) {
        return gpunn_bits_float(u | 0x00400000u);
    }
    return gpunn_bits_float(gpunn_round_bits(u, 13));
}
