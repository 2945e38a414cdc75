"""Training: epochs of shuffled mini-batches, a learning-rate schedule, validation, callbacks."""

import math
import sys
import time

import numpy as np

from gpunn.checkpoint import CheckpointError, save_checkpoint
from gpunn.history import History
from gpunn.optim import get_optimizer
from gpunn.resume import check_checkpointing, resume
from gpunn.schedules import get_schedule
from gpunn.validation import check_bool, check_choice, check_int
from gpunn.workspace import Workspace


class TrainingDiverged(FloatingPointError, RuntimeError):
    """The loss or the gradient became NaN or infinite; the update of that step was not applied.

    Attributes:
        epoch: epoch number (from 1).
        step: step within the epoch (from 1).
        loss: the loss of that step (finite when only the gradient was not).
        last_finite_loss: loss of the previous step, or None if there was none.
    """

    def __init__(self, epoch, step, loss, last_finite_loss):
        self.epoch, self.step = epoch, step
        self.loss, self.last_finite_loss = loss, last_finite_loss
        what = (f"the loss is {loss}" if not math.isfinite(loss) else
                f"the gradient has NaN/inf entries (loss {loss})")
        super().__init__(
            f"training diverged at epoch {epoch}, step {step}: {what}; last finite "
            f"loss {last_finite_loss}. The model keeps the parameters that gave it (that step's "
            "update was not applied); try a smaller learning rate.")


def _take_rows(xp, source, idx, out):
    """``out[:] = source[idx]`` without a temporary."""
    if xp is np:
        # NumPy's default mode="raise" buffers the result through a temporary; the indices are
        # a permutation, always in range, so "clip" gives the same result with no allocation.
        np.take(source, idx, axis=0, out=out, mode="clip")
    else:
        xp.take(source, idx, axis=0, out=out)


class Trainer:
    """The training set on the device, its batch buffers, and one training step.

    Built by :func:`fit`; after the first step of each shape, :meth:`step` allocates nothing.

    Args:
        model: a :class:`~gpunn.Sequential`.
        X, T: device inputs and targets (from ``model.prepare``).
        loss: the loss object.
        optimizer: the optimizer object.
        batch_size: rows per mini-batch (the last one may be smaller).
        gather: gather each batch's rows in ``order`` into buffers; False takes views of
            consecutive rows instead (no copy, no second copy of the data set in memory).
    """

    def __init__(self, model, X, T, loss, optimizer, batch_size, gather=True):
        self.model, self.X, self.T = model, X, T
        self.loss, self.optimizer = loss, optimizer
        n = X.shape[0]
        self.bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
        self.order = np.arange(n)
        self.last_loss = None  # mean loss of the last finite step, for TrainingDiverged
        self._order = model.backend.asarray(self.order)
        # The step's loss and gradient sum side by side, so one device read checks both.
        self._sums = model.backend.zeros(2, model.dtype)
        self._loss_sum, self._grad_sum = (self._sums[i:i + 1].reshape(()) for i in (0, 1))
        self._batch = Workspace(model.backend, batch_size, {
            "X": (X.shape[1:], X.dtype), "T": (T.shape[1:], T.dtype)}) if gather else None

    def restore_order(self, order):
        """Continue from a saved row ``order`` (a permutation of the rows)."""
        if order is None or sorted(order.tolist()) != list(range(len(self.order))):
            raise CheckpointError(f"fit.order: expected a permutation of the {len(self.order)} "
                                  f"rows of X, got {None if order is None else order.shape}")
        self.order[:] = order
        self._order = self.model.backend.asarray(self.order)

    def shuffle(self, rng):
        """Permute the order of the rows with ``rng`` (host), then copy it to the device once."""
        rng.shuffle(self.order)
        self._order = self.model.backend.asarray(self.order)

    def step(self, start, stop):
        """Gather rows ``order[start:stop]``, compute loss and gradients, update the model.

        Returns:
            ``(total, applied)``: the sum of the batch's loss terms (times ``loss.scale`` is the
            mean) and whether the update was applied. It is not when the loss or the sum of
            the gradient (a cheap test for NaN/inf entries; one that overflows counts as
            non-finite) is NaN or inf: both are read from the device, in one transfer, before
            the update.
        """
        xp = self.model.backend.xp
        if self._batch is None:
            X, T = self.X[start:stop], self.T[start:stop]
        else:
            batch, idx = self._batch.rows(stop - start), self._order[start:stop]
            X, T = batch["X"], batch["T"]
            _take_rows(xp, self.X, idx, X)
            _take_rows(xp, self.T, idx, T)
        xp.copyto(self._loss_sum, self.model._loss_and_grad(X, T, self.loss))
        xp.sum(self.model.flat_grads, out=self._grad_sum)
        total, grad_sum = (float(v) for v in self.model.backend.to_numpy(self._sums))
        applied = math.isfinite(total) and math.isfinite(grad_sum)
        if applied:
            self.optimizer.step(self.model)
        return total, applied


