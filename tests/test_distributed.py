"""Data-parallel training across processes: the communicators under a real ``mpiexec``.

Each MPI test launches ``mpiexec -n 2`` on a small script (``mpi_worker.py``) and checks what
every rank wrote against NumPy in this process. Without mpi4py and a launcher they skip.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpi_worker import (
    STREAMED,
    TRAIN_RUNS,
    clipping_adam,
    diverge,
    fake_modules,
    rank_data,
    train_once,
)

import gpunn
from gpunn.comm import CommTimeout, MPIComm, NCCLComm, SingleProcess, get_comm, launched_size
from gpunn.comm.nccl import choose_device, refuse_shared_gpu

HERE = Path(__file__).parent
LAUNCHER_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                 "SLURM_PROCID", "SLURM_NTASKS")


def mpiexec(ranks, *args, timeout=60):
    """Run ``mpiexec -n ranks python *args`` from the tests folder; the finished process."""
    pytest.importorskip("mpi4py")
    launcher = shutil.which("mpiexec", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if launcher is None:
        pytest.skip("no mpiexec (install the 'mpi' extra: it brings MPICH's)")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    # Open MPI refuses to start as root (the GPU image runs as root) unless both are set;
    # MPICH ignores them.
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    # These are MPI-on-CPU tests (NCCL through stand-ins): the GPU check runs the suite with
    # GPUNN_BACKEND=cuda, and two ranks on its one GPU cannot use NCCL.
    env["GPUNN_BACKEND"] = "cpu"
    return subprocess.run([launcher, "-n", str(ranks), sys.executable, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=HERE, env=env)


def results(tmp_path, ranks):
    return [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(ranks)]


def test_collectives_match_numpy_on_every_rank(tmp_path):
    done = mpiexec(2, "mpi_worker.py", "collectives", tmp_path)
    assert done.returncode == 0, done.stderr
    expected = np.add(rank_data(0), rank_data(1), dtype=np.float32)
    params = rank_data(101, n=7, dtype=np.float64)
    for r, got in enumerate(results(tmp_path, 2)):
        assert (int(got["rank"]), int(got["size"])) == (r, 2)
        np.testing.assert_allclose(got["flat"], expected, rtol=1e-6, atol=1e-6)
        assert float(got["loss"]) == 0.5 + 1.5
        np.testing.assert_array_equal(got["params"], params)
        assert int(got["obj_from"]) == 1 and got["obj_tuple"].tolist() == [1, 2.5]
        assert "expected a C-contiguous NumPy array" in str(got["rejected"])
        assert str(got["kind"]) == "MPIComm"


def test_a_rank_that_raises_stops_every_rank_with_its_error(tmp_path):
    done = mpiexec(2, "mpi_worker.py", "failure", tmp_path, timeout=60)
    assert done.returncode != 0
    line = "gpunn: rank 1 of 2 failed: RuntimeError: boom on purpose"
    # Printed by the failing rank and, after the notice reached it, by the waiting rank.
    assert done.stderr.count(line) == 2, done.stderr


def test_a_rank_that_hangs_times_out_the_others(tmp_path):
    done = mpiexec(2, "mpi_worker.py", "hang", tmp_path, 1, timeout=50)
    assert done.returncode != 0
    assert ("gpunn: rank 0 of 2 failed: CommTimeout: allreduce_sum: rank 0 of 2 waited 1 s"
            in done.stderr), done.stderr


def test_nccl_id_exchange_device_choice_and_call_mapping(tmp_path):
    done = mpiexec(2, "mpi_worker.py", "nccl", tmp_path)
    assert done.returncode == 0, done.stderr
    expected = np.add(rank_data(0), rank_data(1), dtype=np.float32)
    for r, got in enumerate(results(tmp_path, 2)):
        assert (int(got["init_size"]), str(got["init_uid"]), int(got["init_rank"])) == (
            2, "uid-of-rank-0", r)
        assert int(got["device"]) == int(got["local_rank"]) == r
        # In place (send == recv), every element, float32, sum, the current stream.
        assert got["reduce_call"].tolist() == [True, 1000, 7, 0, 1234]
        np.testing.assert_allclose(got["flat"], expected, rtol=1e-6, atol=1e-6)
        assert f"expected an array on this rank's GPU {r}, got one on GPU {1 - r}" in str(
            got["wrong_gpu"])


@pytest.mark.parametrize("local_rank, visible, device", [
    (0, 2, 0), (1, 2, 1), (3, 4, 3), (0, 1, 0), (1, 1, 0), (7, 1, 0)],
    ids=["rank0-of-2", "rank1-of-2", "rank3-of-4", "own-gpu-rank0", "own-gpu-rank1",
         "own-gpu-rank7"])
def test_one_gpu_per_rank(local_rank, visible, device):
    """Several visible GPUs: the local rank's; exactly one (CUDA_VISIBLE_DEVICES per rank):
    that one, whatever the local rank."""
    assert choose_device(local_rank, visible) == device


def test_a_rank_without_a_gpu_of_its_own_is_refused():
    with pytest.raises(ValueError, match="local rank 2 has no GPU of its own: the node shows 2"):
        choose_device(2, 2)


def test_nccl_with_one_visible_gpu_per_rank(tmp_path):
    done = mpiexec(2, "mpi_worker.py", "nccl-one-gpu", tmp_path)
    assert done.returncode == 0, done.stderr
    expected = np.add(rank_data(0), rank_data(1), dtype=np.float32)
    for got in results(tmp_path, 2):
        assert int(got["device"]) == 0 and got["used"].tolist() == [0]
        np.testing.assert_allclose(got["flat"], expected, rtol=1e-6, atol=1e-6)


def test_a_refused_nccl_rank_stops_the_others_at_once(tmp_path):
    """The waiting rank would wait 120 s (its timeout) for the refused one without the failure
    path; the launch is given 60 s, and the waiting rank must print the refused rank's line
    (it got the notice, it did not time out)."""
    done = mpiexec(2, "mpi_worker.py", "nccl-refused", tmp_path, 120, timeout=60)
    assert done.returncode != 0
    line = "gpunn: rank 1 of 2 failed: ValueError: NCCLComm: local rank 2 has no GPU of its own"
    assert done.stderr.count(line) == 2, done.stderr
    assert not (tmp_path / "rank0.npz").exists()


def test_single_process_is_the_identity():
    comm, flat = SingleProcess(), np.arange(3.0)
    assert comm.allreduce_sum(flat) is flat and flat.tolist() == [0.0, 1.0, 2.0]
    assert comm.bcast({"a": 1}) == {"a": 1} and (comm.rank, comm.size) == (0, 1)
    with pytest.raises(KeyError), comm.guard():
        raise KeyError("passes through")


@pytest.mark.parametrize("environ, size", [
    ({}, 1), ({"PMI_SIZE": "4"}, 4), ({"OMPI_COMM_WORLD_SIZE": "3"}, 3),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}, 8), ({"SLURM_NTASKS": "8"}, 1)],
    ids=["none", "hydra", "openmpi", "srun", "slurm-batch-shell"])
def test_launched_size_reads_the_launchers_variables(environ, size):
    assert launched_size(environ) == size


def test_get_comm_without_a_launcher_is_single_process(monkeypatch):
    for key in LAUNCHER_VARS:
        monkeypatch.delenv(key, raising=False)
    assert isinstance(get_comm("auto"), SingleProcess)
    assert isinstance(get_comm(None), SingleProcess)
    mine = SingleProcess()
    assert get_comm(mine) is mine


@pytest.mark.parametrize("kind, error, match", [
    ("gloo", ValueError, "comm: expected 'auto', 'mpi', 'nccl' or None, got 'gloo'"),
    (3, TypeError, "comm: expected 'auto', 'mpi', 'nccl', None or a communicator, got int")],
    ids=["unknown-name", "not-a-communicator"])
def test_get_comm_names_bad_input(kind, error, match):
    with pytest.raises(error, match=match):
        get_comm(kind)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_bad_timeout_is_named(monkeypatch, value):
    pytest.importorskip("mpi4py")
    monkeypatch.setenv("GPUNN_COMM_TIMEOUT", value)
    with pytest.raises(ValueError, match="GPUNN_COMM_TIMEOUT: expected a positive number"):
        MPIComm()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """What each of 2 ranks saw in the ``train`` mode (one launch for the tests below)."""
    out = tmp_path_factory.mktemp("train")
    done = mpiexec(2, "mpi_worker.py", "train", out)
    assert done.returncode == 0, done.stderr
    return results(out, 2)


def test_two_ranks_train_like_one_process_at_the_global_batch(trained):
    ranks = trained
    for name, (n, b) in TRAIN_RUNS.items():
        model, history = train_once(None, n, 2 * b, epochs=3)
        for got in ranks:
            assert got[f"{name}_meta"].tolist() == [2 * b, n]
            np.testing.assert_allclose(got[f"{name}_steps"], history.step_loss, rtol=1e-12)
            np.testing.assert_allclose(got[f"{name}_params"], model.flat_params,
                                       rtol=1e-10, atol=1e-12)
    model, history = train_once(None, 23, 8, epochs=3)
    for got in ranks:
        # Two epochs, a checkpoint written by rank 0, a third epoch resumed from it.
        assert bool(got["ckpt_exists_after_fit"])
        np.testing.assert_allclose(got["resumed_params"], model.flat_params, rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(got["resumed_steps"], history.step_loss, rtol=1e-12)


def test_two_ranks_clip_the_global_gradient_like_one_process(trained):
    """Clipping by norm comes after the all-reduce: each rank clips the global batch's mean
    gradient, as one process at the global batch does (clipping each shard would not)."""
    model, _ = train_once(None, 23, 8, epochs=3, optimizer=clipping_adam())
    plain, _ = train_once(None, 23, 8, epochs=3)
    assert not np.allclose(model.flat_params, plain.flat_params, rtol=1e-3)
    for got in trained:
        np.testing.assert_allclose(got["clipped_params"], model.flat_params, rtol=1e-10,
                                   atol=1e-12)


def test_two_ranks_stream_with_weights_and_a_split_like_one_process(trained):
    """Streamed chunks, sample weights staged with them, validation_split's tail: 2 ranks
    at 4 rows each train and validate as one process at 8."""
    model, history = train_once(None, 60, 8, epochs=2, **STREAMED)
    for got in trained:
        np.testing.assert_allclose(got["streamed_params"], model.flat_params, rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(got["streamed_steps"], history.step_loss, rtol=1e-12)
        np.testing.assert_allclose(got["streamed_val"], history.val_loss, rtol=1e-12)


def test_divergence_stops_every_rank_at_the_same_step(trained):
    messages = [str(got["diverged"]) for got in trained]
    alone = diverge(None, batch_size=8)
    where = re.compile(r"^training diverged at epoch (\d+), step (\d+): the loss is inf")
    assert where.match(alone), alone
    assert messages[0] == messages[1]
    assert where.match(messages[0]).groups() == where.match(alone).groups()


def test_a_rank_failing_inside_fit_stops_every_rank(tmp_path):
    done = mpiexec(2, "mpi_worker.py", "fit-failure", tmp_path)
    assert done.returncode != 0
    line = "gpunn: rank 1 of 2 failed: RuntimeError: callback failed on purpose"
    assert done.stderr.count(line) == 2, done.stderr


def test_cli_distributed_prints_and_saves_on_rank_0_only(tmp_path):
    done = mpiexec(2, "-m", "gpunn.cli", "train", "--distributed", "--dataset", "synthetic",
                   "--hidden", "16", "--epochs", "2", "--batch-size", "16", "--save",
                   tmp_path / "model.npz")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("distributed: 2 rank(s) through mpi, each 16 rows of every global batch") == 1
    assert len(re.findall(r"^epoch 1/2  cost [\d.]+  test_acc [\d.]+", out, re.MULTILINE)) == 1
    assert out.count("train accuracy") == 1 and out.count("saved: ") == 1
    assert [layer.n_out for layer in gpunn.load(tmp_path / "model.npz").layers] == [16, 3]


class TwoRanks(SingleProcess):
    """Says it has two ranks: enough for fit's argument checks, which come before any
    collective."""

    size = 2


@pytest.mark.parametrize("n, batch_size, match", [
    (11, 6, r"batch_size: expected an integer in \[1, 5\], got 6"),
    (1, None, r"X: expected at least one row per rank \(2 ranks\), got 1")],
    ids=["batch-over-a-share", "fewer-rows-than-ranks"])
def test_fit_checks_the_per_rank_batch(n, batch_size, match):
    X, y = np.random.default_rng(0).normal(size=(n, 3)), np.arange(n) % 2
    model = gpunn.MLP([3, 4, 2], output="softmax")
    with pytest.raises(ValueError, match=match):
        gpunn.fit(model, X, y, batch_size=batch_size, comm=TwoRanks())


class OneRankHost(SingleProcess):
    """What NCCLComm asks of its MPI host, for one rank without MPI."""

    timeout = 0.2

    def check_notice(self):
        pass


@pytest.mark.parametrize("done", [True, False], ids=["finished", "stuck"])
def test_nccl_wait_returns_or_times_out_and_aborts(done):
    calls = []
    cupy, nccl = fake_modules(SingleProcess(), calls, done=done)
    nc = NCCLComm(host=OneRankHost(), cupy=cupy, nccl=nccl)
    if done:
        nc.wait()
        assert ("abort",) not in calls
    else:
        with pytest.raises(CommTimeout, match="NCCL: rank 0 of 1 waited 0.2 s"):
            nc.wait()
        assert calls[-1] == ("abort",) and ("check_async_error",) in calls


class _Ranks:
    """A host communicator whose bcast from rank r brings rank r's entry of ``entries``."""

    def __init__(self, rank, entries):
        self.rank, self.size, self.entries = rank, len(entries), entries

    def bcast(self, obj, root=0):
        return obj if root == self.rank else self.entries[root]


