"""Deprecated alias of :mod:`gpunn.checkpoint.resume` (fit's checkpoints and resume).

Kept for one release; import from ``gpunn.checkpoint.resume`` instead.
"""

import warnings

from gpunn.checkpoint.resume import (  # noqa: F401 (the old surface)
    check_checkpointing,
    resume,
)

warnings.warn("gpunn.resume is deprecated: import from gpunn.checkpoint.resume",
              DeprecationWarning, stacklevel=2)
