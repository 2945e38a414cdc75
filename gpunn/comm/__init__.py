"""Communicators for data-parallel training: one process, MPI (host arrays), NCCL (CuPy arrays).

A communicator sums arrays over the ranks in place (``allreduce_sum``), broadcasts Python
objects and arrays from one rank, and keeps a failure on one rank from hanging the others.

How a failing rank stops the others (decided; the three cases need three mechanisms):

1. Divergence is agreed by construction: the finiteness check reads the all-reduced gradient
   and loss sums, identical on every rank, so every rank raises the same
   :class:`~gpunn.train.TrainingDiverged` at the same step. No extra message.
2. An exception on one rank (a bug, a full disk on rank 0's checkpoint, a callback) leaves the
   others blocked in the next collective, where no flag can reach them. :meth:`guard` catches
   it, prints ``rank r of n failed: <error>``, posts that line to every other rank and waits a
   moment (at most ``GRACE`` seconds) for them to acknowledge, then calls ``MPI_Abort``,
   which the launcher turns into the end of every rank. A waiting rank polls for that notice
   while it waits in a collective, prints the same line, acknowledges and raises
   :class:`RankFailed`; its own guard then aborts. So every rank ends with the same line.
3. A rank that hangs or dies without raising: every collective is nonblocking (``Iallreduce``
   and friends) and polled against a deadline (``timeout``, default ``GPUNN_COMM_TIMEOUT`` or
   300 s); past it the waiting rank raises :class:`CommTimeout`, which goes through case 2.
"""

from gpunn.backends import get_backend
from gpunn.comm.base import (
    CommError,
    CommTimeout,
    RankFailed,
    RanksDisagree,
    SingleProcess,
    agree,
    launched_size,
    shard,
)
from gpunn.comm.mpi import MPIComm
from gpunn.comm.nccl import NCCLComm

# The multi-rank communicators by name (the CLI's --distributed reads them); "auto" and None
# (one process) are get_comm's own.
COMMUNICATORS = {"mpi": MPIComm, "nccl": NCCLComm}
KINDS = ("auto", *COMMUNICATORS)


def auto_kind(backend=None):
    """The communicator ``"auto"`` means with several ranks: NCCL for the CUDA backend (its
    arrays live on GPUs), MPI for host arrays. ``backend``: None for the current one."""
    return "nccl" if (backend or get_backend()).name == "cuda" else "mpi"


def get_comm(kind="auto", backend=None, timeout=None):
    """A communicator by name.

    Args:
        kind: ``None`` or ``"single"``: one process; ``"mpi"``: :class:`MPIComm`; ``"nccl"``:
            :class:`~gpunn.comm.nccl.NCCLComm`; ``"auto"``: one process unless a launcher
            started several ranks, then NCCL when ``backend`` is CUDA, else MPI. A
            communicator object is returned as is.
        backend: the backend the model lives on (decides ``"auto"``); None for the current.
        timeout: seconds a collective may wait (see :class:`MPIComm`).

    Returns:
        A communicator.
    """
    if kind is None or kind == "single":
        return SingleProcess()
    names = ", ".join(map(repr, KINDS))
    if not isinstance(kind, str):
        if callable(getattr(kind, "allreduce_sum", None)):
            return kind
        raise TypeError(f"comm: expected {names}, None or a communicator, got "
                        f"{type(kind).__name__}")
    if kind == "auto":
        if launched_size() <= 1:
            return SingleProcess()
        kind = auto_kind(backend)
    if kind not in COMMUNICATORS:
        raise ValueError(f"comm: expected {names} or None, got {kind!r}")
    return COMMUNICATORS[kind](timeout=timeout)


__all__ = ["COMMUNICATORS", "KINDS", "CommError", "CommTimeout", "MPIComm", "NCCLComm",
           "RankFailed", "RanksDisagree", "SingleProcess", "agree", "auto_kind", "get_comm",
           "launched_size", "shard"]
