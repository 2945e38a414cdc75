// Shared by every gpunn kernel file. The backend prepends, per dtype,
//   #define GPUNN_REAL float|double
//   #define GPUNN_NAME(base) gpunn_##base##_f32|_f64
// so each kernel is written once and compiled once per dtype.
#pragma once

typedef GPUNN_REAL real;

// Grid-stride loop: correct for any grid and block shape, including grids
// smaller than n / blockDim.x; each thread touches only its own indices.
#define GPUNN_GRID_STRIDE(i, n)                                                 \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)
