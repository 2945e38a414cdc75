"""Deprecated alias of :mod:`gpunn.checkpoint` (writing, CheckpointError).

Kept for one release; import from ``gpunn.checkpoint`` instead.
"""

import warnings

from gpunn.checkpoint import (  # noqa: F401 (the old surface)
    CRC_KEY,
    FORMAT,
    METADATA_KEY,
    VERSION,
    CheckpointError,
    crc,
    text_crc,
)

warnings.warn("gpunn.checkpoint_write is deprecated: import from gpunn.checkpoint",
              DeprecationWarning, stacklevel=2)
