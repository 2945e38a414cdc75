"""NCCL through CuPy: device arrays summed over GPUs, one GPU per rank, MPI at start-up.

MPI starts the ranks, tells each its rank on its node (so its GPU) and carries rank 0's NCCL
unique id to the others; after that, the step's all-reduce runs on the GPU stream through
``cupy.cuda.nccl``. Objects, barriers and the failure handling stay on MPI
(:class:`~gpunn.comm.mpi.MPIComm`).
"""

import socket
import time

import numpy as np

from gpunn._compat import cuda_device_count, import_nccl
from gpunn.comm.base import CommTimeout
from gpunn.comm.mpi import MPIComm


def choose_device(local_rank, device_count):
    """The GPU of a rank: the only one it sees, else its rank among the ranks on its node.

    A rank that sees exactly one GPU uses it (device 0): clusters often give every rank its
    own GPU through ``CUDA_VISIBLE_DEVICES``. A rank that sees several takes the one numbered
    by its rank on the node, so each rank of a node has its own.

    Args:
        local_rank: the rank on its node (from 0).
        device_count: GPUs visible to the rank (>= 1).

    Returns:
        The device number.
    """
    if device_count == 1:
        return 0
    if local_rank >= device_count:
        raise ValueError(f"NCCLComm: local rank {local_rank} has no GPU of its own: the node "
                         f"shows {device_count} GPU(s); start at most that many ranks per node, "
                         "or give each rank one GPU (CUDA_VISIBLE_DEVICES)")
    return local_rank


def refuse_shared_gpu(host, bus_id):
    """Raise on every rank when two ranks of one node would drive the same GPU.

    NCCL refuses that with a bare ``NCCL_ERROR_INVALID_USAGE`` (seen with two ranks on a
    one-GPU machine); this names the ranks and the GPU first. Ranks that cannot tell their
    GPU's PCI bus id (``bus_id`` None) are not compared.

    Args:
        host: the :class:`~gpunn.comm.mpi.MPIComm` of the ranks.
        bus_id: this rank's GPU's PCI bus id, or None.
    """
    mine = (socket.gethostname(), bus_id)
    every = [host.bcast(mine if rank == host.rank else None, root=rank)
             for rank in range(host.size)]
    users = {}
    for rank, (node, bus) in enumerate(every):
        if bus is not None:
            users.setdefault((node, bus), []).append(rank)
    shared = {key: ranks for key, ranks in users.items() if len(ranks) > 1}
    if shared:
        (node, bus), ranks = next(iter(shared.items()))
        raise RuntimeError(f"NCCLComm: ranks {ranks} would all use the GPU at PCI bus {bus} "
                           f"on {node}: NCCL needs one GPU per rank; start at most as many "
                           "ranks per node as it has GPUs (or use the 'mpi' communicator on "
                           "the cpu backend)")


def connect(nccl, host):
    """An NCCL communicator over ``host``'s ranks, rank 0's unique id sent through MPI.

    Args:
        nccl: the ``cupy.cuda.nccl`` module.
        host: the :class:`~gpunn.comm.mpi.MPIComm` of the same ranks.

    Returns:
        ``nccl.NcclCommunicator(size, unique_id, rank)``.
    """
    uid = host.bcast(nccl.get_unique_id() if host.rank == 0 else None)
    # NCCL's set-up blocks without a time-out: only enter it once every rank is here.
    host.barrier()
    return nccl.NcclCommunicator(host.size, uid, host.rank)


