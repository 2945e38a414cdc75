"""``gpunn bench``: gpunn against its peers and against the machine's own limits.

The command lives in :mod:`gpunn.bench.command`, its sections in :mod:`gpunn.bench.sections`.
This package module imports nothing, so a section's module can import its siblings
(``from gpunn.bench import harness``) without a circle through the registry.
"""
