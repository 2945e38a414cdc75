"""The CUDA backend's module loader without a GPU (review items 2 and 6): the cubin it writes
holds every byte NVRTC returned, concurrent loads compile once and never expose a partial file,
and the cache key changes with the NVRTC and driver versions.

``cupy.cuda.nvrtc`` needs no device; the device and ``RawModule`` are stand-ins that record
what the loader asks for, and read back the file it hands over.
"""

import threading
from types import SimpleNamespace

import pytest
from gpunn.kernels import cuda_source

from gpunn.backends.nvrtc import NvrtcLoader, cached_binary, elf_extent, nvrtc_compile

cupy = pytest.importorskip("cupy", reason="cupy is not installed (pip install -e .[test])")
nvrtc = cupy.cuda.nvrtc


def test_the_cubin_holds_every_byte_nvrtc_wrote():
    """CuPy's getCUBIN drops the last byte, which for gpunn's modules ends the ELF program
    header table: the written cubin must be as long as its own headers say."""
    cubin, _ = nvrtc_compile(nvrtc, cuda_source("step", "float32"), "sm_90")
    assert elf_extent(cubin) <= len(cubin)
    program = nvrtc.createProgram(cuda_source("step", "float32"), "x.cu", [], [])
    try:
        nvrtc.compileProgram(program, ["-ftz=false", "--std=c++17",
                                       "--device-as-default-execution-space", "-arch=sm_90"])
        clipped = nvrtc.getCUBIN(program)
    finally:
        nvrtc.destroyProgram(program)
    assert cubin[:len(clipped)] == clipped and len(cubin) >= len(clipped)
    assert elf_extent(clipped) > len(clipped), "CuPy no longer clips: drop the workaround"


def test_elf_extent_rejects_what_is_not_elf():
    with pytest.raises(ValueError, match="not an ELF64 image"):
        elf_extent(b"PTX text")


class _StandIn:
    """``cupy`` as far as NvrtcLoader uses it: the real NVRTC, a stand-in device and
    RawModule that reads the cubin file it is given."""

    def __init__(self, driver=13000):
        self.loaded = []
        device = SimpleNamespace(id=0, compute_capability="90")
        runtime = SimpleNamespace(driverGetVersion=lambda: driver)
        self.cuda = SimpleNamespace(Device=lambda: device, nvrtc=nvrtc, runtime=runtime)

    def RawModule(self, path):  # noqa: N802 - CuPy's name
        with open(path, "rb") as f:
            self.loaded.append(f.read())
        return SimpleNamespace(path=path)


def test_threads_loading_at_once_compile_once_and_load_whole_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNN_CACHE_DIR", str(tmp_path))
    fake = _StandIn()
    loader, barrier, got = NvrtcLoader(fake), threading.Barrier(4, timeout=120), []

    def load():
        barrier.wait()
        got.append(loader("activations", "float32"))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4 and all(module is got[0] for module in got)
    (data,) = fake.loaded
    assert data[:4] == b"\x7fELF" and elf_extent(data) <= len(data)
    assert [p.suffix for p in tmp_path.iterdir()] == [".cubin"]  # no temporary left behind


def test_the_cache_key_has_the_nvrtc_and_driver_versions(tmp_path):
    source = cuda_source("activations", "float32")
    versions = NvrtcLoader(_StandIn(driver=12040)).versions()
    assert versions == (*nvrtc.getVersion(), 12040)
    first = cached_binary(nvrtc, source, "sm_90", versions, folder=tmp_path)
    again = cached_binary(nvrtc, source, "sm_90", versions, folder=tmp_path)
    newer = cached_binary(nvrtc, source, "sm_90", (*versions[:2], 13000), folder=tmp_path)
    assert first == again and newer != first
    assert first.read_bytes() == newer.read_bytes()
