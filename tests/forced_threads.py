"""A CPU backend whose launches all run on every Numba thread, or all on the calling thread,
whatever their size: what the thread tests compare (the library decides by size)."""

from gpunn.backends.cpu import CpuBackend


class ForcedThreads(CpuBackend):
    """:class:`CpuBackend` with :meth:`parallel` fixed to ``everywhere``."""

    def __init__(self, everywhere):
        super().__init__()
        self.everywhere = everywhere

    def parallel(self, kernel, n):
        """``everywhere``, for every kernel and size."""
        return self.everywhere
