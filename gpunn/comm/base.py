"""What every communicator shares: the errors, the one-process :class:`SingleProcess`, how a
batch is split over ranks, and how many ranks a launcher started. Imports no MPI or CUDA."""

import hashlib
import os
from contextlib import nullcontext

import numpy as np

# Set in every rank by the launchers: Hydra (MPICH, Intel MPI), Open MPI, MVAPICH; srun below.
_LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class CommError(RuntimeError):
    """A collective did not complete: another rank failed, or none answered in time."""


class CommTimeout(CommError):
    """A collective waited longer than the communicator's ``timeout``."""


class RankFailed(CommError):
    """Another rank failed; the message is that rank's own line."""


class RanksDisagree(CommError, ValueError):
    """The ranks started one run with different settings or data (raised on every rank)."""


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


def agree(comm, what, items):
    """Check that every rank of ``comm`` has the same ``items``; one small all-reduce.

    Each rank puts a 56-bit hash of every item's ``repr`` in its own row of a zero
    ``(size, len(items))`` int64 array; the summed array holds every rank's hashes, so every
    rank sees the same differences and fails together. Only then are the values exchanged, to
    name them.

    Args:
        comm: a communicator (NCCL ones agree through their host ``MPIComm``).
        what: who asks, for the message (``"fit"``).
        items: ``{name: value}``, the same names on every rank.

    Raises:
        RanksDisagree: on every rank, naming each item that differs and every rank's value.
    """
    if comm.size == 1:
        return
    host = getattr(comm, "host", comm)
    names = list(items)
    table = np.zeros((comm.size, len(names)), np.int64)
    table[comm.rank] = [_hash56(items[k]) for k in names]
    host.allreduce_sum(table)
    differ = [j for j in range(len(names)) if len(set(table[:, j].tolist())) > 1]
    if not differ:
        return
    mine = {names[j]: repr(items[names[j]]) for j in differ}
    every = [host.bcast(mine if r == comm.rank else None, root=r) for r in range(comm.size)]
    lines = [f"{names[j]} ({_by_value(names[j], every)})" for j in differ]
    raise RanksDisagree(f"{what}: the ranks disagree on {', '.join(lines)}; every rank must "
                        "run the same configuration on data of the same shape")


def _by_value(name, every):
    """``"ranks 0, 2: 0.1; rank 1: 0.2"``: the ranks that hold each value of ``name``."""
    ranks = {}
    for r, values in enumerate(every):
        ranks.setdefault(values[name], []).append(r)
    return "; ".join(f"rank{'s' if len(rs) > 1 else ''} {', '.join(map(str, rs))}: {v}"
                     for v, rs in ranks.items())


def _hash56(value):
    return int.from_bytes(hashlib.blake2b(repr(value).encode(), digest_size=7).digest(), "little")
