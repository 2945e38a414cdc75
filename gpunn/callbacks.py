"""Callbacks for :func:`gpunn.fit`, with the hooks Keras and skorch users know.

A callback subclasses :class:`Callback` and overrides any of ``on_train_begin(logs)``,
``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_train_end(logs)``,
``on_train_batch_begin(batch, logs)`` and ``on_train_batch_end(batch, logs)``. Before
training, :func:`gpunn.fit` sets its ``model``, ``optimizer``, ``history`` and ``params``
(``epochs``, ``batch_size``, ``steps`` per epoch); setting ``self.stop_training = True`` ends
training after the current epoch. Epochs count from 1, as in :class:`~gpunn.History`.

Epoch ``logs`` (:meth:`gpunn.History.logs`) hold ``loss`` (the epoch's mean training loss;
``cost`` is its deprecated alias), ``lr``,
``seconds`` and, with validation data, ``val_loss`` and ``val_accuracy`` (classifiers).

Batch hooks cost time: a callback that overrides one makes every training step read its loss
back to the host (a device synchronization per step), where otherwise the host waits once per
epoch. Leave them alone unless you need them.

A plain callable ``cb(epoch, history, model)`` still works as a callback: it runs after every
epoch and returning ``True`` stops training.
"""

import csv
import io
import math
import os
import string

from gpunn._checks import check_choice, check_int, check_number
from gpunn._files import atomic_write, check_target
from gpunn.history import History

BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end")


class Callback:
    """Base class: every hook does nothing; subclasses override the ones they need.

    Attributes:
        model, optimizer, history: what :func:`gpunn.fit` trains and records (set by fit).
        params: ``{"epochs", "batch_size", "steps", "rank", "validation"}`` of the run (set
            by fit; ``rank`` is the process's rank in data-parallel training, else 0;
            ``validation``: whether epochs log val_* values).
        stop_training: set True to stop after the current epoch.
    """

    model = optimizer = history = None
    params = None
    stop_training = False
    writes_checkpoints = False  # its files are checkpoints (resume_from may be one of them)

    def outputs(self):
        """``{argument name: path}`` of the files this callback writes (rank 0), which
        :func:`gpunn.fit` checks before training against each other and the run's inputs."""
        return {}

    def on_train_begin(self, logs=None):
        """Called once before the first epoch."""

    def on_train_end(self, logs=None):
        """Called once after the last epoch (``logs`` of the last epoch)."""

    def on_train_diverged(self, error):
        """Called instead of :meth:`on_train_end` when training stops with
        :class:`~gpunn.TrainingDiverged` ``error`` (raised again after the callbacks ran)."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called before epoch ``epoch`` (from 1)."""

    def on_epoch_end(self, epoch, logs=None):
        """Called after epoch ``epoch`` with its ``logs`` (see the module docstring)."""

    def on_train_batch_begin(self, batch, logs=None):
        """Called before step ``batch`` (from 0) of the epoch; forces a per-step sync."""

    def on_train_batch_end(self, batch, logs=None):
        """Called after step ``batch`` with ``{"loss", "size"}``; forces a per-step sync."""

    @property
    def wants_batches(self):
        """Whether a batch hook is overridden (fit then calls them around every step)."""
        return any(getattr(type(self), name) is not getattr(Callback, name)
                   for name in BATCH_HOOKS)


class FunctionCallback(Callback):
    """Wraps the plain form ``fn(epoch, history, model)``; ``True`` from it stops training."""

    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, epoch, logs=None):
        if self.fn(epoch, self.history, self.model) is True:
            self.stop_training = True