def fit(model, X, y, loss=None, optimizer="adam", lr=None, epochs=10, batch_size=None,
        shuffle=True, schedule=None, validation_data=None, seed=0, progress=None,
        callbacks=(), record_steps=False, on_nonfinite="raise", checkpoint_every=None,
        checkpoint_path=None, resume_from=None):
    """Train ``model`` on ``(X, y)`` by mini-batch gradient descent; the :class:`History`.

    Each epoch reshuffles the rows (``numpy.random.default_rng(seed)`` on the host, so every
    backend sees the same batches) unless ``shuffle=False`` or one batch holds them all. The
    data moves to the device once; each step gathers its rows into preallocated buffers (or,
    not shuffling, takes a view of consecutive rows) and, after the first step, allocates
    nothing. The loss and the gradient's sum of every step are read back (one 2-element read)
    so that a non-finite step is caught before its update: :class:`TrainingDiverged` names the epoch
    and step, and the model keeps its last finite parameters.

    Args:
        model: a :class:`~gpunn.Sequential` / :class:`~gpunn.MLP`; trained in place.
        X: ``(n, n_in)`` inputs; any array-like, converted once.
        y: targets: class labels (softmax), 0/1 (sigmoid) or values (regression).
        loss: loss name or object; None is the default of ``model.output``.
        optimizer: a name (``"sgd"``, ``"momentum"``, ``"rmsprop"``, ``"adam"``, ``"adamw"``)
            or an optimizer object.
        lr: learning rate for a named optimizer; None takes its default.
        epochs: passes over the data in all (>= 1), counting those before ``resume_from``.
        batch_size: None for full-batch gradient descent, 1 for SGD, else rows per batch; the
            last, smaller batch is kept.
        shuffle: reshuffle the rows every epoch.
        schedule: a schedule name or object (``gpunn.schedules``), or None for a constant lr;
            it sets ``optimizer.lr`` from ``optimizer.base_lr`` before every epoch or step.
        validation_data: ``(X_val, y_val)``, evaluated after every epoch.
        seed: seed of the shuffling.
        progress: True for a tqdm bar on stderr, False for none, None for a bar when stderr
            is a terminal.
        callbacks: callables ``cb(epoch, history, model)`` run after every epoch (``epoch``
            from 1); one returning ``True`` stops training after that epoch.
        record_steps: also record the loss of every step in ``history.step_cost``.
        on_nonfinite: ``"raise"`` (:class:`TrainingDiverged`) or ``"skip"``: drop the step's
            update, count it in ``history.skipped_steps`` and go on.
        checkpoint_every: save a checkpoint every this many epochs (and after the last).
        checkpoint_path: where checkpoints go (overwritten atomically); alone, it saves after
            the last epoch.
        resume_from: a checkpoint written by ``fit``: parameters, optimizer state and
            hyperparameters, schedule, shuffling state and history are restored and training
            continues after its epoch. The optimizer's kind and the schedule must match it.

    Returns:
        A :class:`History` (continuing the checkpoint's when resuming).
    """
    Xd, T, loss = model.prepare(X, y, loss)
    n = Xd.shape[0]
    epochs = check_int("epochs", epochs, low=1)
    batch_size = n if batch_size is None else check_int("batch_size", batch_size, low=1, high=n)
    shuffle = check_bool("shuffle", shuffle) and batch_size < n  # one batch: order is moot
    record_steps = check_bool("record_steps", record_steps)
    rng = np.random.default_rng(check_int("seed", seed, low=0))
    callbacks = _check_callbacks(callbacks)
    show = sys.stderr.isatty() if progress is None else check_bool("progress", progress)
    skip = check_choice("on_nonfinite", on_nonfinite, ("raise", "skip")) == "skip"
    every, path = check_checkpointing(checkpoint_every, checkpoint_path, epochs)
    validation = _prepare_validation(model, validation_data, loss)
    trainer = Trainer(model, Xd, T, loss, get_optimizer(optimizer, lr), batch_size, shuffle)
    schedule = get_schedule(schedule)
    history = History(backend=model.backend.name, batch_size=batch_size, n_samples=n)
    done = 0
    if resume_from is not None:
        schedule, history, rng, done = resume(resume_from, trainer, schedule, history)
    with _progress_bar(show, epochs, done) as bar:
        for epoch in range(done + 1, epochs + 1):
            if shuffle:
                trainer.shuffle(rng)
            seconds = _run_epoch(trainer, schedule, epoch, history, record_steps, skip)
            _log_epoch(trainer, history, epoch, seconds, validation, batch_size)
            bar.update(1)
            bar.set_postfix(_summary(history), refresh=False)
            stop = True in [cb(epoch, history, model) is True for cb in callbacks]  # call all
            if path is not None and (epoch % every == 0 or epoch == epochs or stop):
                save_checkpoint(path, model, trainer.optimizer, schedule, history, epoch=epoch,
                                rng=rng, order=trainer.order)
            if stop:
                break
    return history


