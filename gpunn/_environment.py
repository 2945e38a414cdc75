"""The environment the ``gpunn`` command gives itself before NumPy loads.

Read by ``gpunn_command`` (the console script's entry module, which loads this file without
importing the package, since ``import gpunn`` loads NumPy) and by ``gpunn info``. No imports:
it must load before anything else.
"""

# OpenBLAS's idle threads busy-wait about 2^28 cycles after each call, on the cores the next
# kernel needs; with a timeout of 4 they sleep at once (benchmarks/cpu_threading.py). OpenBLAS
# reads it once, when NumPy loads it.
COMMAND_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4"}
