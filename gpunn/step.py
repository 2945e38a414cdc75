"""One training step, owned by :class:`TrainStep`: recorded once per batch shape, replayed.

A step is gather -> forward -> fused loss -> backward -> (all-reduce) -> finiteness check ->
(gradient clipping, :mod:`gpunn.optim.clip`) -> ONE fused update -> bookkeeping, all on the
device. Nothing in it reads a host value that
changes from step to step: the batch offset, the learning rate and the update count come from
small device arrays (the control array and the epoch's learning-rate table, both held by a
:class:`~gpunn.control.Control`), so the launches of a step are recorded once per batch shape and
replayed; on CUDA they are captured as a CUDA graph and relaunched with one call
(``backend.replayable``). The host reads the step records once per epoch (or every
``check_every`` steps): each step's loss sum and status.

Divergence is handled on the device: ``nonfinite_check`` flags a step whose loss or gradient
is NaN/inf and the update kernels then leave parameters and state untouched (PyTorch's fused
Adam ``found_inf``, optax ``apply_if_finite``); an update that itself produces a non-finite
parameter is flagged too. After a flagged step, with ``halt_on_nonfinite``, no further update
is applied until the host has seen it.
"""

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from gpunn.comm import SingleProcess, shard
from gpunn.control import STEP_APPLIED, STEP_BAD_UPDATE, Control
from gpunn.weights import batch_rescaled
from gpunn.workspace import Workspace


@dataclass
class StepRecords:
    """What the device recorded for the steps run so far in this epoch, and their mean losses:
    the one place a step's loss sum becomes a mean.

    Attributes:
        totals: each step's sum of loss terms (times ``loss.scale`` of the step's GLOBAL batch
            on a shard; times :attr:`scale` of its rows: the mean).
        status: each step's status: ``STEP_APPLIED``, ``STEP_NONFINITE`` (loss or gradient
            NaN/inf; the update was not applied), ``STEP_BAD_UPDATE`` (the update was applied
            except where it would have made parameters or state non-finite: those were held)
            or ``STEP_HALTED`` (not applied: halted before).
        rows: each step's batch rows.
        scale: ``scale(rows)``, the loss's factor from a sum over ``rows`` rows to its mean.
    """

    totals: np.ndarray
    status: np.ndarray
    rows: np.ndarray
    scale: Callable[[int], float]

    @property
    def applied(self):
        """Mask of the steps whose update was applied."""
        return (self.status == STEP_APPLIED) | (self.status == STEP_BAD_UPDATE)

    def first(self, statuses):
        """Index of the first step with one of ``statuses``, or None."""
        hits = np.flatnonzero(np.isin(self.status, statuses))
        return int(hits[0]) if hits.size else None

    def count(self, status):
        """How many steps have ``status``."""
        return int((self.status == status).sum())

    def mean(self, k):
        """The mean loss of step ``k``."""
        return float(self.totals[k]) * self.scale(int(self.rows[k]))

    @cached_property
    def means(self):
        """The mean loss of every step (float64 array)."""
        return self.totals * np.array([self.scale(m) for m in self.rows])

    def applied_mean(self):
        """The mean loss over the rows of the applied steps; NaN if none was applied."""
        applied = self.applied
        rows = int(self.rows[applied].sum())
        return float(self.totals[applied].sum()) * self.scale(rows) if rows else math.nan

    def last_finite(self):
        """Index of the last step applied with finite results (``STEP_APPLIED``), or None."""
        hits = np.flatnonzero(self.status == STEP_APPLIED)
        return int(hits[-1]) if hits.size else None


