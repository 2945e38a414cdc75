"""What ``fit`` needs to save checkpoints as it trains and to continue from one exactly."""

import os

import numpy as np

from gpunn._checks import check_int
from gpunn._files import check_target
from gpunn.checkpoint import CheckpointError, container, read_parts, save_checkpoint
from gpunn.history import History

# JSON characters of one number in the history at most ("-1.2345678901234567e-300, ").
_NUMBER_BYTES = 26


def check_checkpointing(every, path, epochs, recorded_steps=0, writer=True):
    """``(every, path)`` checked; ``every`` defaults to ``epochs`` (save after the last one).

    Args:
        every: epochs between checkpoints (>= 1) or None.
        path: a file path (str or os.PathLike), or None for no checkpoints.
        epochs: the fit's epochs.
        recorded_steps: steps whose loss the history records (``record_steps``), all epochs:
            the checkpoint's header must hold them, so a run that would outgrow
            ``container.MAX_HEADER_BYTES`` is refused now, not at its first save.
        writer: whether this process writes the checkpoints (rank 0): then ``path`` is
            checked as a file to write now (folder, permissions, kind), not after an epoch.

    Returns:
        ``(every, path)``; ``(None, None)`` without ``path``.
    """
    if path is None:
        if every is not None:
            raise ValueError(f"checkpoint_every: expected checkpoint_path too, got every={every} "
                             "and checkpoint_path=None")
        return None, None
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint_path: expected a file path, got {type(path).__name__}")
    every = epochs if every is None else check_int("checkpoint_every", every, low=1)
    history_bytes = _NUMBER_BYTES * (recorded_steps + 8 * epochs)
    if history_bytes > container.MAX_HEADER_BYTES // 2 and recorded_steps <= 8 * epochs:
        raise ValueError(f"epochs: expected at most about "
                         f"{container.MAX_HEADER_BYTES // 2 // (8 * _NUMBER_BYTES)} epochs with "
                         f"checkpoint_path (each epoch's history goes into the checkpoint's "
                         f"header), got {epochs}; checkpoint a shorter run, or none")
    if history_bytes > container.MAX_HEADER_BYTES // 2:  # the rest: model, rng, extra
        raise ValueError(f"record_steps: expected at most about "
                         f"{container.MAX_HEADER_BYTES // 2 // _NUMBER_BYTES} recorded steps "
                         f"with checkpoint_path (their losses go into the checkpoint's "
                         f"header), got {recorded_steps} in {epochs} epochs; record fewer "
                         "(record_steps=False) or checkpoint without them")
    if writer:
        check_target("checkpoint_path", path).close()
    return every, path


def save_during_fit(comm, path, trainer, schedule, history, epoch, rng, records=None):
    """Rank 0 writes ``fit``'s checkpoint after ``epoch``; no rank goes on before it is on disk.

    Args:
        comm: the fit's communicator.
        path: the checkpoint path (checked by :func:`check_checkpointing`).
        trainer: the fit's :class:`~gpunn.step.TrainStep` (model, optimizer, row order).
        schedule, history, epoch, rng: the fit's state after ``epoch``.
        records: mid-epoch, the :class:`~gpunn.step.StepRecords` of the steps done in epoch
            ``epoch + 1`` (resuming continues after them); None at an epoch's end.
    """
    steps = None if records is None else (records.totals, records.status)
    if comm.rank == 0:
        save_checkpoint(path, trainer.model, trainer.optimizer, schedule, history, epoch=epoch,
                        rng=rng, order=trainer.order, steps=steps)
    comm.barrier()


