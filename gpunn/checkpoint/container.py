"""The checkpoint container: a safetensors file whose metadata entry ``gpunn`` holds the JSON
header and ``gpunn.crc32`` its checksum; tensors are 1-D raw little-endian buffers.

This module knows files, not models: it writes a header and arrays atomically (through
:mod:`gpunn._files`) and opens a file lazily for :mod:`gpunn.checkpoint.format` to check. What
a file claims about itself is bounded before it is parsed: the header's length (at most
:data:`MAX_HEADER_BYTES`, inside the file), the JSON containers in it (at most
:data:`MAX_CONTAINERS`), the tensors (at most :data:`MAX_ENTRIES`), and every byte of the data
stored (a sparse file, whose holes read as zeros, is refused). Writing refuses a header that
reading would refuse.
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
# Bytes of the safetensors header (the gpunn header and the tensor index). JSON costs several
# times its text in Python objects, so this bounds what parsing a header may cost; a fit's
# header is mostly its history (about 20 bytes per epoch value and per recorded step).
MAX_HEADER_BYTES = 16 << 20
# JSON objects and lists in the gpunn header: a fit writes a few per layer and a few dozen
# more; each costs about 60 bytes of Python objects for 2 bytes of text.
MAX_CONTAINERS = 1 << 16
# How deep JSON objects and lists may nest: a gpunn header nests a few levels. Python's
# decoder has a version-dependent recursion limit (3.11 refuses 5000 levels, 3.12 parses them),
# so the bound is checked here, before parsing, the same on every Python.
MAX_DEPTH = 64
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

    Raises:
        ValueError: a header that reading would refuse (too long, too many containers).
    """
    from safetensors.numpy import save

    header["crc32"] = {name: crc(array) for name, array in arrays.items()}
    text = json.dumps(header)
    _check_header_length(len(text), float("inf"), ValueError)  # before safetensors sees it
    _check_header_text(text, ValueError)
    blob = save(arrays, metadata={METADATA_KEY: text, CRC_KEY: text_crc(text)})
    _check_header_length(int.from_bytes(blob[:8], "little"), len(blob), ValueError)
    return _files.atomic_write(target, lambda file: write_file(file, blob))


def check_fits(header):
    """Raise ValueError now if :func:`write` would refuse ``header`` (too long, too many
    containers, too deep): for callers that check before their work. The tensor index
    (at most ``MAX_ENTRIES`` entries) is allowed for, not measured."""
    text = json.dumps(header)
    _check_header_text(text, ValueError)
    _check_header_length(len(json.dumps(text)) + 256 * MAX_ENTRIES, float("inf"), ValueError)


def write_file(file, blob):
    """Write the serialized checkpoint into the open temporary file (a test seam)."""
    file.write(blob)


def _check_header_length(length, size, error):
    if length > MAX_HEADER_BYTES:
        raise error(f"header: expected at most {MAX_HEADER_BYTES} bytes, got {length}")
    if 8 + length > size:
        raise error(f"header: expected {length} bytes (as its length field says), got "
                    f"{max(size - 8, 0)} (the file is truncated)")


def _check_header_text(text, error):
    containers, depth = _structure(text)  # brackets inside strings ("f[3]") not counted
    if containers > MAX_CONTAINERS:
        raise error(f"header: expected at most {MAX_CONTAINERS} JSON objects and lists, got "
                    f"{containers}")
    if depth > MAX_DEPTH:
        raise error(f"header: expected JSON nested at most {MAX_DEPTH} levels, got {depth}")