class CallbackList:
    """The callbacks of one :func:`gpunn.fit` call and the dispatch of their hooks.

    Args:
        callbacks: a callback, a callable, a sequence of them, or None.
    """

    def __init__(self, callbacks):
        if callbacks is None:
            callbacks = []
        elif callable(callbacks) or isinstance(callbacks, Callback):
            callbacks = [callbacks]
        else:
            try:
                callbacks = list(callbacks)
            except TypeError:
                raise TypeError("callbacks: expected a callable, a list of callables or "
                                "gpunn.callbacks.Callback objects, or None, got "
                                f"{type(callbacks).__name__}") from None
        self.callbacks = []
        for i, cb in enumerate(callbacks):
            if isinstance(cb, Callback):
                self.callbacks.append(cb)
            elif callable(cb):
                self.callbacks.append(FunctionCallback(cb))
            else:
                raise TypeError(f"callbacks[{i}]: expected a callable cb(epoch, history, "
                                f"model) or a gpunn.callbacks.Callback, got {type(cb).__name__}")

    def outputs(self, checkpoints):
        """``{name: path}`` of the files the callbacks that write checkpoints (``checkpoints``
        True) or other files (False) write; a name taken twice gets its callback's index."""
        found = {}
        for i, cb in enumerate(self.callbacks):
            if cb.writes_checkpoints == checkpoints:
                for name, path in cb.outputs().items():
                    found[name if name not in found else f"{name} (callbacks[{i}])"] = path
        return found

    def bind(self, model, optimizer, history, params):
        """Give every callback the model, optimizer, history and run parameters."""
        for cb in self.callbacks:
            cb.model, cb.optimizer, cb.history, cb.params = model, optimizer, history, params
            cb.stop_training = False

    @property
    def wants_batches(self):
        """Whether any callback needs batch hooks."""
        return any(cb.wants_batches for cb in self.callbacks)

    def call(self, hook, *args):
        """Run ``hook`` on every callback, in order."""
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def epoch_end(self, epoch, logs):
        """Run every ``on_epoch_end``; whether any callback asks to stop."""
        self.call("on_epoch_end", epoch, logs)
        return any(cb.stop_training for cb in self.callbacks)

    def wrap_step(self, trainer):
        """A function ``run(k)``: ``trainer.run(k)`` with the batch hooks around it.

        After each step the step's record is read from the device (one synchronization per
        step, which is why fit wraps the step only when a callback overrides a batch hook).

        Args:
            trainer: the :class:`gpunn.step.TrainStep` of the run.
        """
        def wrapped(k):
            self.call("on_train_batch_begin", k, {})
            result = trainer.run(k)
            records = trainer.read()
            self.call("on_train_batch_end", k, {
                "size": int(records.rows[k]), "loss": records.mean(k),
                "applied": bool(records.applied[k])})
            return result

        return wrapped


def _rank(callback):
    return (callback.params or {}).get("rank", 0)


def epoch_logs(history):
    """The ``logs`` of the last epoch recorded in ``history``."""
    return history.logs()


