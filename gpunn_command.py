"""The ``gpunn`` console command: sets the process's BLAS environment, then runs the CLI.

It lives outside the ``gpunn`` package because importing any ``gpunn`` module runs
``gpunn/__init__.py``, which loads NumPy, and OpenBLAS reads its environment once, when NumPy
loads it. The values live in ``gpunn/_environment.py``, loaded here as a plain file.
"""

import importlib.util
import os
import sys
from pathlib import Path


def _command_env():
    """``gpunn._environment.COMMAND_ENV``, read without running ``gpunn/__init__.py``."""
    package = importlib.util.find_spec("gpunn").submodule_search_locations
    path = Path(next(iter(package))) / "_environment.py"
    spec = importlib.util.spec_from_file_location("_gpunn_command_environment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.COMMAND_ENV


def main(argv=None):
    """Entry point of the ``gpunn`` console script; a value the user set is kept."""
    for name, value in _command_env().items():
        os.environ.setdefault(name, value)
    from gpunn.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