class TrainStep:
    """The training set on the device, its batch buffers, and one recorded training step.

    Per epoch: :meth:`shuffle` (optional), :meth:`begin_epoch` with the epoch's learning
    rates, :meth:`run` for each batch index, :meth:`read` for the records. After the first two
    steps of each batch shape (one eager run while recording, one capture), a step launches
    the recording and allocates nothing.

    Args:
        model: a :class:`~gpunn.Sequential`.
        loss: the loss object.
        optimizer: the optimizer object.
        X, T: device inputs and targets (from ``model.prepare``).
        global_batch: rows per mini-batch of all ranks together (the last one may be
            smaller); with one process, the batch.
        halt_on_nonfinite: after a step with a non-finite loss or gradient, apply no further
            update (fit's ``on_nonfinite="raise"``); else such steps are skipped and counted.
        rows: rows of an epoch, when ``X`` and ``T`` hold other rows that the order maps
            them to (:class:`gpunn.staging.StreamStep`); None: all rows of ``X``.
        comm: a communicator (:mod:`gpunn.comm`); with several ranks, each rank computes its
            shard of every global batch (:func:`gpunn.comm.shard`) with
            the global batch's loss scale, and the gradient and the loss total are summed over
            the ranks between backward and the finiteness check, so every rank sees the same
            numbers and takes the same decisions.
        weights: float64 host weight of every row (:mod:`gpunn.weights`), or None. Each
            time the batches change (:meth:`shuffle`, :meth:`restore_order`) they are
            rescaled to mean 1 per global batch and copied to the device once; each step
            gathers its rows' weights with its inputs and the loss kernel applies them.

    Attributes:
        last_finite_loss: the mean loss of the last step applied with finite results, as of
            the last :meth:`read` (None before any).
    """

    def __init__(self, model, loss, optimizer, X, T, global_batch=None, halt_on_nonfinite=True,
                 comm=None, batch_size=None, rows=None, weights=None):
        if batch_size is not None:  # its name before it said which batch it is
            warnings.warn("TrainStep(batch_size=) is deprecated: it is the global batch, "
                          "TrainStep(global_batch=)", DeprecationWarning, stacklevel=2)
            global_batch = batch_size
        be, n = model.backend, X.shape[0] if rows is None else rows
        self.rows = n
        self.model, self.loss, self.optimizer, self.X, self.T = model, loss, optimizer, X, T
        self.global_batch = global_batch
        self.bounds = [(s, min(s + global_batch, n)) for s in range(0, n, global_batch)]
        self.n_steps = len(self.bounds)
        self.halt_on_nonfinite = bool(halt_on_nonfinite)
        self.comm = SingleProcess() if comm is None else comm
        self.last_finite_loss = None
        rows = -(-global_batch // self.comm.size)  # the largest shard
        self.order, self._order = self._new_order(n)
        self._control = Control(be, model.dtype, self.n_steps)
        self._record = be.zeros(2 * self.n_steps, model.dtype)
        self._ws = model.new_workspace(rows, loss)
        self.weights = weights
        self.W = None if weights is None else self._weight_buffer(n)
        self._rescale_weights()
        # One batch of all rows in order: the data itself, nothing to gather.
        data = {"X": (X.shape[1:], X.dtype), "T": (T.shape[1:], T.dtype)}
        if weights is not None:
            data["W"] = ((), model.dtype)
        self._batch = None if self.n_steps == 1 else Workspace(be, rows, data)
        self._tapes, self._replays = {}, {}
        self._t0, self._k = optimizer.t, 0

    @property
    def batch_size(self):
        """Deprecated name of :attr:`global_batch`."""
        return self.global_batch

    @property
    def graph_status(self):
        """How recorded steps are replayed on this backend (CUDA graphs or eagerly)."""
        return self.model.backend.graph_status

    def restore_order(self, order):
        """Continue from a saved row ``order`` (a permutation of the rows); ValueError if not."""
        order = None if order is None else np.asarray(order)
        if (order is None or order.shape != self.order.shape
                or not np.array_equal(np.sort(order), np.arange(len(self.order)))):
            raise ValueError(f"order: expected a permutation of the {len(self.order)} rows "
                             f"of X, got {None if order is None else order.shape}")
        self.order[:] = order
        self.model.backend.copy_from_host(self._order, self.order)
        self._rescale_weights()

    def prepare_epoch(self, epoch, rng, shuffle, first_step=0):
        """Before an epoch: permute the rows with ``rng`` when ``shuffle``, unless the epoch
        resumes at ``first_step`` > 0 (its order was restored)."""
        if shuffle and not first_step:
            self.shuffle(rng)

    def close(self):
        """Release what the step holds beyond its buffers (nothing here)."""

    def shuffle(self, rng):
        """Permute the rows with ``rng`` (host), then copy the order to the device once (and
        the weights rescaled for the new batches)."""
        rng.shuffle(self.order)
        self.model.backend.copy_from_host(self._order, self.order)
        self._rescale_weights()

    def _new_order(self, n):
        """``(order, device index)``: the rows' order on the host and the index array the
        steps gather through (here the order itself, copied to the device)."""
        order = np.arange(n)
        return order, self.model.backend.asarray(order)

    def _weight_buffer(self, n):
        """The device array of the ``n`` rows' weights that the steps gather from."""
        return self.model.backend.empty(n, self.model.dtype)

    def _rescale_weights(self):
        """The row weights rescaled to mean 1 over each global batch of the current order,
        to the device (once per order: nothing per step)."""
        if self.weights is not None:
            rescaled = batch_rescaled(self.weights, self.order, self.global_batch)
            self.model.backend.copy_from_host(self.W, rescaled.astype(self.model.dtype))

    def begin_epoch(self, lrs, done=None):
        """Start an epoch: ``lrs`` holds the learning rate of each of its steps (host floats,
        one copy to the device); the step index and flags restart, the update count is the
        optimizer's.

        Args:
            lrs: the epoch's learning rates, one per step.
            done: resuming mid-epoch, ``(totals, status)`` of the steps already done (from a
                checkpoint): the epoch continues with the next step, and :meth:`read`
                returns their records too.
        """
        k, t0 = 0, self.optimizer.t
        if done is not None:
            totals, status = (np.asarray(a) for a in done)
            k, n = len(totals), self.n_steps
            record = self.model.backend.to_numpy(self._record)
            record[:k], record[n:n + k] = totals, status
            self.model.backend.copy_from_host(self._record, record)
            t0 -= int(np.isin(status, (STEP_APPLIED, STEP_BAD_UPDATE)).sum())
        self._control.start(lrs, self.optimizer.t, k)
        self._t0, self._k = t0, k

    @property
    def steps_done(self):
        """Steps of the epoch run so far (the next :meth:`run` takes this index)."""
        return self._k

    def run(self, k):
        """Run step ``k`` of the epoch (``k`` must follow the previous one)."""
        if k != self._k:
            raise ValueError(f"k: expected step {self._k} of the epoch, got {k}")
        start, stop = self.bounds[k]
        key = (stop - start, self.optimizer.launch_key())
        replay = self._replays.get(key)
        if replay is None:
            tape = self._tapes.get(key)
            if tape is None:  # the first step of this shape runs eagerly while recording
                with self.model.backend.recording() as tape:
                    self._launch(stop - start)
                self._tapes[key] = tape
            else:
                replay = self._replays[key] = self.model.backend.replayable(tape)
        if replay is not None:
            replay()
        self._k += 1

    def _launch(self, m):
        """The launches of one step of ``m`` rows (what gets recorded); with a communicator,
        of this rank's shard of them."""
        model, be, comm = self.model, self.model.backend, self.comm
        lo, hi = shard(0, m, comm.rank, comm.size)
        if hi > lo:
            views = self._ws.rows(hi - lo)
            X, T, W, rounded = self._shard_rows(lo, hi, views.get("Xh"))
            # Dropout masks keyed by the device's update count and the rows' place in the batch
            # (none: the passes are called as they were before dropout existed).
            masks = model.dropout_pass(self._control.ctrl, lo)
            extra = {} if masks is None else {"masks": masks}
            total = model.loss_pass(X, T, self.loss, views, self.loss.scale(m, model.n_out), W,
                                    rounded=rounded, **extra)
            model.backward_pass(X, views, **extra)
        else:  # a last batch with fewer rows than ranks: this rank adds nothing
            total = self._ws.arrays["total"]
            be.call(model.flat_grads.fill, 0)
            be.call(total.fill, 0)
        if comm.size > 1:
            be.call(comm.allreduce_sum, model.flat_grads)
            be.call(comm.allreduce_sum, total)
        ctrl = self._control.ctrl
        be.kernel("nonfinite_check", total, model.flat_grads, ctrl)
        self.optimizer.update(model, self._control.lrs, ctrl)
        be.kernel("step_end", total, self.n_steps, self.halt_on_nonfinite, ctrl, self._record)

    def _shard_rows(self, lo, hi, X_half=None):
        """Inputs, targets and weights (None: unweighted) of rows ``lo:hi`` of the step's
        batch: views of the data when it is one batch in order, else gathered by the kernel
        (offset ``lo`` in the batch); ``X_half`` (precision "bf16"): the gathered inputs'
        bfloat16 copy is written there by the same kernel. The fourth value says whether it
        was (else the forward pass rounds the inputs itself)."""
        W = self.W
        if self._batch is None:
            return self.X[lo:hi], self.T[lo:hi], None if W is None else W[lo:hi], False
        be, batch = self.model.backend, self._batch.rows(hi - lo)
        pairs = [(self.X, batch["X"], X_half), (self.T, batch["T"], None)]
        if W is not None:
            pairs.append((W, batch["W"], None))
        for source, out, half in pairs:
            args = (source, self._order, self._control.ctrl, source.size, self._order.size,
                    self.rows, self.global_batch, lo, out.size // (hi - lo), out)
            if half is None:
                be.kernel("gather_rows", *args)
            else:
                be.kernel("gather_rows_bf16", *args, half)
        return batch["X"], batch["T"], batch.get("W"), X_half is not None

    def read(self):
        """The records of the steps run so far this epoch: ONE device-to-host read.

        Also tells the optimizer the updates applied so far (its ``t``), and updates
        :attr:`last_finite_loss`.
        """
        self.comm.wait()  # NCCL: the queued collectives, against the communicator's deadline
        record = self.model.backend.to_numpy(self._record)
        k, n = self._k, self.n_steps
        rows = np.array([stop - start for start, stop in self.bounds[:k]])
        records = StepRecords(totals=record[:k].astype(np.float64),
                              status=record[n:n + k].astype(np.int64), rows=rows,
                              scale=self._scale)
        if k:  # steps of this epoch ran: the device counted their updates from _t0
            self.optimizer.count_updates(self._t0 + int(records.applied.sum()))
        last = records.last_finite()
        if last is not None:
            self.last_finite_loss = records.mean(last)
        return records

    def _scale(self, rows):
        """The loss's factor from a sum over ``rows`` rows to its mean."""
        return self.loss.scale(rows, self.model.n_out)
