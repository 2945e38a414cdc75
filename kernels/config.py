"""Compilation settings shared by every Numba twin."""

# LLVM fast-math flags for all twins. Deliberately without 'nnan'/'ninf', which would let
# LLVM drop the NaN/inf checks that divergence detection relies on, and without 'afn',
# which would swap exp/log for approximations; 'contract' allows FMA as NVRTC does. Without
# 'reassoc' too: NVRTC keeps the written order, and the kernels rely on it (softmax_xent's
# (z - rowmax) - log(rowsum) would become z - (rowmax + log(rowsum)), off by ulp(rowmax)).
# The twins are element-wise loops with no reductions, so 'reassoc' bought no vectorization.
FASTMATH = {"nsz", "arcp", "contract"}

# Numba writes compiled machine code next to these files, so a second process compiles nothing.
CACHE = True
