"""Row sources: training data read a slice of rows at a time, so it need not fit in memory.

A :class:`RowSource` has ``shape`` (rows first), ``dtype`` and ``read(start, stop)``, which
returns those rows as a host NumPy array. :func:`as_rows` makes one from what ``fit`` is given:

- a path (str or ``os.PathLike``): a ``.npy`` file (read with ``pread``, never mapped, so it
  works under an address-space limit smaller than the file), a ``.parquet`` file, or a folder of
  ``.npy`` / ``.npz`` shards or of ``.parquet`` files (:func:`open_rows`, which also takes a
  ``.npz`` member or Parquet columns);
- a ``numpy.memmap`` (``np.load(path, mmap_mode="r")``): sliced, so only the pages of a chunk
  are touched;
- any object with ``__len__``, ``shape``, ``dtype`` and row slicing (an h5py dataset, a zarr
  array).

Everything a source claims is checked when it is made, before any training: kind of file
(a named pipe, a device or a dangling link is refused without being opened), header against
file size, numeric dtype, and for a folder that every shard agrees in dtype, row shape (or
columns) and holds rows. A file that changes size or is replaced while it is read raises
ValueError naming the argument at the next read.
"""

import os
import stat
import zipfile

import numpy as np

from gpunn._checks import as_host_array
from gpunn._compat import require
from gpunn._files import file_kind

_NUMERIC = "biuf"


def is_streamed(value):
    """Whether ``fit`` streams ``value`` (a source, a path, a memory map, an h5py/zarr-like
    object) rather than copying it whole; arrays, lists and DLPack tensors are not streamed."""
    if isinstance(value, (RowSource, str, os.PathLike, np.memmap)):
        return True
    if isinstance(value, (np.ndarray, list, tuple)) or any(
            hasattr(value, a) for a in ("__dlpack__", "__cuda_array_interface__", "nnz")):
        return False  # in memory, a device array or a sparse matrix: fit's own checks
    return all(hasattr(value, a) for a in ("__len__", "__getitem__", "shape", "dtype")) \
        and not hasattr(value, "iloc")  # pandas: in memory already


def as_rows(value, argument):
    """``value`` as a :class:`RowSource` (see the module; an in-memory array is sliced as
    it is); TypeError/ValueError naming ``argument`` for anything else."""
    if isinstance(value, RowSource):
        return value
    if isinstance(value, (str, os.PathLike)):
        return open_rows(value, argument=argument)
    if not is_streamed(value):  # in memory: read by slicing too
        value = as_host_array(argument, value, ndim=(1, 2))
    return SliceRows(value, argument)


def in_memory(value, argument):
    """``value`` read whole when it streams (a path, a memory map, ...; :func:`is_streamed`),
    for data of one value or a few a row (targets, weights); anything else unchanged."""
    if value is None or not is_streamed(value):
        return value
    source = as_rows(value, argument)
    return source.read(0, len(source))


def open_rows(path, key=None, columns=None, argument="X"):
    """A :class:`RowSource` over the file or folder ``path``.

    Args:
        path: a ``.npy`` or ``.parquet`` file, or a folder of ``.npy`` / ``.npz`` shards or of
            ``.parquet`` files (taken in name order; all of one kind).
        key: the member of each ``.npz`` shard (default ``argument``: ``"X"`` or ``"y"``).
        columns: Parquet columns to read, in this order (default all).
        argument: the name errors use (``"X"``, ``"y"``).
    """
    path = _checked_path(argument, path)
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        kinds = {os.path.splitext(n)[1] for n in names} & {".npy", ".npz", ".parquet"}
        if len(kinds) != 1:
            raise ValueError(f"{argument}: expected a folder of .npy, .npz or .parquet files "
                             f"(one kind), got {sorted(kinds) or 'none'} in {path!r}")
        kind = kinds.pop()
        files = [os.path.join(path, n) for n in names if n.endswith(kind)]
    else:
        kind, files = os.path.splitext(path)[1], [path]
    if kind == ".parquet":
        return ParquetRows(files, columns, argument)
    if kind not in (".npy", ".npz") or (kind == ".npz" and len(files) == 1 and files == [path]):
        raise ValueError(f"{argument}: expected a .npy or .parquet file or a folder of shards, "
                         f"got {path!r}")
    key = argument if key is None else key
    shards = [NpyRows(f, argument) if kind == ".npy" else NpyRows(f, argument, key)
              for f in files]
    return shards[0] if len(shards) == 1 and not os.path.isdir(path) \
        else ShardRows(shards, argument)


