"""One training step of MLP 784-1024-1024-10 (gather, forward, loss, backward, Adam): gpunn,
its GEMM floor and PyTorch eager, per batch size (the contenders of
``gpunn bench --sections step``)."""

import pytest

from gpunn.bench import step

SIZES = [784, 1024, 1024, 10]
BATCHES = [32, 128, 512, 2048]


@pytest.fixture(scope="module")
def data():
    return step.synthetic(max(BATCHES), SIZES[0], SIZES[-1])


@pytest.mark.parametrize("batch", BATCHES)
def test_gpunn_step(benchmark, data, batch):
    benchmark.group = f"step batch {batch}"
    benchmark(step.gpunn_step(SIZES, *data, batch)[0])


@pytest.mark.parametrize("batch", BATCHES)
def test_gemm_floor(benchmark, cpu, batch):
    benchmark.group = f"step batch {batch}"
    benchmark(step.gemm_floor(SIZES, batch, cpu))


@pytest.mark.parametrize("fused", [False, True], ids=["default", "fused"])
@pytest.mark.parametrize("batch", BATCHES)
def test_torch_step(benchmark, torch, data, batch, fused):
    benchmark.group = f"step batch {batch}"
    benchmark(step.torch_step(torch, SIZES, *data, batch, fused=fused))