class _Monitor(Callback):
    """Shared by the callbacks that watch one logged value for improvement."""

    def __init__(self, monitor, mode, min_delta):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected a log name such as 'val_loss', "
                            f"got {type(monitor).__name__}")
        self.monitor = monitor
        mode = check_choice("mode", mode, ("auto", "min", "max"))
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        self.min_delta = check_number("min_delta", min_delta, low=0.0)
        self.best = None

    def _check_monitor(self):
        """Before the first epoch: refuse a val_* monitor in a run without validation (it
        would fail after the first epoch's work)."""
        _check_logged(self, [self.monitor], f"{type(self).__name__}: monitor")

    def _current(self, logs):
        if self.monitor not in logs:
            raise ValueError(f"{type(self).__name__}: monitor {self.monitor!r} is not "
                             f"recorded, expected one of {sorted(logs)} (val_* need "
                             "validation_data or validation_split)")
        return float(logs[self.monitor])

    def _improved(self, value):
        """Whether ``value`` beats the best by more than ``min_delta``; updates the best."""
        if math.isnan(value):
            return False
        better = (self.best is None or
                  (value < self.best - self.min_delta if self.mode == "min"
                   else value > self.best + self.min_delta))
        if better:
            self.best = value
        return better


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: a log name: ``"val_loss"``, ``"val_accuracy"``, ``"loss"``.
        patience: epochs without improvement before stopping (>= 0).
        min_delta: smallest change that counts as an improvement (>= 0).
        mode: ``"min"``, ``"max"``, or ``"auto"`` (max for names containing "acc").
        restore_best: at the end of training, put back the parameters of the best epoch
            (Keras ``restore_best_weights``, skorch ``load_best``); also when training stops
            with :class:`~gpunn.TrainingDiverged`.

    Attributes:
        best, best_epoch: best value seen and its epoch.
        stopped_epoch: the epoch training stopped at (0 if it ran to the end).
    """

    def __init__(self, monitor="val_loss", patience=10, min_delta=0.0, mode="auto",
                 restore_best=False):
        super().__init__(monitor, mode, min_delta)
        self.patience = check_int("patience", patience, low=0)
        self.restore_best = bool(restore_best)
        self.best_epoch = self.stopped_epoch = self.wait = 0
        self._best_params = None

    def on_train_begin(self, logs=None):
        self._check_monitor()
        self.best, self.best_epoch, self.stopped_epoch, self.wait = None, 0, 0, 0
        self._best_params = None

    def on_epoch_end(self, epoch, logs=None):
        if self._improved(self._current(logs)):
            self.best_epoch, self.wait = epoch, 0
            if self.restore_best:
                self._best_params = self.model.params.host()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch, self.stop_training = epoch, True

    def on_train_end(self, logs=None):
        if self.restore_best and self._best_params is not None:
            self.model.params.load_host(self._best_params)

    def on_train_diverged(self, error):
        if self.restore_best and self._best_params is not None:
            self.on_train_end()  # the best epoch's parameters, not the last finite step's
            error.parameters_replaced(f"EarlyStopping(restore_best=True) put back the "
                                      f"parameters of epoch {self.best_epoch}, its best "
                                      f"({self.monitor} {self.best})")


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving.

    It scales the optimizer's ``base_lr`` (the rate a schedule starts from) and its current
    ``lr`` together, so it composes with any schedule: every schedule of :mod:`gpunn.schedules`
    is proportional to ``base_lr``, and the next scheduled rate comes out scaled instead of
    overwriting the reduction.

    Args:
        monitor: a log name, as for :class:`EarlyStopping`.
        factor: multiplier in (0, 1).
        patience: epochs without improvement before a reduction.
        min_delta: smallest change that counts as an improvement.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: lower bound of ``base_lr``.
        mode: ``"min"``, ``"max"`` or ``"auto"``.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4,
                 cooldown=0, min_lr=0.0, mode="auto"):
        super().__init__(monitor, mode, min_delta)
        self.factor = check_number("factor", factor, low=0.0, high=1.0, low_open=True,
                                   high_open=True)
        self.patience = check_int("patience", patience, low=0)
        self.cooldown = check_int("cooldown", cooldown, low=0)
        self.min_lr = check_number("min_lr", min_lr, low=0.0)
        self.wait = self.cooldown_left = 0

    def on_train_begin(self, logs=None):
        self._check_monitor()
        self.best, self.wait, self.cooldown_left = None, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        if self._improved(self._current(logs)):
            self.wait = 0
            return
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            return
        self.wait += 1
        if self.wait > self.patience:
            self.optimizer.scale_lr(self.factor, self.min_lr)
            self.wait, self.cooldown_left = 0, self.cooldown


class ModelCheckpoint(_Monitor):
    """Save the model (and optimizer state, history, epoch) after epochs, atomically.

    Files are written by :func:`gpunn.save_checkpoint` (temporary file, then rename), so an
    interrupted save never leaves a broken file; read them with :func:`gpunn.load`.

    Args:
        path: target file; may hold format fields ``{epoch}`` and any log name, e.g.
            ``"model-{epoch:03d}-{val_loss:.3f}.safetensors"``. Its folder must exist.
        monitor: log name compared for ``save_best_only``.
        save_best_only: save only when ``monitor`` improved; else after every epoch.
        mode: ``"min"``, ``"max"`` or ``"auto"``.

    Attributes:
        best, best_epoch: best value seen and its epoch; last_path: the last file written.
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        super().__init__(monitor, mode, 0.0)
        self.path = os.fspath(path)
        self.save_best_only = bool(save_best_only)
        self.best_epoch, self.last_path = 0, None

    writes_checkpoints = True

    def outputs(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise ValueError(f"ModelCheckpoint.path: expected a file in an existing folder, "
                             f"got {self.path!r}")
        return {"ModelCheckpoint.path": _format_template(self.path)}

    def on_train_begin(self, logs=None):
        first = self.outputs()["ModelCheckpoint.path"]  # fit checked it; other loops may not
        if self.save_best_only:
            self._check_monitor()
        fields = [field for _, field, _, _ in string.Formatter().parse(self.path) if field]
        _check_logged(self, fields, "ModelCheckpoint.path: field")
        self.best, self.best_epoch = None, 0
        if _rank(self) == 0:  # before training: the first save would fail after an epoch
            check_target("ModelCheckpoint.path", first).close()

    def on_epoch_end(self, epoch, logs=None):
        from gpunn.checkpoint import save_checkpoint

        if self.save_best_only:
            if not self._improved(self._current(logs)):
                return
            self.best_epoch = epoch
        if _rank(self) != 0:  # data-parallel: rank 0 alone writes files
            return
        path = self.path.format(epoch=epoch, **logs)
        self.last_path = save_checkpoint(path, self.model, self.optimizer,
                                         history=self.history, epoch=epoch)


def _check_logged(callback, names, what):
    """Refuse, before the first epoch, log ``names`` that this run will not record: val_*
    without validation data (``callback.params['validation']``, set by :func:`gpunn.fit`)."""
    if (callback.params or {}).get("validation", True):
        return
    missing = [name for name in names if name.startswith("val_")]
    if missing:
        raise ValueError(f"{what} {missing[0]!r} is not recorded by this run (val_* need "
                         "validation_data or validation_split)")


def _format_template(template):
    """``template`` formatted as an epoch's logs would format it (epoch 1, every log 0.0),
    refusing a field that no epoch logs and a format the values do not take."""
    names = ("epoch", "cost", *(name for name in History.per_epoch()
                                if name not in ("epoch", "samples_per_second")))
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template)
                  if field is not None]
        unknown = [field for field in fields if field not in names]  # no .attr or [key]
        if unknown:
            raise ValueError(f"unknown fields {unknown}")
        formatted = template.format(**{name: 1 if name == "epoch" else 0.0 for name in names})
        if any(ord(character) < 32 for character in formatted):
            raise ValueError("a format that writes control characters into the file name")
        return formatted
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ValueError(f"ModelCheckpoint.path: expected a path whose format fields are among "
                         f"{list(names)} with formats they take, got {template!r} ({exc})"
                         ) from None


