"""Run under ``mpiexec -n K python mpi_worker.py MODE OUT_DIR [TIMEOUT]`` by test_distributed.

Each mode exercises the communicators on real ranks and writes what it saw to
``OUT_DIR/rank<r>.npz`` for the test (in the parent process) to check against NumPy.
"""

import os
import sys
import time
from types import SimpleNamespace

import numpy as np

import gpunn
from gpunn.comm import MPIComm, NCCLComm, get_comm

# The data-parallel runs: (rows, per-rank batch). 17 rows at 2 x 4 leave a last global batch
# of one row, so one rank's shard is empty; 23 rows leave 7 (shards of 3 and 4).
TRAIN_RUNS = {"uneven": (23, 4), "empty-shard": (17, 4)}


def rank_data(rank, n=1000, dtype=np.float32):
    """What rank ``rank`` contributes; the test recomputes it to form the expected sum."""
    return np.random.default_rng(rank).standard_normal(n).astype(dtype)


def collectives(comm, out):
    """All-reduce (flat array, 0-d loss sum), broadcasts and a barrier."""
    flat, loss = rank_data(comm.rank), np.array(comm.rank + 0.5, np.float64)
    comm.allreduce_sum(flat)
    comm.allreduce_sum(loss)
    params = rank_data(100 + comm.rank, n=7, dtype=np.float64)
    comm.bcast_array(params, root=1)
    obj = comm.bcast({"from": comm.rank, "tuple": (1, 2.5)}, root=1)
    comm.barrier()
    try:
        comm.allreduce_sum(flat[::2])
        rejected = ""
    except TypeError as exc:
        rejected = str(exc)
    np.savez(out, flat=flat, loss=loss, params=params, obj_from=obj["from"],
             obj_tuple=np.array(obj["tuple"]), rank=comm.rank, size=comm.size,
             rejected=rejected, kind=type(get_comm("auto")).__name__)


def failure(comm, out):
    """Rank 1 raises between collectives; rank 0 waits in the next all-reduce."""
    flat = rank_data(comm.rank)
    comm.allreduce_sum(flat)
    if comm.rank == 1:
        raise RuntimeError("boom on purpose")
    comm.allreduce_sum(flat)


def hang(comm, out):
    """Rank 1 never reaches the all-reduce (it sleeps); rank 0's times out."""
    if comm.rank == 1:
        time.sleep(60)
    comm.allreduce_sum(rank_data(comm.rank))


class FakeDeviceArray:
    """A host array posing as a CuPy array on GPU ``device``: ``data.ptr``, ``size``,
    ``dtype``, ``flags``, ``device.id``."""

    registry = {}

    def __init__(self, array, device):
        self.array, self.size, self.dtype, self.flags = array, array.size, array.dtype, array.flags
        self.data, self.device = SimpleNamespace(ptr=array.ctypes.data), SimpleNamespace(id=device)
        self.registry[self.data.ptr] = array


def fake_modules(mpi, calls, done=True, devices=2):
    """Stand-ins for ``cupy`` and ``cupy.cuda.nccl`` whose collectives run over MPI (their
    events report ``done``; the rank sees ``devices`` GPUs)."""

    class Communicator:
        def __init__(self, size, uid, rank):
            calls.append(("init", size, uid, rank))

        def check_async_error(self):
            calls.append(("check_async_error",))

        def abort(self):
            calls.append(("abort",))

        def allReduce(self, send, recv, count, dtype, op, stream):  # noqa: N802 (CuPy's name)
            calls.append(("allReduce", send == recv, count, dtype, op, stream))
            mpi.allreduce_sum(FakeDeviceArray.registry[recv][:count])

    nccl = SimpleNamespace(NCCL_FLOAT32=7, NCCL_FLOAT64=8, NCCL_SUM=0,
                           NcclCommunicator=Communicator,
                           get_unique_id=lambda: f"uid-of-rank-{mpi.rank}".encode())
    device = SimpleNamespace(use=lambda: None)
    cuda = SimpleNamespace(
        runtime=SimpleNamespace(getDeviceCount=lambda: devices),
        Device=lambda number: calls.append(("device", number)) or device,
        get_current_stream=lambda: SimpleNamespace(ptr=1234),
        Event=lambda disable_timing: SimpleNamespace(record=lambda: None, done=done))
    return SimpleNamespace(cuda=cuda, ndarray=FakeDeviceArray), nccl


