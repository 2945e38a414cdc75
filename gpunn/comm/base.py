"""What every communicator shares: the errors, the one-process :class:`SingleProcess`, how a
batch is split over ranks, and how many ranks a launcher started. Imports no MPI or CUDA."""

import os
from contextlib import nullcontext

# Set in every rank by the launchers: Hydra (MPICH, Intel MPI), Open MPI, MVAPICH; srun below.
_LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class CommError(RuntimeError):
    """A collective did not complete: another rank failed, or none answered in time."""


class CommTimeout(CommError):
    """A collective waited longer than the communicator's ``timeout``."""


class RankFailed(CommError):
    """Another rank failed; the message is that rank's own line."""


class SingleProcess:
    """The default communicator: one rank; every collective is the identity, nothing imported."""

    name, rank, size, local_rank = "single", 0, 1, 0

    def allreduce_sum(self, array):
        """Return ``array`` unchanged (the sum over one rank)."""
        return array

    def bcast(self, obj, root=0):
        """Return ``obj``."""
        return obj

    def bcast_array(self, array, root=0):
        """Return ``array`` unchanged."""
        return array

    def barrier(self):
        """Return at once."""

    def wait(self):
        """Return at once (no device work to wait for)."""

    def guard(self, agreed=()):
        """A context that lets every exception through (no other rank to stop)."""
        return nullcontext()


def shard(start, stop, rank, size):
    """Rank ``rank``'s rows of the global batch ``start:stop``: as even a split as can be.

    Full batches of ``size * b`` rows give every rank ``b`` consecutive rows; a shorter last
    batch gives them ``floor`` or ``ceil`` of an equal share (possibly none).

    Returns:
        ``(lo, hi)`` with ``start <= lo <= hi <= stop``.
    """
    m = stop - start
    return start + rank * m // size, start + (rank + 1) * m // size


def launched_size(environ=None):
    """Number of ranks an MPI launcher (mpiexec, srun) started, from its variables; 1 if none.

    Args:
        environ: a mapping (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    for key in _LAUNCHER_SIZE:
        if environ.get(key, "").isdigit():
            return int(environ[key])
    if "SLURM_PROCID" in environ and environ.get("SLURM_NTASKS", "").isdigit():
        return int(environ["SLURM_NTASKS"])
    return 1


def check_timeout(timeout):
    source = "timeout"
    if timeout is None:
        timeout, source = os.environ.get("GPUNN_COMM_TIMEOUT", "300"), "GPUNN_COMM_TIMEOUT"
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{source}: expected a positive number of seconds, got {timeout!r}")
    return value
