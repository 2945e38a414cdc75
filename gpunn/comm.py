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

import os
import pickle
import sys
import time
import traceback
from contextlib import contextmanager, nullcontext

import numpy as np

from gpunn._compat import import_mpi

GRACE = 2.0  # seconds a failing rank waits for the others to acknowledge its notice
_FAIL_TAG, _ACK_TAG = 31_001, 31_002
_yield_core = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))  # none on Windows
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


class MPIComm:
    """MPI through mpi4py: host (NumPy) arrays, one process per rank.

    Works on a duplicate of ``comm`` (default ``MPI.COMM_WORLD``), so its messages never match
    the caller's. Every collective is nonblocking and polled against ``timeout``.

    Args:
        comm: an ``mpi4py.MPI.Comm``, or None for ``COMM_WORLD``.
        timeout: seconds a collective may wait for the other ranks; None reads
            ``GPUNN_COMM_TIMEOUT`` (default 300).
    """

    name = "mpi"

    def __init__(self, comm=None, timeout=None):
        self.timeout = _check_timeout(timeout)
        MPI, reason = import_mpi()
        if MPI is None:
            raise ImportError(f"MPIComm: {reason}")
        self._MPI, self._comm = MPI, (MPI.COMM_WORLD if comm is None else comm).Dup()
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        node = self._comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank = node.Get_rank()
        node.Free()

    def __repr__(self):
        return f"MPIComm(rank={self.rank}, size={self.size}, timeout={self.timeout:g})"

    def allreduce_sum(self, array):
        """Sum the contiguous host ``array`` over all ranks, in place; returns it."""
        _check_host(array, "allreduce_sum")
        self.wait_for(self._comm.Iallreduce(self._MPI.IN_PLACE, array, op=self._MPI.SUM),
                      "allreduce_sum")
        return array

    def bcast_array(self, array, root=0):
        """Overwrite ``array`` on every rank with ``root``'s, in place; returns it."""
        _check_host(array, "bcast_array")
        self.wait_for(self._comm.Ibcast(array, root=root), "bcast_array")
        return array

    def bcast(self, obj, root=0):
        """``root``'s ``obj`` on every rank (pickled between this job's own processes)."""
        data = pickle.dumps(obj) if self.rank == root else b""
        length = np.array([len(data)], np.int64)
        self.wait_for(self._comm.Ibcast(length, root=root), "bcast")
        buffer = (np.frombuffer(data, np.uint8).copy() if self.rank == root
                  else np.empty(int(length[0]), np.uint8))
        self.wait_for(self._comm.Ibcast(buffer, root=root), "bcast")
        return obj if self.rank == root else pickle.loads(buffer.tobytes())

    def barrier(self):
        """Wait until every rank got here (or ``timeout``)."""
        self.wait_for(self._comm.Ibarrier(), "barrier")

    def wait(self):
        """Return at once: MPI collectives here complete before they return."""

    def wait_for(self, request, what):
        """Poll ``request`` until done; raise on another rank's failure notice or the deadline.

        MPI progresses a nonblocking collective only inside calls such as ``Test``, so polls
        follow each other closely, yielding the core between them (a tight spin starves the
        other ranks on a busy machine; a sleep stalls every round of a large all-reduce).
        After a second of waiting (another rank is validating or writing), polls are 1 ms
        apart.
        """
        started = time.monotonic()
        while not request.Test():
            self.check_notice()
            waited = time.monotonic() - started
            if waited > self.timeout:
                raise CommTimeout(
                    f"{what}: rank {self.rank} of {self.size} waited {self.timeout:g} s for the "
                    "other ranks (one is stuck or died; timeout= or GPUNN_COMM_TIMEOUT sets "
                    "the limit)")
            if waited > 1.0:
                time.sleep(1e-3)
            else:
                _yield_core()

    def check_notice(self):
        """Raise :class:`RankFailed` if another rank posted its failure (see :meth:`guard`)."""
        status = self._MPI.Status()
        if not self._comm.Iprobe(source=self._MPI.ANY_SOURCE, tag=_FAIL_TAG, status=status):
            return
        line = self._comm.recv(source=status.Get_source(), tag=_FAIL_TAG)
        print(f"gpunn: {line}", file=sys.stderr, flush=True)
        self._ack = self._comm.isend(None, dest=status.Get_source(), tag=_ACK_TAG)  # kept alive
        raise RankFailed(line)

    @contextmanager
    def guard(self, agreed=()):
        """Turn an uncaught exception on this rank into the end of every rank, never a hang.

        Args:
            agreed: exception types that every rank raises together (so none is left waiting),
                such as ``TrainingDiverged``: they pass through unchanged.
        """
        try:
            yield
        except agreed:
            raise
        except BaseException as exc:
            if self.size == 1:
                raise
            self.abort(exc)

    def abort(self, exc):
        """Tell the other ranks why (unless ``exc`` came from one), then ``MPI_Abort`` all."""
        if not isinstance(exc, RankFailed):
            traceback.print_exception(exc, file=sys.stderr)
            line = f"rank {self.rank} of {self.size} failed: {type(exc).__name__}: {exc}"
            print(f"gpunn: {line}", file=sys.stderr, flush=True)
            self._notify(line)
        self._comm.Abort(1)

    def _notify(self, line):
        """Post ``line`` to every other rank; wait up to GRACE s for their acknowledgements."""
        others = [r for r in range(self.size) if r != self.rank]
        self._notices = [self._comm.isend(line, dest=r, tag=_FAIL_TAG) for r in others]
        deadline, pending = time.monotonic() + min(GRACE, self.timeout), set(others)
        while pending and time.monotonic() < deadline:
            status = self._MPI.Status()
            if self._comm.Iprobe(source=self._MPI.ANY_SOURCE, tag=_ACK_TAG, status=status):
                self._comm.recv(source=status.Get_source(), tag=_ACK_TAG)
                pending.discard(status.Get_source())
            else:
                time.sleep(1e-3)


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


