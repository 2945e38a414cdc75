"""MPI through mpi4py: host (NumPy) arrays, one process per rank; and the failure handling
every multi-rank communicator uses (see :mod:`gpunn.comm`)."""

import os
import pickle
import sys
import time
import traceback
from contextlib import contextmanager

import numpy as np

from gpunn._compat import import_mpi
from gpunn.comm.base import CommTimeout, RankFailed, check_timeout

GRACE = 2.0  # seconds a failing rank waits for the others to acknowledge its notice
_FAIL_TAG, _ACK_TAG = 31_001, 31_002
_yield_core = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))  # none on Windows


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
        self.timeout = check_timeout(timeout)
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


def _check_host(array, what):
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        raise TypeError(f"{what}: expected a C-contiguous NumPy array (MPIComm moves host "
                        f"arrays; CuPy arrays go through NCCLComm), got "
                        f"{type(array).__module__}.{type(array).__qualname__}")
