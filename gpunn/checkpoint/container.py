"""The checkpoint container: a safetensors file whose metadata entry ``gpunn`` holds the JSON
header and ``gpunn.crc32`` its checksum; tensors are 1-D raw little-endian buffers.

This module knows files, not models: it writes a header and arrays atomically (through
:mod:`gpunn._files`) and opens a file lazily for :mod:`gpunn.checkpoint.format` to check. It
reads nothing a header merely claims before checking it against the file.
"""

import contextlib
import json
import os
import stat
import zlib

import numpy as np

from gpunn import _files

METADATA_KEY, CRC_KEY = "gpunn", "gpunn.crc32"
MAX_ENTRIES = 16  # tensors a checkpoint may hold; a crafted file may claim millions
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not fit: the message names the file and why."""


def crc(array):
    """CRC32 of an array's bytes, as stored for every tensor."""
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1))


def text_crc(text):
    """The header's own checksum, as stored under ``CRC_KEY``."""
    return f"{zlib.crc32(text.encode()):08x}"


def write(target, header, arrays):
    """Write ``header`` (a JSON-serializable dict) and ``arrays`` to ``target`` atomically.

    Args:
        target: a :class:`gpunn._files.Target` (checked before the caller's work) or a path.
        header: the gpunn header; its ``crc32`` entry is filled in here.
        arrays: ``{name: 1-D NumPy array}``.

    Returns:
        The path as given.
    """
    header["crc32"] = {name: crc(array) for name, array in arrays.items()}
    text = json.dumps(header)
    metadata = {METADATA_KEY: text, CRC_KEY: text_crc(text)}
    return _files.atomic_write(target, lambda file: write_file(file, arrays, metadata))


def write_file(file, arrays, metadata):
    """Serialize into an open binary file (what :func:`write` hands the atomic writer)."""
    from safetensors.numpy import save

    file.write(save(arrays, metadata=metadata))


@contextlib.contextmanager
def open_container(path):
    """Open a checkpoint lazily: ``(header text, checksum text, {name: (dtype, shape)}, read)``.

    The library validates the container (its header length against the file's, every
    tensor's offsets inside the data and covering it without overlap) before anything else;
    no tensor data is read until ``read(name)``.

    Args:
        path: the file (must be a regular file).

    Raises:
        CheckpointError: not a readable safetensors file, too many entries.
    """
    from safetensors import safe_open

    _check_readable(path)
    try:
        # pread, not a memory map: a file truncated in place while it is read gives an error
        # here, where a mapped file would kill the process with SIGBUS (safetensors >= 0.8).
        handle = safe_open(path, framework="np", backend="pread")
        keys = handle.keys()
        if len(keys) > MAX_ENTRIES:  # before looking at each: a crafted file may hold millions
            raise CheckpointError(f"expected at most {MAX_ENTRIES} entries, got {len(keys)}")
        index = {key: _entry(handle, key) for key in keys}
        metadata = handle.metadata() or {}
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - the Rust reader raises its own error classes
        raise CheckpointError(f"not a readable gpunn checkpoint (a safetensors file; "
                              f"{type(exc).__name__}: {str(exc)[:200]})") from None

    def read(name):
        try:
            return handle.get_tensor(name)
        except Exception as exc:  # noqa: BLE001 - a damaged file, whatever the library says
            raise CheckpointError(f"entry {name!r}: unreadable ({type(exc).__name__}: "
                                  f"{str(exc)[:200]})") from None

    with handle:
        yield metadata, index, read


def _check_readable(path):
    """A regular file (a pipe would block, a device never end) and not a format 1 .npz."""
    info = os.stat(path)  # FileNotFoundError stays what it is
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"expected a regular file, got a {_files.file_kind(info.st_mode)}")
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic in _ZIP_MAGIC:
        raise CheckpointError("this is a .npz (zip) file, e.g. a checkpoint of gpunn 0.1's "
                              "format 1; this version reads and writes safetensors checkpoints "
                              "(format 2) only")


def _entry(handle, key):
    view = handle.get_slice(key)
    return view.get_dtype(), tuple(view.get_shape())