def _structure(text, block=1 << 14):
    """``(containers, depth)``: how many objects and lists JSON ``text`` opens and how deep
    they nest (brackets inside strings not counted).

    Vectorized over blocks of ``block`` bytes, so it costs a few bytes per character of one
    block whatever the text holds (a regular expression over the strings cost about 140 bytes
    per character of a long string): a quote opens or closes a string unless an odd run of
    backslashes precedes it. Carried from block to block: whether a string is open, the run of
    backslashes at the end, the depth.
    """
    data = text.encode()
    inside, carried, depth, deepest, containers = 0, 0, 0, 0, 0
    for start in range(0, len(data), block):
        codes = np.frombuffer(data, np.uint8, min(block, len(data) - start), start)
        # The backslashes in the run ending at each position (the run may go on from the
        # block before): i - (the last non-backslash at or before i).
        run = np.arange(len(codes), dtype=np.int32)
        run[codes == ord("\\")] = -1
        np.maximum.accumulate(run, out=run)
        np.subtract(np.arange(len(codes), dtype=np.int32), run, out=run)
        run[run == np.arange(1, len(codes) + 1, dtype=np.int32)] += carried
        quote = codes == ord('"')
        quote[0] &= carried % 2 == 0
        quote[1:] &= run[:-1] % 2 == 0
        carried = int(run[-1])
        del run
        parity = np.bitwise_xor.accumulate(quote.view(np.uint8))
        outside = parity == inside
        inside ^= int(parity[-1])
        steps = np.zeros(len(codes), np.int8)
        opening = ((codes == ord("[")) | (codes == ord("{"))) & outside
        containers += int(np.count_nonzero(opening))
        steps[opening] = 1
        steps[((codes == ord("]")) | (codes == ord("}"))) & outside] = -1
        levels = np.cumsum(steps, dtype=np.int32)
        deepest = max(deepest, depth + int(levels.max()))
        depth += int(levels[-1])
    return containers, deepest


def _parse_header(metadata):
    """The gpunn header of the safetensors metadata, its checksum and size checked first."""
    text = metadata.get(METADATA_KEY)
    if not isinstance(text, str):
        shown = sorted(str(k)[:40] for k in metadata)[:8]
        raise CheckpointError(f"expected a gpunn checkpoint (safetensors metadata "
                              f"{METADATA_KEY!r}), got metadata keys {shown}")
    if metadata.get(CRC_KEY) != text_crc(text):
        raise CheckpointError("header: checksum mismatch (the file is damaged)")
    _check_header_text(text, CheckpointError)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"header is not JSON ({type(exc).__name__})") from None


@contextlib.contextmanager
def open_container(path):
    """Open a checkpoint lazily: ``(gpunn header, {name: (dtype, shape)}, read)``.

    The library validates the container (its header length against the file's, every
    tensor's offsets inside the data and covering it without overlap) before anything else;
    no tensor data is read until ``read(name)``.

    Args:
        path: the file (must be a regular file).

    Raises:
        CheckpointError: not a readable safetensors file, a header too long or too nested,
            too many entries, a damaged header, a sparse file.
    """
    from safetensors import safe_open

    _check_file(path)
    try:
        # pread, not a memory map: a file truncated in place while it is read gives an error
        # here, where a mapped file would kill the process with SIGBUS (safetensors >= 0.8).
        handle = safe_open(path, framework="np", backend="pread")
        keys = handle.keys()
        if len(keys) > MAX_ENTRIES:  # before looking at each: a crafted file may hold millions
            raise CheckpointError(f"expected at most {MAX_ENTRIES} entries, got {len(keys)}")
        index = {key: _entry(handle, key) for key in keys}
        metadata = handle.metadata() or {}
        header = _parse_header(metadata)
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
        yield header, index, read


def _check_file(path):
    """Before the header is parsed: a regular file (a pipe would block, a device never end),
    not a format 1 .npz, a header length within bounds and the file, no holes."""
    info = os.stat(path)  # FileNotFoundError stays what it is
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"expected a regular file, got a {_files.file_kind(info.st_mode)}")
    with open(path, "rb") as file:
        head = file.read(8)
        if head[:4] in _ZIP_MAGIC:
            raise CheckpointError("this is a .npz (zip) file, e.g. a checkpoint of gpunn 0.1's "
                                  "format 1; this version reads and writes safetensors "
                                  "checkpoints (format 2) only")
        try:
            if len(head) < 8:
                raise CheckpointError(f"expected at least 8 bytes, got {len(head)}")
            _check_header_length(int.from_bytes(head, "little"), info.st_size, CheckpointError)
        except CheckpointError as exc:
            raise CheckpointError(f"not a readable gpunn checkpoint (a safetensors file; "
                                  f"{exc})") from None
        _check_no_holes(file.fileno(), info.st_size)


def _check_no_holes(fd, size):
    """Refuse a sparse file: its holes read as zeros that no disk holds, so a file of a few
    bytes on disk could claim a model of any size."""
    if not hasattr(os, "SEEK_HOLE"):
        return
    try:
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
    except OSError:  # the file system cannot tell
        return
    if hole < size:
        raise CheckpointError(f"the file is sparse (a hole at byte {hole} of {size}): expected "
                              "every byte stored; copy it without holes (cp --sparse=never)")


def _entry(handle, key):
    view = handle.get_slice(key)
    return view.get_dtype(), tuple(view.get_shape())