def resume(path, trainer, schedule, history, epochs):
    """Restore a ``fit`` checkpoint into ``trainer``'s model and optimizer.

    The whole checkpoint is read and checked against this fit first (architecture, optimizer
    kind, schedule, batch size, rows, row order, epochs and history); only then are the model's
    parameters, the optimizer and the row order changed, so a refused resume changes nothing.

    Args:
        path: the checkpoint.
        trainer: the fit's :class:`~gpunn.step.TrainStep` (model, optimizer, row order).
        schedule: the schedule ``fit`` was given (None, or one with the saved config).
        history: the fresh History of this fit (its batch size and row count must match).
        epochs: the fit's ``epochs`` (all of them, counting those saved).

    Returns:
        ``(schedule, history, rng, epoch, steps)`` to continue with, ``epoch`` being those
        done and ``steps`` None or, mid-epoch, the ``(totals, status)`` of the steps done in
        the next one.
    """
    saved, state = read_parts(path, like=trainer.model)
    try:
        _check_fits(saved, trainer, schedule, history)
    except CheckpointError as exc:
        raise CheckpointError(f"{os.fspath(path)}: {exc}") from None
    mid = saved.steps is not None  # the file is in epoch saved.epoch + 1
    if epochs < saved.epoch + mid:  # it would train nothing
        raise ValueError(f"epochs: expected at least {saved.epoch + mid} ({os.fspath(path)} has "
                         f"done {saved.epoch} epochs{' and is in the next' if mid else ''}; "
                         f"epochs counts them), got {epochs}")
    model = trainer.model
    trainer.optimizer.load_state_dict(state, model=model, copy=False)
    trainer.restore_order(saved.order)
    model.params.load_host(saved.params)
    saved.history.backend = history.backend
    return saved.schedule, saved.history, saved.rng(), saved.epoch, saved.steps


def _check_fits(saved, trainer, schedule, history):
    """Raise CheckpointError unless the checked checkpoint ``saved`` can continue this fit."""
    missing = [name for name, part in (("optimizer", saved.optimizer),
                                       ("history", saved.history),
                                       ("shuffling state", saved.rng_state)) if part is None]
    if missing:
        raise CheckpointError(
            f"expected a checkpoint written by fit(checkpoint_path=...) (optimizer, history "
            f"and shuffling state), got one without {' and '.join(missing)}: files of "
            "model.save, ModelCheckpoint or save_checkpoint without rng= cannot continue a "
            "fit exactly; load their model with gpunn.load_checkpoint(path, model)")
    if saved.optimizer.name != trainer.optimizer.name:
        raise CheckpointError(f"optimizer: expected {saved.optimizer.name!r} as saved, "
                              f"got {trainer.optimizer.name!r}")
    expected = None if saved.schedule is None else saved.schedule.config()
    if schedule is not None and schedule.config() != expected:
        raise CheckpointError(f"schedule: expected {expected} as saved, "
                              f"got {schedule.config()}")
    for key in ("batch_size", "n_samples", "weight_sum"):
        if getattr(saved.history, key) != getattr(history, key):
            raise CheckpointError(f"{key}: expected {getattr(saved.history, key)!r} as "
                                  f"saved, got {getattr(history, key)!r}")
    model = trainer.model
    if any(layer.dropout for layer in model.layers) and saved.config["seed"] != model.seed:
        raise CheckpointError(f"model.seed: expected {saved.config['seed']} as saved (it keys "
                              f"the dropout masks), got {model.seed}")
    _check_order(saved.order, len(trainer.order))
    _check_history(saved.history, saved.epoch)
    if saved.steps is not None and not 0 < len(saved.steps[0]) < trainer.n_steps:
        raise CheckpointError(f"fit.step_totals: expected between 1 and {trainer.n_steps - 1} "
                              f"steps done of an epoch of {trainer.n_steps}, got "
                              f"{len(saved.steps[0])}")


def _check_order(order, n):
    """Refuse a saved row order that is not a permutation of ``range(n)``, naming the first
    row that makes it none."""
    if order is None or order.shape != (n,):
        got = "none" if order is None else f"shape {order.shape}"
    else:
        outside = order[(order < 0) | (order >= n)]
        if len(outside):
            got = f"row {int(outside[0])}, outside 0..{n - 1}"
        else:
            twice = np.flatnonzero(np.bincount(order, minlength=n) > 1)
            if not len(twice):
                return
            got = f"row {int(twice[0])} more than once"
    raise CheckpointError(f"fit.order: expected a permutation of the {n} rows of X, got {got}")


def _check_history(history, epoch):
    """One entry per epoch done in every per-epoch list (validation lists may be empty)."""
    if len(history.epoch) != epoch or history.epoch != list(range(1, epoch + 1)):
        raise CheckpointError(f"history.epoch: expected {epoch} entries (epochs 1 to {epoch}, "
                              f"the saved epoch), got {len(history.epoch)}")
    for key in History.per_epoch():
        size = len(getattr(history, key))
        if size != epoch and not (size == 0 and key in History.per_epoch(optional=True)):
            raise CheckpointError(f"history.{key}: expected {epoch} entries (one per epoch), "
                                  f"got {size}")