def _run_epoch(trainer, schedule, epoch, history, record_steps, skip=False):
    """One pass over the batches; records the epoch's cost, returns its wall time.

    The cost averages the steps whose update was applied (NaN if none was).
    """
    model, loss, optimizer = trainer.model, trainer.loss, trainer.optimizer
    if schedule is not None and schedule.per == "epoch":
        optimizer.lr = schedule(optimizer.base_lr, epoch - 1)
    steps_before = (epoch - 1) * len(trainer.bounds)
    total, rows = 0.0, 0
    started = time.perf_counter()
    for k, (start, stop) in enumerate(trainer.bounds):
        if schedule is not None and schedule.per == "step":
            optimizer.lr = schedule(optimizer.base_lr, steps_before + k)
        value, applied = trainer.step(start, stop)
        mean = value * loss.scale(stop - start, model.n_out)
        if not applied and not skip:
            raise TrainingDiverged(epoch, k + 1, mean, trainer.last_loss)
        if applied:
            total, rows, trainer.last_loss = total + value, rows + stop - start, mean
        history.skipped_steps += not applied
        if record_steps:
            history.step_cost.append(mean)
    model.backend.synchronize()
    seconds = time.perf_counter() - started
    history.cost.append(total * loss.scale(rows, model.n_out) if rows else math.nan)
    return seconds


def _log_epoch(trainer, history, epoch, seconds, validation, batch_size):
    history.epoch.append(epoch)
    history.seconds.append((history.seconds[-1] if history.seconds else 0.0) + seconds)
    history.samples_per_second.append(trainer.X.shape[0] / seconds if seconds > 0 else math.inf)
    history.lr.append(trainer.optimizer.lr)
    if validation is not None:
        val_loss, accuracy = trainer.model._evaluate(*validation, trainer.loss, batch_size)
        history.val_loss.append(val_loss)
        if accuracy is not None:
            history.val_accuracy.append(accuracy)


def _summary(history):
    summary = {"cost": f"{history.cost[-1]:.4g}"}
    if history.val_accuracy:
        summary["val_acc"] = f"{history.val_accuracy[-1]:.4f}"
    elif history.val_loss:
        summary["val_loss"] = f"{history.val_loss[-1]:.4g}"
    return summary


def _prepare_validation(model, validation_data, loss):
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise TypeError("validation_data: expected a pair (X_val, y_val), got "
                        f"{type(validation_data).__name__}")
    try:
        Xv, Tv, _ = model.prepare(validation_data[0], validation_data[1], loss)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"validation_data: {exc}") from None
    return Xv, Tv


def _check_callbacks(callbacks):
    callbacks = [callbacks] if callable(callbacks) else list(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise TypeError(f"callbacks[{i}]: expected a callable cb(epoch, history, model), "
                            f"got {type(cb).__name__}")
    return callbacks


def _progress_bar(show, epochs, done=0):
    from tqdm import tqdm

    return tqdm(total=epochs, initial=done, unit="epoch", disable=not show, file=sys.stderr,
                dynamic_ncols=True)
