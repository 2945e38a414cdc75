"""TensorBoard logging for :func:`gpunn.fit`: scalars per epoch and, if asked, per step.

Event files are written by tensorboardX (the ``tensorboard`` extra; no TensorFlow needed) and
read by TensorBoard: ``tensorboard --logdir runs``.
"""

import os

from gpunn._checks import check_int
from gpunn._compat import require
from gpunn.callbacks import Callback

# Epoch logs written as scalars, under "epoch/<name>" (those present in the run).
EPOCH_SCALARS = ("loss", "val_loss", "val_accuracy", "lr")


class TensorBoard(Callback):
    """Write training scalars to a TensorBoard event file in ``log_dir``.

    Every epoch: ``epoch/loss``, ``epoch/lr``, ``epoch/samples_per_second`` and, with
    validation data, ``epoch/val_loss`` and ``epoch/val_accuracy``, at step ``epoch`` (from 1).
    With ``update_freq="batch"`` (or an int ``n``: every ``n``-th step) also ``batch/loss``,
    the loss of the step, at the global step count (from 1, continuing across epochs and after
    ``resume_from``); this reads each step's loss from the device (see
    :mod:`gpunn.callbacks`), so the per-epoch default costs nothing per step.
    In data-parallel training rank 0 writes; the other ranks do nothing.

    Args:
        log_dir: folder of the event files (created if missing), as for TensorBoard's
            ``--logdir``; each run adds its own file.
        update_freq: ``"epoch"``, ``"batch"``, or an int ``n >= 1`` (every ``n`` steps).
        flush_secs: how often the writer flushes to disk, besides every epoch end.
    """

    def __init__(self, log_dir="runs", update_freq="epoch", flush_secs=10):
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"log_dir: expected a folder path, got {type(log_dir).__name__}")
        if os.path.exists(log_dir) and not os.path.isdir(log_dir):
            raise ValueError(f"log_dir: expected a folder or a new folder name, got the file "
                             f"{os.fspath(log_dir)!r}")
        if isinstance(update_freq, str) and update_freq not in ("epoch", "batch"):
            raise ValueError(f"update_freq: expected 'epoch', 'batch' or an int >= 1, got "
                             f"{update_freq!r}")
        if update_freq != "epoch":
            update_freq = 1 if update_freq == "batch" else check_int("update_freq", update_freq,
                                                                     low=1)
        self.log_dir, self.update_freq = os.fspath(log_dir), update_freq
        self.flush_secs = check_int("flush_secs", flush_secs, low=1)
        require("tensorboardX", "tensorboard", "gpunn.tensorboard.TensorBoard")
        self.writer, self.global_step = None, 0

    @property
    def wants_batches(self):
        """Batch hooks only when logging per step (they cost a device read per step)."""
        return self.update_freq != "epoch"

    def on_train_begin(self, logs=None):
        if (self.params or {}).get("rank", 0) == 0:
            tensorboardx = require("tensorboardX", "tensorboard", "TensorBoard")
            self.writer = tensorboardx.SummaryWriter(self.log_dir, flush_secs=self.flush_secs)

    def on_epoch_begin(self, epoch, logs=None):
        self.global_step = (epoch - 1) * self.params["steps"]

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        if self.writer is not None and self.global_step % self.update_freq == 0:
            self.writer.add_scalar("batch/loss", logs["loss"], self.global_step)

    def on_epoch_end(self, epoch, logs=None):
        if self.writer is None:
            return
        for name in EPOCH_SCALARS:
            if name in logs:
                self.writer.add_scalar(f"epoch/{name}", logs[name], epoch)
        if self.history is not None and self.history.samples_per_second:
            self.writer.add_scalar("epoch/samples_per_second",
                                   self.history.samples_per_second[-1], epoch)
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
