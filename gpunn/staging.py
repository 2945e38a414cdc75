"""Streaming training: chunks of rows staged to the device while the previous chunk trains.

The rows of a source (:mod:`gpunn.sources`) are cut into chunks: ``n // chunk_rows`` runs of
consecutive rows, of near-equal sizes (each at least ``chunk_rows``, so at least the global
batch). An epoch visits the chunks in a seeded random order and the rows of each chunk in a
seeded random order (:func:`epoch_plan`, keyed by ``(seed, epoch)`` alone, so any epoch and
any step of it can be replayed); batches are consecutive runs of that row stream and may
straddle two chunks.

The device holds two chunk slots (a ring). While the steps of one slot run, a single helper
thread reads the next chunk from the source into host memory (converted to the model's dtype,
targets converted by the loss, values checked), and the backend copies it into the other slot
(:meth:`gpunn.backends.base.Backend.stage`): on CUDA from page-locked memory on a copy stream
that first waits for the steps that last read that slot, and the steps that read the new
chunk wait for its copy; on the CPU the thread reads straight into the slot. The recorded step
is unchanged: it gathers its rows from the ring through the epoch's index array, which maps
each position of the row stream to its ring row.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gpunn._checks import check_features, check_finite, check_int
from gpunn.losses import get_loss
from gpunn.sources import as_rows
from gpunn.step import TrainStep
from gpunn.weights import batch_rescaled

#: Bytes of input rows per chunk when ``chunk_rows`` is not given.
DEFAULT_CHUNK_BYTES = 32 << 20


def chunk_bounds(n, chunk_rows):
    """``[(start, stop), ...]``: ``n`` rows cut into ``max(1, n // chunk_rows)`` runs of
    consecutive rows whose sizes differ by at most one (each at least ``chunk_rows``)."""
    k = max(1, n // chunk_rows)
    edges = [n * j // k for j in range(k + 1)]
    return list(zip(edges[:-1], edges[1:]))


def epoch_plan(bounds, seed, epoch, shuffle=True):
    """The chunk order and each visited chunk's row permutation for ``epoch``.

    Returns:
        ``(chunks, perms)``: chunk indices in visiting order, and for each of them the order
        of its rows (offsets from its start). From ``numpy.random.default_rng([seed, epoch])``:
        first ``permutation(len(bounds))``, then one ``permutation(size)`` per visited chunk.
        Without ``shuffle``: chunks and rows in order.
    """
    sizes = [stop - start for start, stop in bounds]
    if not shuffle:
        return np.arange(len(bounds)), [np.arange(m) for m in sizes]
    rng = np.random.default_rng([seed, epoch])
    chunks = rng.permutation(len(bounds))
    return chunks, [rng.permutation(sizes[j]) for j in chunks]


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


def evaluate_rows(model, X, y, loss, batch_size, weights=None, argument="X"):
    """``(loss, accuracy)`` of ``model`` over the row sources ``X``, ``y`` (as
    :meth:`gpunn.Sequential.evaluate`), read a block of whole batches at a time, so the result
    has the bits of evaluating all rows at once; ``weights``: float64 host weights of the rows
    or None. Values are checked as each block is read (errors name ``argument`` and the
    rows)."""
    n = len(X)
    rows = DEFAULT_CHUNK_BYTES // (model.dtype.itemsize * model.n_in)
    rows = max(1, rows // batch_size) * batch_size
    sums = (0.0, 0.0)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        try:
            Xd, T, _ = model.prepare(X.read(start, stop), y.read(start, stop), loss)
        except (TypeError, ValueError) as exc:
            at = getattr(X, "offset", 0)  # a row range: its rows in the source
            raise type(exc)(f"{argument}: {exc} (rows {at + start} to {at + stop - 1})") \
                from None
        sums = model.evaluate_sums(Xd, T, loss, batch_size,
                                   None if weights is None else weights[start:stop], sums)
    return model.evaluated(sums, n, loss, weights)


class Stager:
    """Two device slots of rows per column (``"X"``, ``"T"``, ...), filled chunk by chunk.

    Args:
        backend: the model's backend.
        columns: ``{name: (fill, row_shape, dtype)}``; ``fill(out, start, stop)`` writes the
            converted host rows ``start:stop`` into ``out`` (on the helper thread).
        bounds: the chunks' ``(start, stop)``.
    """

    def __init__(self, backend, columns, bounds):
        self.backend, self.bounds = backend, bounds
        self.slot_rows = max(stop - start for start, stop in bounds)
        slots = min(2, len(bounds))
        self.device = {name: backend.zeros((slots * self.slot_rows, *shape), dtype)
                       for name, (_, shape, dtype) in columns.items()}
        self._fill_rows = {name: column[0] for name, column in columns.items()}
        self._host = [{name: backend.staging_buffer(self._slot(name, s)) for name in columns}
                      for s in range(slots)]
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gpunn-stage")
        self._uploads = [None] * slots  # per slot: the token of its last copy
        self._free = [None] * slots  # per slot: the token of the steps that last read it
        self._chunks, self._pending = [], {}

    def _slot(self, name, s):
        return self.device[name][s * self.slot_rows:(s + 1) * self.slot_rows]

    def start(self, chunks, first=0):
        """Begin visiting ``chunks`` (indices into ``bounds``) at position ``first``."""
        self.cancel()
        self._chunks, self._released = list(chunks), first
        for s in range(len(self._free)):
            self._free[s] = self.backend.mark()  # the previous epoch's steps
        for c in range(first, min(first + len(self._free), len(self._chunks))):
            self._submit(c)

    def _submit(self, c):
        s = c % len(self._free)
        self.backend.host_wait(self._uploads[s])  # its host buffer is read by that copy
        start, stop = self.bounds[self._chunks[c]]
        self._pending[c] = self._pool.submit(self._fill, self._host[s], start, stop)

    def _fill(self, host, start, stop):
        for name, fill in self._fill_rows.items():
            fill(host[name][:stop - start], start, stop)

    def need(self, c):
        """Wait until position ``c``'s rows are on the device (raises what reading raised)."""
        future = self._pending.pop(c, None)
        if future is None:
            return
        future.result()
        s = c % len(self._free)
        m = self.bounds[self._chunks[c]][1] - self.bounds[self._chunks[c]][0]
        for name in self.device:
            token = self.backend.stage(self._slot(name, s)[:m], self._host[s][name][:m],
                                       self._free[s])
        self._uploads[s] = token
        self.backend.use_staged(token)

    def release(self, upto):
        """Positions before ``upto`` are read by no later step: refill their slots."""
        while self._released < upto:
            c, self._released = self._released, self._released + 1
            self._free[c % len(self._free)] = self.backend.mark()
            if c + len(self._free) < len(self._chunks):
                self._submit(c + len(self._free))

    def cancel(self):
        """Drop reads in flight (an interrupted epoch)."""
        for future in self._pending.values():
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
        chunk_rows: rows per chunk at least (None: about 32 MiB of inputs); at least the
            global batch.
        seed: the shuffling seed (:func:`epoch_plan`).
        weights: float64 host weight of every row, or None: rescaled per global batch of
            each epoch's order (as TrainStep does) and staged with the chunk's rows.
    """

    def __init__(self, model, loss, optimizer, X, y, T_shape, global_batch, chunk_rows=None,
                 seed=0, halt_on_nonfinite=True, comm=None, weights=None):
        n, dtype = len(X), model.dtype
        if chunk_rows is None:
            chunk_rows = DEFAULT_CHUNK_BYTES // (dtype.itemsize * model.n_in)
        chunk_rows = max(check_int("chunk_rows", chunk_rows, low=1), global_batch)
        bounds = chunk_bounds(n, chunk_rows)

        def inputs(out, start, stop):
            try:
                if X.dtype == dtype:  # straight into the slot (or its pinned buffer)
                    X.read_into(out, start, stop)
                    check_finite("X", out)
                else:
                    out[...] = check_features("X", X.read(start, stop), model.n_in, dtype)
            except ValueError as exc:
                raise ValueError(f"{exc} (rows {start} to {stop - 1})") from None

        def targets(out, start, stop):
            out[...] = loss.targets(y.read(start, stop), stop - start, model.n_out, dtype)

        def row_weights(out, start, stop):  # this epoch's rescaled weights (prepare_epoch)
            out[...] = self._rescaled[start:stop]

        columns = {"X": (inputs, (model.n_in,), dtype), "T": (targets, T_shape, dtype)}
        if weights is not None:
            columns["W"] = (row_weights, (), dtype)
        self.stager = Stager(model.backend, columns, bounds)
        self.seed, self.chunks = seed, bounds
        super().__init__(model, loss, optimizer, self.stager.device["X"],
                         self.stager.device["T"], global_batch, halt_on_nonfinite, comm, rows=n,
                         weights=weights)
        self._ring = np.zeros(n, np.int64)
        self.order = np.arange(n)  # the source rows' order; on the CPU _order was this array
        self._restored = None

    def prepare_epoch(self, epoch, rng, shuffle, first_step=0):
        """Plan ``epoch`` (:func:`epoch_plan`; ``rng`` is not used) and start staging its
        chunks from the one that ``first_step`` begins in."""
        chunks, perms = epoch_plan(self.chunks, self.seed, epoch, shuffle)
        slot_rows, slots = self.stager.slot_rows, len(self.stager._free)
        at, ends = 0, []
        for c, (j, perm) in enumerate(zip(chunks, perms)):
            self.order[at:at + perm.size] = self.chunks[j][0] + perm
            self._ring[at:at + perm.size] = (c % slots) * slot_rows + perm
            at += perm.size
            ends.append(at)
        self.model.backend.copy_from_host(self._order, self._ring)
        self._rescale_weights()
        self._ends = np.asarray(ends)
        # each step's first and last chunk position
        starts = np.array([b[0] for b in self.bounds])
        stops = np.array([b[1] for b in self.bounds]) - 1
        self._first = np.searchsorted(self._ends, starts, side="right")
        self._last = np.searchsorted(self._ends, stops, side="right")
        restored, self._restored = self._restored, None
        if first_step and restored is not None and not np.array_equal(restored, self.order):
            raise ValueError(f"seed: expected the seed of the checkpoint's run (its row order "
                             f"of epoch {epoch} is not this seed's), got {self.seed}")
        self.stager.start(chunks, int(self._first[first_step]))

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
        self.stager.release(int(self._first[k + 1]) if k + 1 < self.n_steps
                            else len(self._ends))

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
