"""CUDA backend: CuPy arrays, cuBLAS matmuls, the ``.cu`` kernels through ``cupy.RawModule``.

The array module and the kernel loader are constructor arguments, so the same launch code runs
on a GPU (``xp=cupy``, :class:`RawModuleLoader`) and, in the tests, on NumPy arrays with the
``.cu`` files compiled for the host (the "cuda-emulated" backend).
"""

import math

import numpy as np

from gpunn.backends.base import Backend
from gpunn.kernels import cuda_source

# The options CuPy adds itself are --std=c++17 -ftz=true --device-as-default-execution-space
# (plus -arch); gpunn adds none, so the NVRTC compile test reproduces this build exactly.
NVRTC_OPTIONS = ()


class RawModuleLoader:
    """Compiles a kernel module with ``cupy.RawModule`` on first use; one per device and dtype."""

    def __init__(self, cupy):
        self._cupy = cupy
        self._modules = {}

    def __call__(self, module, dtype):
        key = (self._cupy.cuda.Device().id, module, str(dtype))
        raw = self._modules.get(key)
        if raw is None:
            raw = self._modules[key] = self._cupy.RawModule(
                code=cuda_source(module, str(dtype)), options=NVRTC_OPTIONS)
        return raw


class CudaBackend(Backend):
    """Launches grid-stride kernels: ``block_size`` threads, at most ``max_blocks`` blocks."""

    def __init__(self, xp, loader, name="cuda", device="cuda", block_size=256, max_blocks=None):
        self.xp = xp
        self.name = name
        self.device = device
        self._loader = loader
        self._block = int(block_size)
        self._max_blocks = max_blocks or 65535
        self._functions = {}

    def to_numpy(self, x):
        return x.get() if hasattr(x, "get") else np.asarray(x)

    def synchronize(self):
        if self.xp is not np:
            self.xp.cuda.get_current_stream().synchronize()

    def _launch(self, spec, converted):
        args, dtype, n = converted
        key = (spec.name, dtype)
        function = self._functions.get(key)
        if function is None:
            module = self._loader(spec.module, dtype)
            function = self._functions[key] = module.get_function(spec.cuda_name(dtype))
        grid = max(1, min(math.ceil(n / self._block), self._max_blocks))
        function((grid,), (self._block,), (*args, np.int64(n)))