class CSVLogger(Callback):
    """Append one row per epoch (the epoch and its logs) to a CSV file, flushed every epoch.

    Args:
        path: the CSV file.
        separator: field separator.
        append: keep existing rows (and header) instead of starting a new file; a log the
            header lacks adds a column (the file is rewritten once, atomically).
    """

    def __init__(self, path, separator=",", append=False):
        self.path, self.separator, self.append = os.fspath(path), separator, bool(append)
        self._fields = None

    def outputs(self):
        return {"CSVLogger.path": self.path}

    def on_train_begin(self, logs=None):
        self._fields = None
        if _rank(self) != 0:
            return
        # A folder, pipe or device is refused before it is opened (a FIFO would block).
        check_target("CSVLogger.path", self.path).close()
        exists = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        if self.append and exists:
            header = self._existing_header()
            with open(self.path, "rb+") as file:  # a last line without its newline
                file.seek(-1, os.SEEK_END)
                if file.read(1) not in (b"\n", b"\r"):
                    file.write(b"\r\n")  # csv's own line ending
            self._fields = header
        else:
            open(self.path, "w").close()  # fails now, not after an epoch, if not writable

    def _existing_header(self):
        """The header of the log being appended to, after checking the whole file is one:
        UTF-8 text, an ``epoch`` column under ``separator``, no row longer than the header
        (rows are added under that header, and a wider log rewrites them)."""
        try:
            with open(self.path, newline="", encoding="utf-8") as file:
                rows = list(csv.reader(file, delimiter=self.separator))
        except UnicodeDecodeError as exc:
            raise ValueError(f"CSVLogger.path: expected a UTF-8 CSV log to append to, got byte "
                             f"0x{exc.object[exc.start]:02x} at offset {exc.start} of "
                             f"{self.path!r}") from None
        except csv.Error as exc:
            raise ValueError(f"CSVLogger.path: expected a CSV log to append to, got {exc} in "
                             f"{self.path!r}") from None
        header = rows[0] if rows else []
        if "epoch" not in header:
            raise ValueError(f"CSVLogger.path: expected a log with an 'epoch' column separated "
                             f"by {self.separator!r} to append to, got the header {header!r} "
                             f"in {self.path!r}")
        for line, row in enumerate(rows[1:], start=2):
            if len(row) > len(header):
                raise ValueError(f"CSVLogger.path: expected rows of at most the header's "
                                 f"{len(header)} fields to append to, got {len(row)} on line "
                                 f"{line} of {self.path!r}")
        return header

    def on_epoch_end(self, epoch, logs=None):
        if _rank(self) != 0:
            return
        row = {"epoch": epoch, **logs}
        new = self._fields is None
        if new:
            self._fields = list(row)
        elif any(key not in self._fields for key in row):
            self._widen([key for key in row if key not in self._fields])
        with open(self.path, "a", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, self._fields, delimiter=self.separator,
                                    extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _widen(self, columns):
        """Rewrite the file (atomically) with ``columns`` added to its header: logs the
        existing rows lack (validation added on resume) are kept, their old rows left blank."""
        with open(self.path, newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file, delimiter=self.separator))
        self._fields = self._fields + columns
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self._fields, delimiter=self.separator)
        writer.writeheader()
        writer.writerows(rows)
        # as every output: a link followed, the file's permission bits kept
        atomic_write(self.path, lambda file: file.write(text.getvalue().encode("utf-8")),
                     name="CSVLogger.path")
