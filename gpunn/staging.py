"""Streaming training: chunks of rows staged to the device while the previous chunk trains.

``chunk_rows`` bounds the rows streaming holds at once. The rows of a source
(:mod:`gpunn.sources`) are cut into chunks, runs of consecutive rows of near-equal sizes, as
large as that bound allows (:func:`plan_chunks`: about ``0.8 (chunk_rows - batch)`` rows on the
CPU, ``0.47 (chunk_rows - batch)`` on CUDA; the rest holds the rows a batch straddling two
chunks needs, the read-ahead and the block being read; each chunk is at least a global batch).
An epoch visits the chunks in a seeded random order and the rows of each chunk in a seeded
random order (:func:`epoch_plan`, keyed by ``(seed, epoch)`` alone, so any epoch and any step of
it can be replayed); batches are consecutive runs of that row stream and may
straddle two chunks.

The device holds a ring of rows (:class:`Stager`) that a chunk enters in visiting order, so
stream position ``p`` is ring row ``p % ring_rows``. A single helper thread reads a chunk from
the source a block at a time (converted to the model's dtype, targets converted by the loss,
values checked) and writes each row at its place: on the CPU straight into the ring, which
holds one chunk plus the rows of the previous chunk that a batch straddling the two still needs
(a chunk's fill starts once the steps that read the rows it overwrites are done, and the steps
of the new chunk wait for it); on CUDA into page-locked memory, copied into the ring
(:meth:`gpunn.backends.base.Backend.stage`) on a copy stream that first waits for the steps
that last read those rows, the steps that read the new chunk waiting for the copy; there the
ring holds a chunk more, so the next chunk is read and copied while this one trains. The
recorded step is unchanged: it gathers its rows from the ring through an index of
``ring_rows`` entries that ``gather_rows`` wraps (position ``p`` reads entry
``p % ring_rows``). What streaming holds per row of the source is the epoch's row order, 4
bytes a row (8 past 2^31 rows), which a checkpoint saves; the rest is bounded by
``chunk_rows``.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gpunn._checks import check_int
from gpunn.losses import get_loss
from gpunn.sources import SliceRows, as_rows
from gpunn.step import TrainStep
from gpunn.weights import batch_rescaled

#: Bytes of rows (all columns) streaming holds when ``chunk_rows`` is not given.
DEFAULT_CHUNK_BYTES = 32 << 20
#: Bytes of rows (all columns) the helper thread reads and converts at a time.
BLOCK_BYTES = 1 << 20


def chunk_bounds(n, most):
    """``[(start, stop), ...]``: ``n`` rows cut into ``ceil(n / most)`` runs of consecutive rows
    whose sizes differ by at most one (each at most ``most``)."""
    k = max(1, -(-n // most))
    edges = [n * j // k for j in range(k + 1)]
    return list(zip(edges[:-1], edges[1:]))


def ahead_rows(most, batch, overlap):
    """Rows a chunk's fill may write while the steps before it run: where host memory is the
    device's (the CPU: the helper thread writes into the ring) an eighth of a chunk or a batch,
    whichever is more (reading is far cheaper than training on the rows read); where copies
    ``overlap`` the steps (CUDA), a whole chunk, read and copied while the one before trains."""
    return most if overlap else max(batch, most // 8)


def block_rows(most, row_bytes):
    """Rows the helper thread reads at a time: about :data:`BLOCK_BYTES`, and at most an
    eighth of a chunk (at least one row)."""
    return max(1, min(most // 8, BLOCK_BYTES // max(1, row_bytes)))


def held_rows(most, batch, overlap, row_bytes):
    """Rows streaming holds for chunks of at most ``most`` rows: the ring (a chunk, the rows
    of the previous one that a batch straddling the two needs, the read-ahead) and the block
    being read."""
    return most + batch - 1 + ahead_rows(most, batch, overlap) + block_rows(most, row_bytes)


def least_held(n, batch, overlap, row_bytes):
    """The fewest rows a stream of ``n`` rows can hold: chunks of two batches with what
    :func:`held_rows` adds, or all ``n`` rows in one chunk and a block, whichever is less."""
    return min(n + block_rows(n, row_bytes), held_rows(2 * batch, batch, overlap, row_bytes))


def plan_chunks(n, chunk_rows, batch, overlap, row_bytes):
    """The chunks ``[(start, stop), ...]`` of a stream of ``n`` rows that holds at most
    ``chunk_rows`` rows (:func:`held_rows`): all ``n`` rows in one chunk when they fit, else
    chunks of at most the largest size that fits, which must be two batches at least (every
    chunk is then at least one: a batch straddles two chunks at most).

    Raises:
        ValueError: ``chunk_rows`` below the least that can work, naming it.
    """
    if n + block_rows(n, row_bytes) <= chunk_rows:  # one chunk: the ring is the n rows
        return [(0, n)]
    least = least_held(n, batch, overlap, row_bytes)
    if chunk_rows < least:
        raise ValueError(f"chunk_rows: expected at least {least} (with a global batch of "
                         f"{batch} rows: chunks of two batches, the rows a batch straddling "
                         f"two chunks needs, the read-ahead and the block being read; or the "
                         f"{n} rows whole and a block), got {chunk_rows}")
    low, high = 2 * batch, chunk_rows  # held_rows(low) fits, held_rows only grows with most
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if held_rows(mid, batch, overlap, row_bytes) <= chunk_rows \
            else (low, mid - 1)
    return chunk_bounds(n, low)


def epoch_plan(bounds, seed, epoch, shuffle=True):
    """The chunk order and each visited chunk's row permutation for ``epoch``.

    Returns:
        ``(chunks, perms)``: chunk indices in visiting order, and an iterator over the order
        of each visited chunk's rows (offsets from its start), drawn as it is iterated, so
        no more than a chunk's permutation is held. From
        ``numpy.random.default_rng([seed, epoch])``: first ``permutation(len(bounds))``, then
        one ``permutation(size)`` per visited chunk. Without ``shuffle``: chunks and rows in
        order.
    """
    sizes = [stop - start for start, stop in bounds]
    if not shuffle:
        return np.arange(len(bounds)), (np.arange(m) for m in sizes)
    rng = np.random.default_rng([seed, epoch])
    chunks = rng.permutation(len(bounds))
    return chunks, (rng.permutation(sizes[j]) for j in chunks)


def stream_sources(model, X, y, loss, keep_targets=False):
    """``(X, y, loss, T_shape, T)``: the inputs and targets as row sources, checked against
    ``model`` before any training; every target is converted once here (a pass over ``y``
    alone), so bad labels are refused now. Inputs are checked a chunk at a time as they are
    staged (their NaN/inf is found before the chunk trains, in the first epoch). ``T``: the
    converted targets of all rows when ``keep_targets`` (``class_weight`` needs the labels),
    else None."""
    loss = get_loss(loss, model)
    X, y = as_rows(X, "X"), as_rows(y, "y")
    if X.shape[1:] != (model.n_in,):
        raise ValueError(f"X: expected rows of {model.n_in} features, got shape {X.shape}")
    if len(y) != len(X):
        raise ValueError(f"y: expected {len(X)} rows, as X has, got {len(y)}")
    step = max(1, DEFAULT_CHUNK_BYTES // (8 * max(1, int(np.prod(y.shape[1:])))))
    T_shape, kept = None, []
    for start in range(0, len(y), step):
        stop = min(start + step, len(y))
        T = loss.targets(y.read(start, stop), stop - start, model.n_out, model.dtype)
        T_shape = T.shape[1:]
        if keep_targets:
            kept.append(np.asarray(T))
    return X, y, loss, T_shape, np.concatenate(kept) if keep_targets else None


def _prepared_blocks(model, X, y, loss, rows, argument):
    """``(start, stop, X_device, T)`` per block of ``rows`` rows of the row sources ``X``,
    ``y``, read and converted by ``model.prepare`` (errors name ``argument`` and the rows)."""
    for start in range(0, len(X), rows):
        stop = min(start + rows, len(X))
        try:
            Xd, T, _ = model.prepare(X.read(start, stop), y.read(start, stop), loss)
        except (TypeError, ValueError) as exc:
            at = getattr(X, "offset", 0)  # a row range: its rows in the source
            raise type(exc)(f"{argument}: {exc} (rows {at + start} to {at + stop - 1})") \
                from None
        yield start, stop, Xd, T


def _block_rows(model, batch_size):
    rows = DEFAULT_CHUNK_BYTES // (model.dtype.itemsize * model.n_in)
    return max(1, rows // batch_size) * batch_size


def check_rows(model, X, y, loss, argument="X"):
    """Read every row of the row sources ``X``, ``y`` once, a block at a time, and check them
    as :func:`evaluate_rows` will (NaN/inf, labels): ``fit`` calls it on streamed validation
    data before training, so bad rows are refused before any work instead of after the first
    epoch."""
    for _ in _prepared_blocks(model, X, y, loss, _block_rows(model, 1), argument):
        pass


def evaluate_rows(model, X, y, loss, batch_size, weights=None, argument="X"):
    """``(loss, accuracy)`` of ``model`` over the row sources ``X``, ``y`` (as
    :meth:`gpunn.Sequential.evaluate`), read a block of whole batches at a time, so the result
    has the bits of evaluating all rows at once; ``weights``: float64 host weights of the rows
    or None. Values are checked as each block is read (errors name ``argument`` and the
    rows)."""
    sums = (0.0, 0.0)
    for start, stop, Xd, T in _prepared_blocks(model, X, y, loss,
                                               _block_rows(model, batch_size), argument):
        sums = model.evaluate_sums(Xd, T, loss, batch_size,
                                   None if weights is None else weights[start:stop], sums)
    return model.evaluated(sums, len(X), loss, weights)


def direct_staging(backend):
    """Whether ``backend``'s device memory is host memory (the CPU): chunks are then read
    straight into the ring, not through host buffers and copies."""
    probe = np.empty(0)
    return backend.staging_buffer(probe) is probe


def row_bytes(columns):
    """Bytes of one row of every column of a :class:`Stager`'s ``columns``."""
    return sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
               for _, shape, dtype in columns.values())