def nccl_logic(comm, out):
    """NCCLComm with stand-in modules: the id exchange, the GPU choice, the call mapping."""
    calls = []
    cupy, nccl = fake_modules(comm, calls)
    nc = NCCLComm(host=comm, cupy=cupy, nccl=nccl)
    flat = rank_data(comm.rank)
    nc.allreduce_sum(FakeDeviceArray(flat, device=comm.local_rank))
    try:
        nc.allreduce_sum(FakeDeviceArray(flat, device=1 - comm.local_rank))
        wrong_gpu = ""
    except ValueError as exc:
        wrong_gpu = str(exc)
    init = next(c for c in calls if c[0] == "init")
    reduce_call = next(c for c in calls if c[0] == "allReduce")
    np.savez(out, flat=flat, device=next(c for c in calls if c[0] == "device")[1],
             init_size=init[1], init_uid=init[2].decode(), init_rank=init[3],
             reduce_call=np.array(reduce_call[1:]), local_rank=comm.local_rank,
             wrong_gpu=wrong_gpu)


def nccl_one_gpu(comm, out):
    """Every rank sees one GPU (CUDA_VISIBLE_DEVICES per rank): each uses its device 0."""
    calls = []
    cupy, nccl = fake_modules(comm, calls, devices=1)
    nc = NCCLComm(host=comm, cupy=cupy, nccl=nccl)
    flat = rank_data(comm.rank)
    nc.allreduce_sum(FakeDeviceArray(flat, device=0))
    np.savez(out, flat=flat, device=nc.device, used=[c[1] for c in calls if c[0] == "device"])


def nccl_refused(comm, out):
    """Rank 1 poses as a node's third rank with two GPUs, so it has no GPU of its own; nothing
    guards this (as in a user's script, get_comm comes before fit): NCCLComm itself must
    stop rank 0, which waits for rank 1 to connect."""
    calls = []
    cupy, nccl = fake_modules(comm, calls, devices=2)
    if comm.rank == 1:
        comm.local_rank = 2
    NCCLComm(host=comm, cupy=cupy, nccl=nccl)
    np.savez(out, connected=True)


def blobs(n, n_in=5, n_classes=3, seed=0):
    """Gaussian inputs around fixed class centres (the same on every rank)."""
    centres = np.random.default_rng(100).normal(size=(n_classes, n_in)) * 2
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    return centres[y] + rng.normal(size=(n, n_in)), y


def classifier():
    return gpunn.MLP([5, 8, 3], activation="tanh", output="softmax", dtype="float64", seed=3)


def train_once(comm, n, batch_size, optimizer=None, **kwargs):
    """``fit`` of :func:`classifier` on ``blobs(n)`` (Adam, lr 0.05, unless ``optimizer``);
    the model and its history."""
    model = classifier()
    optimizer = gpunn.Adam(lr=0.05) if optimizer is None else optimizer
    history = gpunn.fit(model, *blobs(n), optimizer=optimizer, batch_size=batch_size,
                        seed=7, record_steps=True, comm=comm, **kwargs)
    return model, history


# Streamed in chunks (3 of 16 rows: 33 held), with row weights staged beside the rows and the
# last rows held out.
STREAMED = {"chunk_rows": 33, "validation_split": 0.2,
            "sample_weight": np.random.default_rng(9).uniform(0.2, 2.0, 60)}


def clipping_adam():
    """Adam that clips every step's gradient norm (the runs of ``train_once`` exceed it)."""
    return gpunn.Adam(lr=0.05, clip_norm=0.05)


