"""Deprecated alias of :mod:`gpunn._checks` (argument checks); "validation" now means held-out
data only. Kept for one release; import from ``gpunn._checks`` instead."""

import warnings

from gpunn._checks import (  # noqa: F401 (the old surface)
    as_host_array,
    as_labels,
    check_bool,
    check_callbacks,
    check_choice,
    check_features,
    check_finite,
    check_int,
    check_keywords,
    check_number,
    check_positive,
)
from gpunn.sharing import check_model  # noqa: F401 (moved there: it closed an import circle)

warnings.warn("gpunn.validation is deprecated: argument checks live in gpunn._checks",
              DeprecationWarning, stacklevel=2)
