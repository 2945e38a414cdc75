"""gpunn: train multi-layer perceptrons on NVIDIA GPUs (CuPy) or the CPU (NumPy + Numba)."""
# ruff: noqa: E402  (the environment is checked before anything imports Numba)

from gpunn._environment import check_thread_variable

check_thread_variable()  # before anything imports Numba, which refuses bad values unnamed

from gpunn import callbacks, export
from gpunn.backends import get_backend, use_backend
from gpunn.backends.info import info
from gpunn.checkpoint import CheckpointError, load, load_checkpoint, save, save_checkpoint
from gpunn.gradcheck import gradcheck
from gpunn.history import History
from gpunn.layers import Dense
from gpunn.losses import BinaryCrossEntropy, CrossEntropy, Loss, MeanSquaredError
from gpunn.model import MLP, Sequential
from gpunn.optim import SGD, Adam, AdamW, Momentum, RMSprop
from gpunn.schedules import (
    Constant,
    Cosine,
    Exponential,
    InverseSqrt,
    InverseTime,
    OneCycle,
    Staircase,
    Warmup,
)
from gpunn.train import TrainingDiverged, fit

__version__ = "0.1.0"

# Imported on first use, so that `import gpunn` needs (and imports) no scikit-learn.
_LAZY = {"GpunnClassifier": "gpunn.sklearn", "GpunnRegressor": "gpunn.sklearn"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gpunn' has no attribute {name!r}")

__all__ = [
    "MLP",
    "SGD",
    "Adam",
    "AdamW",
    "BinaryCrossEntropy",
    "CheckpointError",
    "Constant",
    "Cosine",
    "CrossEntropy",
    "Dense",
    "Exponential",
    "GpunnClassifier",
    "GpunnRegressor",
    "History",
    "InverseSqrt",
    "InverseTime",
    "Loss",
    "MeanSquaredError",
    "Momentum",
    "OneCycle",
    "RMSprop",
    "Sequential",
    "Staircase",
    "TrainingDiverged",
    "Warmup",
    "__version__",
    "callbacks",
    "export",
    "fit",
    "get_backend",
    "gradcheck",
    "info",
    "load",
    "load_checkpoint",
    "save",
    "save_checkpoint",
    "use_backend",
]
