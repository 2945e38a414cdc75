// The counter-based generator of the dropout masks: splitmix64 (Steele, Lea, Flood 2014, the
// seeder of Java's SplittableRandom and of xoshiro), whose output number i of a state s is
// mix64(s + (i + 1) * golden), so any output is computed from its counter alone, in integers:
// the same bits in CUDA C, in the Numba twins (counter_rng.py) and in tests/reference.py.
//
// A dropout mask is keyed by (seed, layer, update count t, element e), each level an output
// of a splitmix64 stream started at the previous level's value:
//   key = splitmix64(splitmix64(seed, layer), t)     once per thread (or row) and launch
//   h   = splitmix64(key, e >> 1)                     one output per pair of elements
//   u   = e even ? h's low 32 bits : h's high 32 bits
// and element e is dropped when u < drop_below (= round(p 2^32), computed once on the host).
// One 64-bit output serves two elements: a CPU (the Numba twin's loop over pairs) computes half
// the hashes; a GPU thread computes its element's output, as cheap as before.
#pragma once

#define GPUNN_GOLDEN 0x9E3779B97F4A7C15ULL

__host__ __device__ inline unsigned long long gpunn_mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Output number `index` (from 0) of splitmix64 started at `state`.
__host__ __device__ inline unsigned long long gpunn_splitmix64(unsigned long long state,
                                                                unsigned long long index) {
    return gpunn_mix64(state + (index + 1ULL) * GPUNN_GOLDEN);
}

// The key of one layer's mask at update count t (seed as its 64 bits, two's complement).
__host__ __device__ inline unsigned long long gpunn_dropout_key(long long seed, int layer,
                                                                long long t) {
    unsigned long long of_layer = gpunn_splitmix64((unsigned long long)seed,
                                                   (unsigned long long)layer);
    return gpunn_splitmix64(of_layer, (unsigned long long)t);
}

// Inverted dropout's factor of element `element`: `scale` (1 / (1 - p)) where it is kept,
// 0 where it is dropped. Multiplied, not selected, so NaN and inf still propagate (as
// PyTorch's h * mask * scale).
template <typename T>
__host__ __device__ inline T gpunn_dropout_factor(unsigned long long key, long long element,
                                                  long long drop_below, T scale) {
    unsigned long long e = (unsigned long long)element;
    unsigned long long h = gpunn_splitmix64(key, e >> 1);
    unsigned long long u = (e & 1ULL) ? (h >> 32) : (h & 0xFFFFFFFFULL);
    return u >= (unsigned long long)drop_below ? scale : T(0);
}