@pytest.mark.parametrize("rank", [0, 1])
def test_two_ranks_on_one_gpu_are_refused_by_name(rank):
    node = socket.gethostname()
    entries = [(node, "0000:19:00.0"), (node, "0000:19:00.0")]
    with pytest.raises(RuntimeError, match=r"ranks \[0, 1\] would all use the GPU at PCI bus "
                                           r"0000:19:00.0"):
        refuse_shared_gpu(_Ranks(rank, entries), "0000:19:00.0")


@pytest.mark.parametrize("entries", [
    [("a", "0000:19:00.0"), ("a", "0000:3b:00.0")],   # two GPUs of one node
    [("a", "0000:19:00.0"), ("b", "0000:19:00.0")],   # the same slot on two nodes
    [("a", None), ("a", None)],                        # GPUs that cannot tell their bus
], ids=["two-gpus", "two-nodes", "unknown-bus"])
def test_ranks_on_their_own_gpus_pass(entries):
    refuse_shared_gpu(_Ranks(0, entries), entries[0][1])


def test_a_rank_failing_before_the_training_loop_stops_every_rank_at_once(tmp_path):
    """Rank 1's missing resume file: rank 0, already in fit's first collective, would wait
    120 s (its timeout) without the guard around fit's setup; the launch is given 60 s, and
    rank 0 must print rank 1's line (it got the notice, it did not time out).

    The same fit runs here first, so the ranks load compiled kernels from Numba's cache: a rank
    still compiling would reach its next collective after rank 1's grace period (GRACE), and
    MPI_Abort would end it before it printed the notice (seen once in CI, cold cache)."""
    train_once(SingleProcess(), 23, 4, epochs=2)
    done = mpiexec(2, "mpi_worker.py", "early-failure", tmp_path, 120, timeout=60)
    assert done.returncode != 0
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("gpunn: rank 1 of 2 failed")]
    assert len(lines) == 2 and "missing.npz" in lines[0], done.stderr


def test_ranks_that_disagree_fail_together_naming_what_differs(tmp_path):
    done = mpiexec(2, "mpi_worker.py", "disagree", tmp_path, 120, timeout=60)
    assert done.returncode == 0, done.stderr
    messages = [str(got["message"]) for got in results(tmp_path, 2)]
    assert messages[0] == messages[1], messages
    assert "rows (rank 0: 23; rank 1: 24)" in messages[0], messages[0]
    assert "lr (rank 0: 0.05; rank 1: 0.1)" in messages[0], messages[0]
    assert "epochs" not in messages[0] and "architecture" not in messages[0]
