"""The ``gpunn`` console command: sets the process's BLAS environment, then runs the CLI.

It lives outside the ``gpunn`` package because importing any ``gpunn`` module runs
``gpunn/__init__.py``, which loads NumPy, and OpenBLAS reads its environment once, when NumPy
loads it.
"""

import os
import sys

# OpenBLAS's idle threads busy-wait about 2^28 cycles after each call, on the cores the next
# kernel needs; with a timeout of 4 they sleep at once (benchmarks/cpu_threading.py).
COMMAND_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4"}


def main(argv=None):
    """Entry point of the ``gpunn`` console script; a value the user set is kept."""
    for name, value in COMMAND_ENV.items():
        os.environ.setdefault(name, value)
    from gpunn.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
