"""Arrays from any framework: inputs that implement ``__dlpack__`` (PyTorch, JAX, CuPy, NumPy,
...) are taken without a copy, as a NumPy array on host memory or a CuPy array on CUDA memory.

Host memory given to the CUDA backend is viewed by NumPy and copied to the device once, as any
host array is; CUDA memory given to a host backend (cpu, cuda-emulated) is refused with a
TypeError that says how to move it, instead of a copy through the host that nobody asked for;
so is CUDA memory of another GPU than the CUDA backend's current one.
"""

import sys

import numpy as np

# DLPack device types (dlpack.h DLDeviceType) and where gpunn reads them.
DLPACK_HOST = {1: "cpu"}
DLPACK_CUDA = {2: "cuda", 13: "cuda_managed"}


def from_dlpack(name, value, xp):
    """``value`` as an ``xp``-readable array sharing its memory, if it speaks DLPack.

    Args:
        name: the argument's name, for messages.
        value: anything; NumPy arrays and objects without ``__dlpack__`` come back unchanged
            (the usual checks convert them).
        xp: the backend's array module: ``numpy`` (host memory) or ``cupy`` (CUDA memory).

    Returns:
        ``value`` itself, or a NumPy / CuPy array on the same memory.
    """
    if isinstance(value, np.ndarray) or not hasattr(value, "__dlpack__"):
        return value
    kind = f"{type(value).__module__}.{type(value).__name__}"
    cupy = sys.modules.get("cupy")
    on_cupy = cupy is not None and isinstance(value, cupy.ndarray)
    try:
        device_type, device_id = (2, value.device.id) if on_cupy else value.__dlpack_device__()
    except Exception as exc:  # a producer's own error, whatever its type
        raise TypeError(f"{name}: expected an array whose __dlpack_device__() works, got the "
                        f"{kind} ({type(exc).__name__}: {exc})") from None
    _check_device(name, kind, device_type, device_id, xp)
    if on_cupy:
        return value
    module = np if device_type in DLPACK_HOST else xp
    try:
        return module.from_dlpack(value)
    except Exception as exc:  # BufferError, RuntimeError (torch: requires_grad), TypeError
        raise TypeError(f"{name}: expected an array that can be shared through DLPack, got "
                        f"the {kind}, which refused ({type(exc).__name__}: {exc}); pass it as "
                        "float32 or float64 without autograd history (e.g. "
                        "tensor.detach().float())") from None


def _check_device(name, kind, device_type, device_id, xp):
    """TypeError unless memory of ``device_type`` / ``device_id`` is readable by ``xp``'s
    device: host memory anywhere, CUDA memory on a CUDA backend's current device (managed
    memory on any)."""
    if device_type not in DLPACK_HOST and device_type not in DLPACK_CUDA:
        raise TypeError(f"{name}: expected an array in host or CUDA memory, got the {kind} on "
                        f"DLPack device type {device_type}")
    if device_type in DLPACK_CUDA and xp is np:
        raise TypeError(f"{name}: expected an array in host memory for this backend (the "
                        f"model is not on a GPU), got the {kind} in CUDA memory (device "
                        f"{device_id}); move it to the host first (tensor.cpu(), "
                        "cupy.asnumpy) or build the model on the 'cuda' backend")
    if DLPACK_CUDA.get(device_type) == "cuda" and xp is not np:
        current = xp.cuda.Device().id
        if device_id != current:
            raise TypeError(f"{name}: expected an array on the model's GPU (device {current}), "
                            f"got the {kind} on device {device_id}; move it there first "
                            f"(tensor.to('cuda:{current}'), or use that device)")
