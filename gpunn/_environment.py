"""The environment the ``gpunn`` command gives itself before NumPy loads.

Read by ``gpunn_command`` (the console script's entry module, which loads this file without
importing the package, since ``import gpunn`` loads NumPy) and by ``gpunn info``. No imports
at module level: it must load before anything else.
"""

# OpenBLAS's idle threads busy-wait about 2^28 cycles after each call, on the cores the next
# kernel needs; with a timeout of 4 they sleep at once (benchmarks/cpu_threading.py). OpenBLAS
# reads it once, when NumPy loads it.
COMMAND_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4"}


def check_thread_variable(environ=None):
    """Refuse a NUMBA_NUM_THREADS that Numba would refuse (or silently ignore), naming it.

    Called first thing by ``import gpunn``: Numba itself refuses a bad value when it is
    imported, with a message that does not name the variable.
    """
    import os

    value = (os.environ if environ is None else environ).get("NUMBA_NUM_THREADS")
    if value is None:
        return
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"NUMBA_NUM_THREADS: expected a whole number of threads >= 1, got "
                         f"{value!r}; unset it to use every core")
