"""Compilation settings shared by every Numba twin."""

# LLVM fast-math flags for all twins. Deliberately without 'nnan'/'ninf', which would let
# LLVM drop the NaN/inf checks that divergence detection relies on, and without 'afn',
# which would swap exp/log for approximations; 'contract' allows FMA as NVRTC does.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

# Numba writes compiled machine code next to these files, so a second process compiles nothing.
CACHE = True