class Stager:
    """A ring of ``ring_rows`` device rows per column (``"X"``, ``"T"``, ...), filled a chunk at
    a time with its rows in visiting order, so stream position ``p`` is ring row
    ``p % ring_rows``.

    Args:
        backend: the model's backend.
        columns: ``{name: (fill, row_shape, dtype)}``; ``fill(out, start, stop)`` writes the
            converted host rows ``start:stop`` into ``out`` and returns it, or returns a view
            of them in the source with ``out``'s shape and dtype (nothing copied); on the
            helper thread.
        bounds: the chunks' ``(start, stop)``.
        batch: rows of a (global) batch.
        checked: the columns (2-D float rows) whose NaN/inf are refused: counted as they are
            scattered (:meth:`~gpunn.backends.base.Backend.scatter_rows`, one pass), a
            ValueError naming the column and the block's rows.

    The ring holds a chunk, the rows of the previous one that a batch straddling the two
    still needs (``most + batch - 1`` rows, ``most`` the largest chunk) and the rows a chunk's
    fill may write while the steps before it run (:func:`ahead_rows`); :func:`held_rows` adds
    the block being read.
    """

    def __init__(self, backend, columns, bounds, batch, checked=()):
        self.backend, self.bounds = backend, bounds
        most = max(stop - start for start, stop in bounds)
        self.direct = direct_staging(backend)
        ahead = ahead_rows(most, batch, not self.direct)  # rows read while training
        self.ring_rows = min(bounds[-1][1], most + batch - 1 + ahead)
        self.device = {name: backend.zeros((self.ring_rows, *shape), dtype)
                       for name, (_, shape, dtype) in columns.items()}
        self._fill_rows = {name: column[0] for name, column in columns.items()}
        self._host = [] if self.direct else [
            {name: backend.staging_buffer(self.device[name][:most]) for name in columns}
            for _ in range(2)]
        rows = block_rows(most, row_bytes(columns))
        self._blocks = {name: np.empty((rows, *shape), dtype)
                        for name, (_, shape, dtype) in columns.items()}
        self._checked = tuple(checked)
        for name in self._checked:  # compiled here, not on the helper thread mid-epoch
            block = self._blocks[name][:0]
            backend.scatter_rows(block, np.empty(0, np.int64), block)
            block = block.view()
            block.flags.writeable = False  # a read-only memory map's rows
            backend.scatter_rows(block, np.empty(0, np.int64), self._blocks[name][:0])
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gpunn-stage")
        self._uploads = [None, None]  # per host buffer: the token of its last copy
        self._plan, self._next, self._pending = [], 0, {}

    def start(self, plan, first=0, allowed=0):
        """Begin an epoch's ``plan`` (per visiting position: ``(chunk, its source rows in
        visiting order, ring offset)``) at position ``first``; the fills of positions before
        ``allowed`` may start now."""
        self.cancel()
        self._plan, self._next = plan, first
        self.allow(allowed)

    def allow(self, upto):
        """Positions before ``upto`` may be filled: the steps that read the ring rows they
        overwrite are queued (their fills start now, their copies wait for those steps)."""
        while self._next < min(upto, len(self._plan)):
            self._submit(self._next, self.backend.mark())
            self._next += 1

    def _submit(self, c, after):
        j, rows, offset = self._plan[c]
        start, stop = self.bounds[j]
        if self.direct:
            host, offset = self.device, offset
        else:
            if c - 2 in self._pending:  # its copy reads the same host buffer: queue it first
                self.need(c - 2)
            self.backend.host_wait(self._uploads[c % 2])
            host, offset = self._host[c % 2], None
        self._pending[c] = (self._pool.submit(self._fill, host, rows, offset, start, stop),
                            after)

    def _fill(self, host, rows, offset, start, stop):
        """Rows ``start:stop`` into ``host`` at their visiting index (``rows``: the source
        rows in visiting order; plus ``offset``, modulo the ring, when ``host`` is the ring),
        a block of source rows at a time."""
        m = stop - start
        at = np.empty(m, np.int64)
        at[rows - start] = np.arange(m)
        if offset is not None:
            at = (at + offset) % self.ring_rows
        size = len(next(iter(self._blocks.values())))
        for a in range(0, m, size):
            b = min(a + size, m)
            for name, fill in self._fill_rows.items():
                rows = fill(self._blocks[name][:b - a], start + a, start + b)
                if name not in self._checked:
                    host[name][at[a:b]] = rows
                elif bad := self.backend.scatter_rows(rows, at[a:b], host[name]):
                    raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf "
                                     f"entries (rows {start + a} to {start + b - 1})")

    def need(self, c):
        """Wait until position ``c``'s rows are on the device (raises what reading raised)."""
        if c >= self._next:
            raise RuntimeError(f"staging: position {c} is needed before its fill was allowed")
        item = self._pending.pop(c, None)
        if item is None:
            return
        future, after = item
        future.result()
        if self.direct:
            return
        j, _, offset = self._plan[c]
        m = self.bounds[j][1] - self.bounds[j][0]
        first = min(m, self.ring_rows - offset)  # the rest wraps to the ring's start
        host, token = self._host[c % 2], None
        for name, ring in self.device.items():
            token = self.backend.stage(ring[offset:offset + first], host[name][:first], after)
            if first < m:
                token = self.backend.stage(ring[:m - first], host[name][first:m], after)
        self._uploads[c % 2] = token
        self.backend.use_staged(token)

    def cancel(self):
        """Drop reads in flight (an interrupted epoch)."""
        for future, _ in self._pending.values():
            future.cancel()
            if not future.cancelled():
                future.exception()  # wait: its buffer must not be written later
        self._pending = {}

    def close(self):
        self.cancel()
        self._pool.shutdown(wait=True)


