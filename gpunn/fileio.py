"""Deprecated alias of :mod:`gpunn._files` (atomic writes, output path checks).

Kept for one release; import from ``gpunn._files`` instead.
"""

import warnings

from gpunn._files import (  # noqa: F401 (the old surface)
    STALE_SECONDS,
    atomic_write,
    check_target,
    remove_stale_temps,
)

warnings.warn("gpunn.fileio is deprecated: import from gpunn._files",
              DeprecationWarning, stacklevel=2)