def train(comm, out):
    """Data-parallel fits: straight, checkpointed and resumed, and one that diverges."""
    saved = {}
    for name, (n, b) in TRAIN_RUNS.items():
        model, history = train_once(comm, n, b, epochs=3)
        saved[f"{name}_params"] = model.flat_params
        saved[f"{name}_steps"] = np.array(history.step_loss)
        saved[f"{name}_meta"] = np.array([history.batch_size, history.n_samples])
    path = f"{out[:-len('rank0.npz')]}/fit.ckpt.npz"
    train_once(comm, 23, 4, epochs=2, checkpoint_path=path)
    saved["ckpt_exists_after_fit"] = np.array(os.path.exists(path))
    model, history = train_once(comm, 23, 4, epochs=3, resume_from=path)
    saved["resumed_params"], saved["resumed_steps"] = model.flat_params, history.step_loss
    # Clipped after the all-reduce, on the global batch's gradient: as one process.
    model, _ = train_once(comm, 23, 4, epochs=3, optimizer=clipping_adam())
    saved["clipped_params"] = model.flat_params
    model, history = train_once(comm, 60, 4, epochs=2, **STREAMED)
    saved["streamed_params"], saved["streamed_steps"] = model.flat_params, history.step_loss
    saved["streamed_val"] = np.array(history.val_loss)
    saved["diverged"] = diverge(comm)  # 2 x 4 rows: one process at 8 diverges too
    np.savez(out, **saved)


def diverge(comm, batch_size=4):
    """A regression whose SGD steps blow up; the TrainingDiverged message (or "")."""
    X, y = blobs(23)
    model = gpunn.MLP([5, 8, 1], activation="relu", dtype="float64", seed=3)
    try:
        with np.errstate(all="ignore"):  # the overflow is the point
            gpunn.fit(model, X, y.astype(np.float64), optimizer="sgd", lr=1.0,
                      batch_size=batch_size, seed=7, epochs=3, comm=comm)
    except gpunn.TrainingDiverged as exc:
        return str(exc)
    return ""


def fit_failure(comm, out):
    """A callback fails on rank 1 only, after the first epoch."""
    def callback(epoch, history, model):
        if comm.rank == 1:
            raise RuntimeError("callback failed on purpose")

    train_once(comm, 23, 4, epochs=3, callbacks=[callback])


def early_failure(comm, out):
    """Rank 1 alone asks to resume from a file that is not there (no guard around fit, as
    in a user's script): both ranks must end at once, not at the time-out."""
    train_once(comm, 23, 4, epochs=2,
               resume_from=f"{out[:-len('rank0.npz')]}/missing.npz" if comm.rank else None)


def disagree(comm, out):
    """Rank 1 uses another learning rate and one more row: every rank fails, naming both."""
    try:
        model = classifier()
        gpunn.fit(model, *blobs(23 + comm.rank), optimizer="adam", lr=0.05 * (1 + comm.rank),
                  batch_size=4, epochs=2, seed=7, comm=comm)
        message = ""
    except gpunn.comm.RanksDisagree as exc:
        message = str(exc)
    np.savez(out, message=message)


MODES = {"collectives": collectives, "failure": failure, "hang": hang, "nccl": nccl_logic,
         "nccl-one-gpu": nccl_one_gpu, "nccl-refused": nccl_refused, "train": train,
         "fit-failure": fit_failure, "early-failure": early_failure, "disagree": disagree}
# Modes that test a failure path of their own (no guard around them, as in a user's script).
UNGUARDED = {"nccl-refused", "early-failure", "disagree"}


def main(mode, out_dir, timeout=None):
    comm = MPIComm(timeout=timeout)
    out = f"{out_dir}/rank{comm.rank}.npz"
    if mode in UNGUARDED:
        MODES[mode](comm, out)
        return
    with comm.guard():
        MODES[mode](comm, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