class StreamStep(TrainStep):
    """A :class:`~gpunn.step.TrainStep` whose rows come from sources, a chunk at a time.

    Args:
        model, loss, optimizer, global_batch, halt_on_nonfinite, comm: as TrainStep.
        X, y: :class:`~gpunn.sources.RowSource` of the inputs and targets (same rows).
        T_shape: the row shape of the loss's converted targets.
        chunk_rows: the most rows streaming holds at once (:func:`plan_chunks`; None:
            about 32 MiB of rows, or the least that works).
        seed: the shuffling seed (:func:`epoch_plan`).
        weights: float64 host weight of every row, or None: rescaled per global batch of
            each epoch's order (as TrainStep does) and staged with the chunk's rows.
    """

    def __init__(self, model, loss, optimizer, X, y, T_shape, global_batch, chunk_rows=None,
                 seed=0, halt_on_nonfinite=True, comm=None, weights=None):
        n, dtype = len(X), model.dtype

        # sliced sources of the model's dtype (a memory map's rows are views of its pages):
        # scattered as read, without a copy into the block first
        views = isinstance(X, SliceRows) and X.dtype == dtype

        def inputs(out, start, stop):  # NaN/inf: refused as the rows are scattered
            if views:
                return X.read(start, stop)
            with np.errstate(over="ignore"):  # beyond the dtype: inf, refused as scattered
                X.read_into(out, start, stop)  # straight into the block, or converted
            return out

        def targets(out, start, stop):
            out[...] = loss.targets(y.read(start, stop), stop - start, model.n_out, dtype)
            return out

        def row_weights(out, start, stop):  # this epoch's rescaled weights (prepare_epoch)
            out[...] = self._rescaled[start:stop]
            return out

        columns = {"X": (inputs, (model.n_in,), dtype), "T": (targets, T_shape, dtype)}
        if weights is not None:
            columns["W"] = (row_weights, (), dtype)
        overlap, width = not direct_staging(model.backend), row_bytes(columns)
        if chunk_rows is None:  # about DEFAULT_CHUNK_BYTES, or the least that works
            chunk_rows = max(DEFAULT_CHUNK_BYTES // width,
                             least_held(n, global_batch, overlap, width))
        self.chunk_rows = check_int("chunk_rows", chunk_rows, low=1)
        bounds = plan_chunks(n, self.chunk_rows, global_batch, overlap, width)
        self.stager = Stager(model.backend, columns, bounds, global_batch, checked=("X",))
        self.seed, self.chunks = seed, bounds
        super().__init__(model, loss, optimizer, self.stager.device["X"],
                         self.stager.device["T"], global_batch, halt_on_nonfinite, comm, rows=n,
                         weights=weights)
        self._restored = None

    def _new_order(self, n):
        """The source rows' order (int32 where the rows allow: 4 bytes a row, the only
        per-row array streaming holds; a checkpoint saves it) and the ring's index: the
        steps gather stream position ``p`` from ring row ``p % ring_rows`` (the kernel wraps
        positions), so the device index has ``ring_rows`` entries however long the epoch."""
        order = np.arange(n, dtype=np.int32 if n <= np.iinfo(np.int32).max else np.int64)
        return order, self.model.backend.asarray(np.arange(self.stager.ring_rows))

    def prepare_epoch(self, epoch, rng, shuffle, first_step=0):
        """Plan ``epoch`` (:func:`epoch_plan`; ``rng`` is not used) and start staging its
        chunks from the one that ``first_step`` begins in."""
        self.stager.cancel()  # no fill in flight reads the order rewritten here
        chunks, perms = epoch_plan(self.chunks, self.seed, epoch, shuffle)
        ring, batch = self.stager.ring_rows, self.global_batch
        at, ends, plan, overwrites = 0, [], [], []
        for j, perm in zip(chunks, perms):
            rows = self.order[at:at + perm.size]
            np.add(perm, self.chunks[j][0], out=rows, casting="unsafe")
            plan.append((j, rows, at % ring))
            at += perm.size
            ends.append(at)
            # the last step that reads a ring row this chunk's fill overwrites (-1: none)
            overwrites.append(max(-1, (at - ring - 1) // batch))
        self._rescale_weights()
        self._ends = np.asarray(ends)
        # each step's first and last chunk position; after step k, the fills that may start
        starts = np.array([b[0] for b in self.bounds])
        stops = np.array([b[1] for b in self.bounds]) - 1
        self._first = np.searchsorted(self._ends, starts, side="right")
        self._last = np.searchsorted(self._ends, stops, side="right")
        self._allowed = np.searchsorted(overwrites, np.arange(-1, self.n_steps), side="right")
        restored, self._restored = self._restored, None
        if first_step and restored is not None and not np.array_equal(restored, self.order):
            raise ValueError(f"seed, chunk_rows: expected those of the checkpoint's run (its "
                             f"row order of epoch {epoch} is not the one they give here), got "
                             f"seed={self.seed}, chunk_rows={self.chunk_rows}")
        self.stager.start(plan, int(self._first[first_step]), int(self._allowed[first_step]))

    def _weight_buffer(self, n):
        return self.stager.device["W"]

    def _rescale_weights(self):
        """The rows' weights rescaled to mean 1 over each global batch of this epoch's order
        (TrainStep's rule), kept on the host: the chunks carry them to the device."""
        if self.weights is not None:
            self._rescaled = batch_rescaled(self.weights, self.order, self.global_batch)

    def run(self, k):
        self.stager.need(int(self._first[k]))
        self.stager.need(int(self._last[k]))
        super().run(k)
        self.stager.allow(int(self._allowed[k + 1]))

    def restore_order(self, order):
        """Check a saved row order (a permutation of the rows); the plan itself comes from the
        seed and the epoch."""
        order = None if order is None else np.asarray(order)
        if (order is None or order.shape != self.order.shape
                or not np.array_equal(np.sort(order), np.arange(len(self.order)))):
            raise ValueError(f"order: expected a permutation of the {len(self.order)} rows "
                             f"of X, got {None if order is None else order.shape}")
        self._restored = order.copy()

    def close(self):
        """Stop the helper thread."""
        self.stager.close()