def get_comm(kind="auto", backend=None, timeout=None):
    """A communicator by name.

    Args:
        kind: ``None`` or ``"single"``: one process; ``"mpi"``: :class:`MPIComm`; ``"nccl"``:
            :class:`~gpunn.comm_nccl.NCCLComm`; ``"auto"``: one process unless a launcher
            started several ranks, then NCCL when ``backend`` is CUDA, else MPI. A
            communicator object is returned as is.
        backend: the backend the model lives on (decides ``"auto"``); None for the current.
        timeout: seconds a collective may wait (see :class:`MPIComm`).

    Returns:
        A communicator.
    """
    if kind is None or kind == "single":
        return SingleProcess()
    if not isinstance(kind, str):
        if callable(getattr(kind, "allreduce_sum", None)):
            return kind
        raise TypeError(f"comm: expected 'auto', 'mpi', 'nccl', None or a communicator, got "
                        f"{type(kind).__name__}")
    if kind == "auto":
        if launched_size() <= 1:
            return SingleProcess()
        if backend is None:
            from gpunn.backends import get_backend

            backend = get_backend()
        kind = "nccl" if backend.name == "cuda" else "mpi"
    if kind == "mpi":
        return MPIComm(timeout=timeout)
    if kind == "nccl":
        from gpunn.comm_nccl import NCCLComm

        return NCCLComm(timeout=timeout)
    raise ValueError(f"comm: expected 'auto', 'mpi', 'nccl' or None, got {kind!r}")


def _check_host(array, what):
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        raise TypeError(f"{what}: expected a C-contiguous NumPy array (MPIComm moves host "
                        f"arrays; CuPy arrays go through NCCLComm), got {type(array).__name__}")


def _check_timeout(timeout):
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
