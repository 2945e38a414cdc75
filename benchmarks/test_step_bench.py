"""One training step of MLP 784-1024-1024-10 (gather, forward, loss, backward, Adam): gpunn,
PyTorch eager, plain NumPy and the step's GEMM floor, per batch size."""

import pytest

from gpunn.bench import peers

SIZES = [784, 1024, 1024, 10]
BATCHES = [32, 128, 512, 2048]


@pytest.fixture(scope="module")
def data():
    return peers.synthetic(max(BATCHES), SIZES[0], SIZES[-1])


@pytest.mark.parametrize("batch", BATCHES)
def test_gpunn_step(benchmark, data, batch):
    benchmark.group = f"step batch {batch}"
    step, _ = peers.gpunn_step(SIZES, *data, batch)
    benchmark(step)


@pytest.mark.parametrize("fused", [False, True], ids=["default", "fused"])
@pytest.mark.parametrize("batch", BATCHES)
def test_torch_step(benchmark, torch, data, batch, fused):
    benchmark.group = f"step batch {batch}"
    benchmark(peers.torch_step(torch, SIZES, *data, batch, fused=fused))


@pytest.mark.parametrize("batch", BATCHES)
def test_numpy_step(benchmark, data, batch):
    benchmark.group = f"step batch {batch}"
    benchmark(peers.numpy_step(SIZES, *data, batch))


@pytest.mark.parametrize("batch", BATCHES)
def test_gemm_floor(benchmark, cpu, batch):
    benchmark.group = f"step batch {batch}"
    benchmark(peers.gemm_floor(SIZES, batch, cpu))
