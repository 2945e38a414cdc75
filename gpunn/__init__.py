"""gpunn: train multi-layer perceptrons on NVIDIA GPUs (CuPy) or the CPU (NumPy + Numba)."""

from gpunn.backends import get_backend, use_backend
from gpunn.backends.info import info
from gpunn.checkpoint import CheckpointError, load, load_checkpoint, save_checkpoint
from gpunn.gradcheck import gradcheck
from gpunn.history import History
from gpunn.layers import Dense
from gpunn.losses import BinaryCrossEntropy, CrossEntropy, Loss, MeanSquaredError
from gpunn.model import MLP, Sequential
from gpunn.optim import SGD, Adam, AdamW, Momentum, RMSprop
from gpunn.schedules import Constant, Exponential, InverseSqrt, InverseTime, Staircase
from gpunn.train import TrainingDiverged, fit

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "SGD",
    "Adam",
    "AdamW",
    "BinaryCrossEntropy",
    "CheckpointError",
    "Constant",
    "CrossEntropy",
    "Dense",
    "Exponential",
    "History",
    "InverseSqrt",
    "InverseTime",
    "Loss",
    "MeanSquaredError",
    "Momentum",
    "RMSprop",
    "Sequential",
    "Staircase",
    "TrainingDiverged",
    "__version__",
    "fit",
    "get_backend",
    "gradcheck",
    "info",
    "load",
    "load_checkpoint",
    "save_checkpoint",
    "use_backend",
]
