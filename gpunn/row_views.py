"""Views of a row source (:mod:`gpunn.sources`): a range of its rows, some of its columns, its
rows transformed. Each reads through the source it views, so the checks the source made when
it was opened (and at every read) hold for the view; nothing here opens a file.

- :class:`RangeRows`: rows ``start:stop`` (``fit``'s ``validation_split``: the tail before
  shuffling; ``gpunn train``'s held-out test rows);
- :func:`split_columns`: a 2-D source's features and target column(s) as two sources that
  share one read per chunk (``gpunn train --npy``, the target in a column of the file);
- :class:`MappedRows`: ``fn(rows)`` for every block read (the CLI's standardization).

:func:`blocks` walks any source a block of rows at a time (the passes that compute
statistics or check values before training).
"""

import threading

import numpy as np

from gpunn.sources import RowSource

#: Bytes a whole-source pass (:func:`blocks`) reads at a time.
BLOCK_BYTES = 32 << 20


def blocks(source, rows=None):
    """``(start, stop, rows)`` for consecutive blocks of ``source`` (``rows`` rows each, or
    about :data:`BLOCK_BYTES`), read in order."""
    n = len(source)
    if rows is None:
        width = int(np.prod(source.shape[1:], dtype=np.int64)) * source.dtype.itemsize
        rows = max(1, BLOCK_BYTES // max(1, width))
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        yield start, stop, source.read(start, stop)


class RangeRows(RowSource):
    """Rows ``start:stop`` of ``source``, as rows ``0:stop - start``."""

    def __init__(self, source, start, stop, argument=None):
        if not 0 <= start < stop <= len(source):
            raise ValueError(f"{source.argument}: expected a non-empty row range within its "
                             f"{len(source)} rows, got {start}:{stop}")
        self.source, self.offset = source, int(start)
        self.argument = source.argument if argument is None else argument
        self.shape, self.dtype = (int(stop - start), *source.shape[1:]), source.dtype

    def read(self, start, stop):
        return self.source.read(self.offset + start, self.offset + stop)

    def read_into(self, out, start, stop):
        self.source.read_into(out, self.offset + start, self.offset + stop)


class _LastRead:
    """One block of a source kept until another is asked for: the views of one chunk's
    columns read the file once."""

    def __init__(self, source):
        self.source, self._lock, self._kept = source, threading.Lock(), (None, None)

    def read(self, start, stop):
        with self._lock:
            if self._kept[0] != (start, stop):
                self._kept = ((start, stop), self.source.read(start, stop))
            return self._kept[1]


class ColumnRows(RowSource):
    """Some columns of a 2-D source (one column as a 1-D source when ``flat``)."""

    def __init__(self, reader, columns, argument, flat=False):
        self._reader, self.columns, self.argument = reader, list(columns), argument
        self._flat = flat and len(self.columns) == 1
        n = len(reader.source)
        self.shape = (n,) if self._flat else (n, len(self.columns))
        self.dtype = reader.source.dtype

    def read(self, start, stop):
        rows = self._reader.read(start, stop)
        return rows[:, self.columns[0]] if self._flat else rows[:, self.columns]


def split_columns(source, target, x_argument="X", y_argument="y"):
    """``(X, y)``: the columns of the 2-D ``source`` but ``target`` (an index, negative from
    the end), and that column as a 1-D source; one read of the source per chunk."""
    if len(source.shape) != 2 or source.shape[1] < 2:
        raise ValueError(f"{source.argument}: expected a 2-D array with the target in a column "
                         f"and at least one feature column, got shape {source.shape}")
    width = source.shape[1]
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) \
            or not -width <= target < width:
        raise ValueError(f"{y_argument}: expected a column index in [{-width}, {width}) of "
                         f"{source.argument}, got {target!r}")
    target = int(target) % width
    reader = _LastRead(source)
    features = [j for j in range(width) if j != target]
    return (ColumnRows(reader, features, x_argument),
            ColumnRows(reader, [target], y_argument, flat=True))


class MappedRows(RowSource):
    """``fn(rows)`` of every block of ``source`` read; ``fn`` keeps the row count and gives
    rows of ``shape[1:]`` and ``dtype``."""

    def __init__(self, source, fn, shape=None, dtype=None):
        self.source, self.fn, self.argument = source, fn, source.argument
        self.shape = source.shape if shape is None else (len(source), *shape)
        self.dtype = source.dtype if dtype is None else np.dtype(dtype)

    def read(self, start, stop):
        return self.fn(self.source.read(start, stop))
