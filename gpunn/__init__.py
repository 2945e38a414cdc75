"""gpunn: train multi-layer perceptrons on NVIDIA GPUs (CuPy) or the CPU (NumPy + Numba)."""

from gpunn.backends import get_backend, use_backend
from gpunn.info import info

__version__ = "0.1.0"

__all__ = ["get_backend", "use_backend", "info", "__version__"]
