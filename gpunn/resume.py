"""What ``fit`` needs to save checkpoints as it trains and to continue from one exactly."""

import os

from gpunn.checkpoint import CheckpointError, load_checkpoint
from gpunn.validation import check_int


def check_checkpointing(every, path, epochs):
    """``(every, path)`` checked; ``every`` defaults to ``epochs`` (save after the last one).

    Args:
        every: epochs between checkpoints (>= 1) or None.
        path: a file path (str or os.PathLike), or None for no checkpoints.
        epochs: the fit's epochs.

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
    return every, path


def resume(path, trainer, schedule, history):
    """Restore a ``fit`` checkpoint into ``trainer``'s model and optimizer.

    Args:
        path: the checkpoint.
        trainer: the fit's :class:`~gpunn.step.TrainStep` (model, optimizer, row order).
        schedule: the schedule ``fit`` was given (None, or one with the saved config).
        history: the fresh History of this fit (its batch size and row count must match).

    Returns:
        ``(schedule, history, rng, epoch)`` to continue with, ``epoch`` being those done.
    """
    saved = load_checkpoint(path, model=trainer.model)
    if saved.optimizer is None or saved.history is None or saved.rng_state is None:
        raise CheckpointError(f"{path}: expected a checkpoint written by fit (optimizer, "
                              "history and shuffling state), got a model-only checkpoint")
    try:
        trainer.optimizer.load_state_dict(saved.optimizer.state_dict(), model=trainer.model)
    except ValueError as exc:
        raise CheckpointError(f"{path}: optimizer: {exc}") from None
    expected = None if saved.schedule is None else saved.schedule.config()
    if schedule is not None and schedule.config() != expected:
        raise CheckpointError(f"{path}: schedule: expected {expected} as saved, "
                              f"got {schedule.config()}")
    for key in ("batch_size", "n_samples"):
        if getattr(saved.history, key) != getattr(history, key):
            raise CheckpointError(f"{path}: {key}: expected {getattr(saved.history, key)} as "
                                  f"saved, got {getattr(history, key)}")
    try:
        trainer.restore_order(saved.order)
    except ValueError as exc:
        raise CheckpointError(f"{path}: fit.{exc}") from None
    saved.history.backend = history.backend
    return saved.schedule, saved.history, saved.rng(), saved.epoch