def _checked_path(argument, path):
    """``path`` as a str naming an existing regular file or folder; a pipe, device, socket or
    dangling link is refused (by ``stat``, without opening it)."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        what = "a dangling link" if os.path.islink(path) else "no such file"
        raise ValueError(f"{argument}: expected a data file or folder, got {what}: "
                         f"{path!r}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ValueError(f"{argument}: expected a regular file or a folder, got a "
                         f"{file_kind(mode)}: {path!r}")
    return path


class RowSource:
    """Rows read a slice at a time. Attributes ``shape``, ``dtype``, ``argument``."""

    shape, dtype, argument = (0,), np.dtype(np.float64), "X"

    def __len__(self):
        return self.shape[0]

    def read(self, start, stop):
        """Rows ``start:stop`` as a host NumPy array (a view where the source allows)."""
        raise NotImplementedError

    def read_into(self, out, start, stop):
        """Rows ``start:stop`` written into ``out`` (of their shape and any numeric dtype)."""
        out[...] = self.read(start, stop)

    def _check(self, shape, dtype, what):
        dtype = np.dtype(dtype)
        if dtype.kind not in _NUMERIC:
            raise TypeError(f"{self.argument}: expected numeric data, got dtype {dtype} in "
                            f"{what}")
        if len(shape) not in (1, 2) or shape[0] == 0:
            raise ValueError(f"{self.argument}: expected a non-empty 1-D or 2-D array, got "
                             f"shape {tuple(shape)} in {what}")
        self.shape, self.dtype = tuple(int(s) for s in shape), dtype


class SliceRows(RowSource):
    """An object sliced by rows: a memory map, an h5py dataset, a zarr array."""

    def __init__(self, data, argument):
        self.data, self.argument = data, argument
        self._check(tuple(data.shape), data.dtype, type(data).__name__)
        if len(data) != self.shape[0]:
            raise ValueError(f"{argument}: len() is {len(data)} but shape is {self.shape}")
        name = getattr(data, "filename", None)  # a memory map: its file must keep its size
        name = os.fspath(name) if isinstance(name, (str, os.PathLike)) else None
        self._file = None if name is None else (name, os.stat(name).st_size)

    def read(self, start, stop):
        if self._file is not None and os.stat(self._file[0]).st_size != self._file[1]:
            raise ValueError(f"{self.argument}: the memory-mapped file {self._file[0]!r} "
                             "changed size while training read it")
        return np.asarray(self.data[start:stop])


class NpyRows(RowSource):
    """A ``.npy`` file (or the member ``key`` of an uncompressed ``.npz``) read with ``pread``."""

    def __init__(self, path, argument, key=None):
        self.path, self.argument = path, argument
        _checked_path(argument, path)
        where = path if key is None else f"{path}[{key!r}]"
        with open(path, "rb") as file:
            base = 0 if key is None else _npz_member_offset(file, key, argument, path)
            file.seek(base)
            try:
                version = np.lib.format.read_magic(file)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read(file)
            except ValueError as exc:
                raise ValueError(f"{argument}: expected a NumPy array in {where}, got an "
                                 f"unreadable header ({exc})") from None
            self._offset = file.tell()
            self._stat = _identity(os.fstat(file.fileno()))
        self._check(shape, dtype, where)
        if fortran and len(shape) == 2 and shape[1] > 1:
            raise ValueError(f"{argument}: expected rows stored in C order, got a Fortran-order "
                             f"array in {where}; save np.ascontiguousarray(X)")
        self._row = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        if self._offset + self._row * self.shape[0] > self._stat[0]:
            raise ValueError(f"{argument}: the header of {where} claims {self.dtype} "
                             f"{self.shape}, more than the file holds; truncated or forged")

    def read(self, start, stop):
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        self.read_into(out, start, stop)
        return out

    def read_into(self, out, start, stop):
        """Straight from the file into ``out`` when it has the file's dtype (no copy)."""
        if out.dtype != self.dtype or not out.flags.c_contiguous:
            return super().read_into(out, start, stop)
        with open(self.path, "rb", buffering=0) as file:
            if _identity(os.fstat(file.fileno())) != self._stat:
                raise ValueError(f"{self.argument}: {self.path!r} changed (size or file) "
                                 "while training read it")
            view, at = memoryview(out.reshape(-1).view(np.uint8)), 0
            while at < len(view):
                got = os.preadv(file.fileno(), [view[at:]],
                                self._offset + start * self._row + at)
                if got <= 0:
                    raise ValueError(f"{self.argument}: {self.path!r} ended early while "
                                     "training read it")
                at += got
        return None


def _identity(info):
    return info.st_size, info.st_ino, info.st_dev


