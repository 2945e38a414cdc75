// Compiles gpunn's CUDA C as plain C++ for the CPU (tests only; see tests/host_build.py).
// Valid because gpunn kernels share nothing between threads: no shared memory, no
// __syncthreads, no atomics. A launch becomes sequential loops over blocks and threads.
#pragma once
#include <cmath>
#include <cstring>
#include <math.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct gpunn_dim3 {
    unsigned x, y, z;
};

// thread_local: two Python threads may run emulated launches at once (ctypes drops the GIL).
static thread_local gpunn_dim3 threadIdx, blockIdx, blockDim, gridDim;