class NCCLComm:
    """NCCL through CuPy for CuPy arrays; one GPU per rank (see :func:`choose_device`).

    Making it makes that GPU current, so make it before the model (``fit(comm=...)`` with
    a communicator object, not a name, when the model is built after it).

    Args:
        host: the :class:`~gpunn.comm.mpi.MPIComm` that starts it and carries everything but the
            arrays; None makes one on ``COMM_WORLD``.
        timeout: seconds a collective may wait (see :class:`~gpunn.comm.mpi.MPIComm`).
        cupy, nccl: the modules; None imports them (through ``gpunn._compat``). Tests pass
            stand-ins, as the CUDA backend takes its array module.
    """

    name = "nccl"

    def __init__(self, host=None, timeout=None, cupy=None, nccl=None):
        self.host = MPIComm(timeout=timeout) if host is None else host
        self.rank, self.size = self.host.rank, self.host.size
        self.local_rank, self.timeout = self.host.local_rank, self.host.timeout
        # A rank that cannot start (no NCCL, no GPU of its own) stops every rank at once
        # through the failure path, instead of leaving them waiting in connect() until the
        # timeout (see gpunn.comm).
        with self.host.guard():
            self._start(cupy, nccl)

    def _start(self, cupy, nccl):
        if cupy is None or nccl is None:
            cupy, nccl, reason = import_nccl()
            if nccl is None:
                raise ImportError(f"NCCLComm: {reason}")
        count, reason = cuda_device_count(cupy)
        if count == 0:
            raise RuntimeError(f"NCCLComm: rank {self.rank}: {reason}")
        self.device = choose_device(self.local_rank, count)
        device = cupy.cuda.Device(self.device)
        device.use()
        refuse_shared_gpu(self.host, getattr(device, "pci_bus_id", None))
        self._cupy, self._nccl = cupy, nccl
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32,
                       np.dtype(np.float64): nccl.NCCL_FLOAT64}
        self._comm = connect(nccl, self.host)

    def __repr__(self):
        return f"NCCLComm(rank={self.rank}, size={self.size}, timeout={self.timeout:g})"

    def allreduce_sum(self, array):
        """Sum the CuPy ``array`` over the ranks in place, queued on the current stream."""
        ptr, count, dtype = self._args(array, "allreduce_sum")
        self._comm.allReduce(ptr, ptr, count, dtype, self._nccl.NCCL_SUM, self._stream())
        return array

    def bcast_array(self, array, root=0):
        """Overwrite ``array`` with ``root``'s, in place, queued on the current stream."""
        ptr, count, dtype = self._args(array, "bcast_array")
        self._comm.bcast(ptr, count, dtype, root, self._stream())
        return array

    def bcast(self, obj, root=0):
        """``root``'s ``obj`` on every rank, through MPI."""
        return self.host.bcast(obj, root)

    def barrier(self):
        """Wait until every rank got here, through MPI."""
        self.host.barrier()

    def guard(self, agreed=()):
        """See :meth:`gpunn.comm.mpi.MPIComm.guard`."""
        return self.host.guard(agreed)

    def wait(self):
        """Wait for the queued collectives; past ``timeout``, abort NCCL and raise.

        Raises:
            CommTimeout: the collectives did not finish in time (a rank is stuck or gone).
            RankFailed: another rank posted its failure meanwhile.
        """
        event = self._cupy.cuda.Event(disable_timing=True)
        event.record()
        started = time.monotonic()
        while not event.done:
            self._comm.check_async_error()
            self.host.check_notice()
            if time.monotonic() - started > self.timeout:
                self._comm.abort()
                raise CommTimeout(f"NCCL: rank {self.rank} of {self.size} waited "
                                  f"{self.timeout:g} s for its collectives")
            time.sleep(1e-4)

    def _stream(self):
        return self._cupy.cuda.get_current_stream().ptr

    def _args(self, array, what):
        dtype = self._types.get(np.dtype(array.dtype))
        if not isinstance(array, self._cupy.ndarray) or dtype is None:
            raise TypeError(f"{what}: expected a float32/float64 CuPy array, got "
                            f"{type(array).__name__} of {getattr(array, 'dtype', None)}")
        if not array.flags.c_contiguous:
            raise ValueError(f"{what}: expected a C-contiguous array, got a strided one")
        if array.device.id != self.device:
            raise ValueError(f"{what}: expected an array on this rank's GPU {self.device}, got "
                             f"one on GPU {array.device.id}: make the communicator before the "
                             "model, so that the model is made on the rank's GPU")
        return array.data.ptr, array.size, dtype