def _npz_member_offset(file, key, argument, path):
    """Where the stored (uncompressed) member ``key``.npy of the zip ``file`` starts."""
    try:
        with zipfile.ZipFile(file) as archive:
            info = archive.getinfo(f"{key}.npy")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{argument}: expected an .npz with member {key!r} in {path!r}, got "
                         f"{type(exc).__name__}: {exc}") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{argument}: expected uncompressed shards (np.savez), got a "
                         f"compressed member {key!r} in {path!r}")
    file.seek(info.header_offset)
    local = file.read(30)  # the local file header: its name and extra field lengths
    if local[:4] != b"PK\x03\x04":
        raise ValueError(f"{argument}: a damaged .npz: {path!r}")
    return info.header_offset + 30 + int.from_bytes(local[26:28], "little") \
        + int.from_bytes(local[28:30], "little")


class ShardRows(RowSource):
    """Several sources of one dtype and row shape, one after another."""

    def __init__(self, shards, argument):
        self.shards, self.argument = shards, argument
        first = shards[0]
        for shard in shards:
            if shard.dtype != first.dtype or shard.shape[1:] != first.shape[1:]:
                raise ValueError(f"{argument}: expected every shard to hold {first.dtype} "
                                 f"rows of shape {first.shape[1:]} as {_name(first)} does, got "
                                 f"{shard.dtype} {shard.shape[1:]} in {_name(shard)}")
        self.starts = np.cumsum([0] + [len(s) for s in shards])
        self.shape, self.dtype = (int(self.starts[-1]), *first.shape[1:]), first.dtype

    def read(self, start, stop):
        parts, i = [], int(np.searchsorted(self.starts, start, side="right")) - 1
        while start < stop:
            lo = int(self.starts[i])
            end = min(stop, int(self.starts[i + 1]))
            parts.append(self.shards[i].read(start - lo, end - lo))
            start, i = end, i + 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _name(source):
    return repr(getattr(source, "path", type(source).__name__))


class ParquetRows(RowSource):
    """Numeric columns of Parquet files, read a row group at a time (pyarrow)."""

    def __init__(self, files, columns, argument):
        pq = require("pyarrow.parquet", "parquet", "reading Parquet files")
        self.argument, self.files, self._cached = argument, [], (None, None)
        groups, names = [], None
        for path in files:
            _checked_path(argument, path)
            handle = pq.ParquetFile(path)
            schema = handle.schema_arrow
            chosen = list(schema.names if columns is None else columns)
            missing = [c for c in chosen if c not in schema.names]
            if missing:
                raise ValueError(f"{argument}: expected columns {missing} in {path!r}, got "
                                 f"{schema.names}")
            for name in chosen:
                kind = schema.field(name).type
                if not _arrow_numeric(kind):
                    raise TypeError(f"{argument}: expected numeric Parquet columns, got "
                                    f"{name!r} of type {kind} in {path!r}")
            if names is not None and chosen != names:
                raise ValueError(f"{argument}: expected the columns {names} in every file, got "
                                 f"{chosen} in {path!r}")
            names = chosen
            meta = handle.metadata
            for g in range(meta.num_row_groups):
                if meta.row_group(g).num_rows:
                    groups.append((len(self.files), g, meta.row_group(g).num_rows))
            self.files.append((path, _identity(os.stat(path))))
        if not groups:
            raise ValueError(f"{argument}: expected rows, got none in {files[0]!r}")
        self.columns, self.groups = names, groups
        self.starts = np.cumsum([0] + [g[2] for g in groups])
        dtype = np.result_type(*[schema.field(c).type.to_pandas_dtype() for c in names])
        self.shape, self.dtype = (int(self.starts[-1]), len(names)), np.dtype(dtype)

    def _group(self, i):
        if self._cached[0] == i:
            return self._cached[1]
        pq = require("pyarrow.parquet", "parquet", "reading Parquet files")
        f, g, _ = self.groups[i]
        path, identity = self.files[f]
        if _identity(os.stat(path)) != identity:
            raise ValueError(f"{self.argument}: {path!r} changed while training read it")
        table = pq.ParquetFile(path).read_row_group(g, columns=self.columns)
        for name, column in zip(self.columns, table.columns):
            if column.null_count:
                raise ValueError(f"{self.argument}: expected no missing values, got "
                                 f"{column.null_count} in column {name!r} of {path!r}")
        rows = np.column_stack([c.to_numpy().astype(self.dtype, copy=False)
                                for c in table.columns])
        self._cached = (i, rows)
        return rows

    def read(self, start, stop):
        parts, i = [], int(np.searchsorted(self.starts, start, side="right")) - 1
        while start < stop:
            lo = int(self.starts[i])
            end = min(stop, int(self.starts[i + 1]))
            parts.append(self._group(i)[start - lo:end - lo])
            start, i = end, i + 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _arrow_numeric(kind):
    """Whether the arrow type reads as numbers: integers, floats, booleans."""
    types = require("pyarrow.types", "parquet", "reading Parquet files")
    return types.is_integer(kind) or types.is_floating(kind) or types.is_boolean(kind)
