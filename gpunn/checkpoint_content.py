"""Deprecated alias of :mod:`gpunn.checkpoint.format` (header part checks).

Kept for one release; import from ``gpunn.checkpoint.format`` instead.
"""

import warnings

from gpunn.checkpoint.format import (  # noqa: F401 (the old surface)
    SHOWN,
    check_index,
    short,
    short_list,
)

warnings.warn("gpunn.checkpoint_content is deprecated: import from gpunn.checkpoint.format",
              DeprecationWarning, stacklevel=2)
