"""Compilation settings shared by every Numba twin, and their fixed blocks."""

import hashlib
from pathlib import Path

from numba import njit

# LLVM fast-math flags for all twins. Deliberately without 'nnan'/'ninf', which would let
# LLVM drop the NaN/inf checks that divergence detection relies on, and without 'afn', which
# would swap exp/log for approximations. Without 'contract' (FMA): with it, the process that
# compiled adam_step and rmsprop_step computed other bits than every process that loaded the
# same machine code from Numba's cache (tests/test_numba_cache.py), and the SIMD body and the
# scalar remainder of a loop may fuse a * b + c differently. Without it every twin rounds each
# operation as written, on every path. NVRTC does contract on the GPU, so the backends agree to
# dtype-keyed tolerances, not bits (DESIGN: Verifying CUDA code). Without 'reassoc' too: NVRTC
# keeps the written order, and the kernels rely on it (softmax_xent's (z - rowmax) -
# log(rowsum) would become z - (rowmax + log(rowsum)), off by ulp(rowmax)).
# Numba's cache of the twins is keyed by the contents of every file of this package
# (_stamped_by_package below): changing a flag here recompiles every twin.
FASTMATH = {"nsz", "arcp"}

# Division by zero gives inf/NaN as in CUDA C and NumPy, instead of Python's ZeroDivisionError:
# the check and its exception path in every loop that divides kept LLVM from vectorizing it.
ERROR_MODEL = "numpy"


def _package_stamp():
    """The sha256 of every file of this package (names and contents, in name order)."""
    digest = hashlib.sha256()
    for path in sorted(HERE.iterdir()):
        if path.is_file() and path.suffix in (".py", ".cu", ".cuh"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _stamped_by_package(locator_class):
    """``locator_class`` for this package's files only, with the package's stamp as each
    file's: a twin inlines helpers of other files (counter_rng's masks, vecmath's exp), and
    Numba stamps a cached function with its own file's contents alone, so a changed helper
    left the old machine code of every kernel that inlines it in use."""

    class Locator(locator_class):
        @classmethod
        def from_function(cls, py_func, py_file):
            if Path(py_file).resolve().parent != HERE:
                return None
            return super().from_function(py_func, py_file)

        def get_source_stamp(self):
            return PACKAGE_STAMP

    Locator.__name__ = Locator.__qualname__ = f"GpunnKernels{locator_class.__name__}"
    return Locator


HERE = Path(__file__).resolve().parent
PACKAGE_STAMP = _package_stamp()
try:
    from numba.core.caching import CacheImpl
except ImportError:  # another Numba layout: its own stamps
    pass
else:
    # Numba finds a cache locator by trying its classes in order; these come first (once,
    # however often this module is imported) and take only this package's files, each
    # placing the cache where its Numba class would.
    if not any(c.__name__.startswith("GpunnKernels") for c in CacheImpl._locator_classes):
        CacheImpl._locator_classes[:0] = [_stamped_by_package(c)
                                          for c in CacheImpl._locator_classes]


def _cache_path():
    """Where Numba would cache the twins (next to these files, NUMBA_CACHE_DIR or the user's
    cache folder, as Numba chooses), or None when none of them is writable (a read-only
    install with a read-only home): Numba then refuses to compile a ``cache=True`` function."""
    try:
        from numba.core.caching import CacheImpl
    except ImportError:  # another Numba layout: leave the choice to Numba
        return "chosen by Numba"

    def probe():
        pass

    for locator_class in CacheImpl._locator_classes:
        try:
            locator = locator_class.from_function(probe, __file__)
        except Exception:  # noqa: BLE001 - a locator that cannot decide offers no cache
            locator = None
        if locator is not None:
            return locator.get_cache_path()
    return None


# Numba writes compiled machine code there, so a second process compiles nothing; with no
# writable place the twins run uncached (compiled in every process) instead of failing.
CACHE_PATH = _cache_path()
CACHE = CACHE_PATH is not None

# Elements per block of every flat (element-wise) twin: one prange iteration per block, the
# block's loop in a function of its own over slices (a loop over range(start, stop) inside the
# prange would not vectorize; one over a slice does). LLVM computes such a loop in SIMD lanes
# and its last few elements in a scalar remainder; fixed blocks put the remainders at the same
# elements on any number of threads and any threading layer (a plain prange splits a loop by
# the thread count), so the bits never depend on how the blocks are shared out. Row twins
# (one row per iteration) need no blocks: each row's loop has its own remainder.
BLOCK = 4096


@njit(cache=CACHE, inline="always")
def block_bounds(block, n):
    """Start and stop of block number ``block`` of a flat loop over ``n`` elements."""
    return block * BLOCK, min(n, (block + 1) * BLOCK)


@njit(cache=CACHE, inline="always")
def n_blocks(n):
    """Blocks of a flat loop over ``n`` elements (the prange bound)."""
    return (n + BLOCK - 1) // BLOCK
