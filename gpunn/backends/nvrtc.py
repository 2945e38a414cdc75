"""The CUDA backend's kernel modules: compiled with NVRTC, cached on disk, loaded per device.

gpunn compiles with NVRTC itself rather than through ``cupy.RawModule(code=...)``: CuPy
appends ``-ftz=true`` after any user option, and gpunn keeps subnormals (``-ftz=false``).
The cubin is written to the cache exactly as NVRTC returns it: CuPy's ``nvrtc.getCUBIN``
drops the last byte (taken for a trailing NUL, but for a cubin it is the end of the ELF
header tables), so the size comes from ``nvrtcGetCUBINSize`` in the library CuPy loaded.
"""

import ctypes
import hashlib
import os
import struct
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from gpunn.kernels import cuda_source

# gpunn's NVRTC options, after CuPy's own (--std=c++17 --device-as-default-execution-space).
# -ftz=false keeps subnormals, as the CPU does.
NVRTC_OPTIONS = ("--std=c++17", "--device-as-default-execution-space", "-ftz=false")


@lru_cache(maxsize=None)
def _loaded_library(stem):
    """The shared library ``stem`` (e.g. ``"libnvrtc"``) this process has loaded, through
    ctypes (the same handle), or None: read from /proc/self/maps (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split()[5] for line in maps if len(line.split()) >= 6]
    except OSError:
        return None
    for path in paths:
        if os.path.basename(path).startswith(f"{stem}.so"):
            return ctypes.CDLL(path)
    return None


def elf_extent(data):
    """Where the last header table of the ELF64 ``data`` ends (program or section headers):
    a whole cubin is at least that long."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        raise ValueError("not an ELF64 image")
    ph_offset, sh_offset = struct.unpack_from("<QQ", data, 0x20)
    ph_size, ph_count, sh_size, sh_count = struct.unpack_from("<HHHH", data, 0x36)
    return max(ph_offset + ph_size * ph_count, sh_offset + sh_size * sh_count)


def _whole_cubin(nvrtc, program):
    """The cubin of ``program`` with every byte NVRTC wrote."""
    clipped = nvrtc.getCUBIN(program)
    library = _loaded_library("libnvrtc")
    if library is not None:
        size = ctypes.c_size_t()
        if library.nvrtcGetCUBINSize(ctypes.c_void_p(program), ctypes.byref(size)) == 0:
            buffer = ctypes.create_string_buffer(size.value)
            if library.nvrtcGetCUBIN(ctypes.c_void_p(program), buffer) == 0:
                return buffer.raw
    # No library to ask: the byte CuPy took off is the NUL it expects there.
    return clipped + b"\0" if elf_extent(clipped) == len(clipped) + 1 else clipped


def nvrtc_compile(nvrtc, source, arch, name="gpunn.cu"):
    """Compile ``source`` with ``cupy.cuda.nvrtc`` for ``arch`` (e.g. ``"sm_90"``); the binary
    (the whole cubin for ``sm_XX``, PTX for ``compute_XX``) and the compile log."""
    program = nvrtc.createProgram(source, name, [], [])
    try:
        try:
            nvrtc.compileProgram(program, [*NVRTC_OPTIONS, f"-arch={arch}"])
        except Exception as exc:
            raise RuntimeError(f"NVRTC failed for {arch}: {exc}\n"
                               f"{nvrtc.getProgramLog(program)}") from None
        if arch.startswith("sm_"):
            binary = _whole_cubin(nvrtc, program)
        else:
            binary = nvrtc.getPTX(program)
        return binary, nvrtc.getProgramLog(program)
    finally:
        nvrtc.destroyProgram(program)


def device_arch(nvrtc, capability):
    """``sm_XY`` for a device of compute capability ``"XY"`` when this NVRTC can target it,
    else PTX for the newest architecture it knows (the driver compiles that)."""
    supported = [int(a) for a in nvrtc.getSupportedArchs()]
    wanted = int(capability)
    if wanted in supported:
        return f"sm_{wanted}"
    return f"compute_{max(a for a in supported if a <= wanted)}"


def cache_folder():
    """Where compiled modules are kept: ``$GPUNN_CACHE_DIR``, else a per-user temp folder."""
    return Path(os.environ.get("GPUNN_CACHE_DIR")
                or Path(tempfile.gettempdir()) / f"gpunn-nvrtc-{os.getuid()}")


def cached_binary(nvrtc, source, arch, versions, folder=None):
    """The path of ``source`` compiled for ``arch``, compiled on first use.

    The file name is a digest of the source, the architecture, the options and ``versions``
    (NVRTC's and the driver's: another toolchain compiles anew). Written under a name of
    this process and thread, then renamed, so concurrent writers never expose a partial file.
    """
    key = "\0".join([source, arch, *NVRTC_OPTIONS, *map(str, versions)])
    folder = Path(folder or cache_folder())
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "cubin" if arch.startswith("sm_") else "ptx"
    path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.{suffix}"
    if not path.exists():
        binary, _ = nvrtc_compile(nvrtc, source, arch)
        partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_bytes(binary if isinstance(binary, bytes) else binary.encode())
        os.replace(partial, path)
    return path


class NvrtcLoader:
    """Compiles a kernel module for the current device on first use; cached on disk
    (:func:`cached_binary`) and in memory per device and dtype. Safe to call from several
    threads: one compiles, the others wait for it."""

    def __init__(self, cupy):
        self._cupy = cupy
        self._modules = {}
        self._lock = threading.Lock()

    def versions(self):
        """NVRTC's version and the driver's, part of the cache key."""
        return (*self._cupy.cuda.nvrtc.getVersion(),
                self._cupy.cuda.runtime.driverGetVersion())

    def __call__(self, module, dtype):
        device = self._cupy.cuda.Device()
        key = (device.id, module, str(dtype))
        raw = self._modules.get(key)
        if raw is None:
            with self._lock:
                raw = self._modules.get(key)
                if raw is None:
                    nvrtc = self._cupy.cuda.nvrtc
                    arch = device_arch(nvrtc, device.compute_capability)
                    path = cached_binary(nvrtc, cuda_source(module, str(dtype)), arch,
                                         self.versions())
                    raw = self._modules[key] = self._cupy.RawModule(path=str(path))
        return raw
