"""Deprecated alias of :mod:`gpunn.comm.nccl` (the communicators are one package now). Kept for
one release; import from ``gpunn.comm`` instead."""

import warnings

from gpunn.comm.nccl import NCCLComm, choose_device, connect  # noqa: F401

warnings.warn("gpunn.comm_nccl is deprecated: use gpunn.comm.NCCLComm (gpunn.comm.nccl)",
              DeprecationWarning, stacklevel=2)
