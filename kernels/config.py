"""Compilation settings shared by every Numba twin."""

# LLVM fast-math flags for all twins. Deliberately without 'nnan'/'ninf', which would let
# LLVM drop the NaN/inf checks that divergence detection relies on, and without 'afn',
# which would swap exp/log for approximations; 'contract' allows FMA as NVRTC does. Without
# 'reassoc' too: NVRTC keeps the written order, and the kernels rely on it (softmax_xent's
# (z - rowmax) - log(rowsum) would become z - (rowmax + log(rowsum)), off by ulp(rowmax)).
# The twins are element-wise loops with no reductions, so 'reassoc' bought no vectorization.
FASTMATH = {"nsz", "arcp", "contract"}

# Division by zero gives inf/NaN as in CUDA C and NumPy, instead of Python's ZeroDivisionError:
# the check and its exception path in every loop that divides kept LLVM from vectorizing it.
ERROR_MODEL = "numpy"

# Numba writes compiled machine code next to these files, so a second process compiles nothing.
CACHE = True

# Iterations per chunk of every prange loop (the CPU backend sets it around each launch with
# numba.set_parallel_chunksize). LLVM computes a chunk in SIMD lanes and its last few elements
# in a scalar remainder, where FMA contraction may differ by an ulp; chunks of a fixed size put
# the remainders at the same elements on any number of threads, so results are identical on
# one thread or all (a plain prange splits a loop by the thread count).
CHUNK = 4096
