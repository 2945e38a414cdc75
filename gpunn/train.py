"""Training: epochs of shuffled mini-batches, a learning-rate schedule, validation, callbacks."""

import contextlib
import functools
import math
import os
import sys
import time

import numpy as np

from gpunn._checks import check_bool, check_choice, check_int, check_number
from gpunn._files import check_outputs
from gpunn.backends.compile_watch import (
    compile_seconds,
    forget_announcement,
    load_seconds,
    watch_compiles,
)
from gpunn.callbacks import CallbackList, epoch_logs
from gpunn.checkpoint.resume import check_checkpointing, resume, save_during_fit
from gpunn.comm import RanksDisagree, agree, get_comm
from gpunn.control import STEP_BAD_UPDATE, STEP_NONFINITE
from gpunn.history import History
from gpunn.optim import get_optimizer
from gpunn.progress import announce_compile, check_verbose, report_compile, report_epoch
from gpunn.row_views import RangeRows
from gpunn.schedules import get_schedule
from gpunn.sharing import holding_model
from gpunn.sources import in_memory, is_streamed
from gpunn.staging import StreamStep, check_rows, evaluate_rows, stream_sources
from gpunn.step import TrainStep
from gpunn.weights import check_sample_weight, row_weights

# Epochs one fit may run: the history holds about 300 bytes of Python numbers per epoch, so
# this bounds it near 3 GB (a typo such as 10**12 is refused, not run until memory runs out).
MAX_EPOCHS = 10 ** 7
# fit's batch_size="auto": rows per batch (per rank), measured (benchmarks/defaults_choice.py).
DEFAULT_BATCH_SIZE = 32


class TrainingDiverged(FloatingPointError, RuntimeError):
    """Training produced NaN or inf; the message says exactly what state the model is in.

    Either the loss or the gradient of a step was not finite, and that step's update (and any
    after it) was not applied: the model keeps the parameters of the last good step. Or an
    update with finite inputs would have made parameters or optimizer state NaN/inf
    (``bad_update``: an overflowing learning rate, or a finite gradient whose square overflows
    Adam's or RMSprop's state): the entries it would have made non-finite kept their previous
    values, the others took that step's update, and no update after it was applied. Either way
    the model and the optimizer state are finite, so a checkpoint of them loads.

    Attributes:
        epoch: epoch number (from 1).
        step: step within the epoch (from 1).
        loss: the loss of that step (finite when only the gradient was not).
        last_finite_loss: loss of the previous applied step, or None if there was none.
        bad_update: True when the update itself would have produced non-finite values.
    """

    def __init__(self, epoch, step, loss, last_finite_loss, bad_update=False):
        self.epoch, self.step = epoch, step
        self.loss, self.last_finite_loss = loss, last_finite_loss
        self.bad_update = bad_update
        where = f"training diverged at epoch {epoch}, step {step}"
        if bad_update:
            message = (f"{where}: the update would have made parameters or optimizer state "
                       f"NaN/inf (loss {loss}); those entries kept their previous values, so "
                       "the model and the optimizer state are finite. Scale the inputs, or try "
                       "a smaller learning rate or weight decay.")
        else:
            what = (f"the loss is {loss}" if not math.isfinite(loss) else
                    f"the gradient has NaN/inf entries, or a norm that overflows the dtype "
                    f"when clipping by norm (loss {loss})")
            message = (f"{where}: {what}; last finite loss {last_finite_loss}. The model "
                       "keeps the parameters that gave it (no update of that step or after "
                       "it was applied); try a smaller learning rate.")
        super().__init__(message)

    def parameters_replaced(self, how):
        """Keep the message true after a callback replaced the model's parameters (``how``,
        e.g. EarlyStopping restoring its best epoch's): it says so after what it said."""
        self.args = (f"{self.args[0]} Then {how}; the optimizer state is still the diverged "
                     "run's.",)


@holding_model("fit")  # one fit (or predict) per model at a time: they share buffers
def fit(model, X, y, loss=None, optimizer="adam", lr=None, epochs=10, batch_size="auto",
        shuffle=True, schedule=None, validation_data=None, seed=0, progress=None,
        callbacks=(), record_steps=False, on_nonfinite="raise", checkpoint_every=None,
        checkpoint_path=None, resume_from=None, check_every=None, comm=None,
        validation_split=None, verbose=None, chunk_rows=None, checkpoint_steps=None,
        sample_weight=None, class_weight=None):
    """Train ``model`` on ``(X, y)`` by mini-batch gradient descent; the :class:`History`.

    Each epoch reshuffles the rows (``numpy.random.default_rng(seed)`` on the host, so every
    backend sees the same batches) unless ``shuffle=False`` or one batch holds them all. The
    data moves to the device once; each step (:class:`gpunn.step.TrainStep`) gathers its rows
    into preallocated buffers on the device, is recorded once per batch shape and replayed (a
    CUDA graph on a GPU), and allocates nothing. The host reads the steps' losses and statuses
    once per epoch (or every ``check_every`` steps). A step whose loss or gradient is NaN/inf
    is caught on the device before its update: :class:`TrainingDiverged` names the epoch and
    step, and the model keeps its last finite parameters; an update that would itself make
    parameters or optimizer state non-finite (an overflowing learning rate, unscaled inputs
    whose squared gradients overflow Adam's state) is caught too: those entries keep their
    previous values, and the error says so.

    Data-parallel (``comm`` of several ranks, each a process started by ``mpiexec`` or
    ``srun``, each with the same data, model and arguments): every rank shuffles alike (same
    ``seed``), takes its shard of each global batch of ``batch_size * ranks`` rows, and the
    gradient and loss sums are all-reduced once per step, so training equals one process at
    the global batch up to the order of float additions. Rank 0's parameters are broadcast at
    the start. Only rank 0 shows progress and writes checkpoints; callbacks run on every rank
    and rank 0's answer decides whether all stop. A rank that fails ends all ranks
    (:meth:`gpunn.comm.MPIComm.guard`); divergence raises the same error on every rank.

    Data larger than memory is streamed (:mod:`gpunn.staging`): ``X`` and ``y`` may be
    paths (a ``.npy`` or ``.parquet`` file, a folder of ``.npy`` / ``.npz`` shards or of
    Parquet files), ``numpy.memmap`` arrays, h5py datasets, zarr arrays or
    :class:`gpunn.sources.RowSource` objects; chunks of rows are staged to the device while
    the previous chunk trains, and shuffling permutes the chunks and the rows within each
    chunk (seeded by ``seed`` and the epoch).

    Args:
        model: a :class:`~gpunn.Sequential` / :class:`~gpunn.MLP`; trained in place.
        X: ``(n, n_in)`` inputs; any array-like, converted once, or a streamed source.
        y: targets: class labels (softmax), 0/1 (sigmoid) or values (regression); an array
            or a streamed source of the same rows.
        loss: loss name or object; None is the default of ``model.output``.
        optimizer: a name (``"sgd"``, ``"momentum"``, ``"rmsprop"``, ``"adam"``, ``"adamw"``)
            or an optimizer object; gradient clipping is one of its keywords, e.g.
            ``Adam(clip_norm=1.0)`` (:mod:`gpunn.optim.clip`).
        lr: learning rate for a named optimizer; None takes its default.
        epochs: passes over the data in all (>= 1), counting those before ``resume_from``.
        batch_size: ``"auto"`` (:data:`DEFAULT_BATCH_SIZE` rows, or all rows when fewer;
            chosen by measurement, README "Defaults"), None for full-batch gradient descent
            (the course's), 1 for SGD, else rows per batch (per rank: the global batch is
            ``batch_size`` times the ranks); the last, smaller batch is kept.
        shuffle: reshuffle the rows every epoch.
        schedule: a schedule name or object (``gpunn.schedules``), or None for a constant lr;
            it sets ``optimizer.lr`` from ``optimizer.base_lr`` before every epoch or step.
        validation_data: ``(X_val, y_val)`` or ``(X_val, y_val, sample_weight_val)`` (arrays
            or streamed sources), evaluated after every epoch; with weights, ``val_loss`` is
            their weighted mean and ``val_accuracy`` the weight of the rows right over the
            weight of all (``class_weight`` applies to training only, as in Keras).
        seed: seed of the shuffling.
        progress: True for a tqdm bar on stderr, False for none, None for a bar when stderr
            is a terminal (used when ``verbose`` is None).
        callbacks: :class:`gpunn.callbacks.Callback` objects (hooks at train, epoch and, if
            they ask for them, batch boundaries: those read each step's loss from the device)
            or plain callables ``cb(epoch, history, model)`` run after every epoch (``epoch``
            from 1); one returning ``True`` stops training after that epoch.
        record_steps: also record the loss of every step in ``history.step_loss``.
        on_nonfinite: ``"raise"`` (:class:`TrainingDiverged`) or ``"skip"``: drop the step's
            update, count it in ``history.skipped_steps`` and go on.
        checkpoint_every: save a checkpoint every this many epochs (and after the last).
        checkpoint_path: where checkpoints go (overwritten atomically); alone, it saves after
            the last epoch.
        resume_from: a checkpoint written by ``fit``: parameters, optimizer state and
            hyperparameters, schedule, shuffling state and history are restored and training
            continues after its epoch. The optimizer's kind and the schedule must match it.
            Data-parallel, every rank reads it (a file system they share) and the global batch
            must match (the same number of ranks and batch size does).
        check_every: read the device's step records every this many steps (stopping early on
            divergence) besides the end of each epoch; None: once per epoch.
        comm: None (one process), ``"auto"``, ``"mpi"``, ``"nccl"`` or a communicator
            (:func:`gpunn.comm.get_comm`). With NCCL, make the communicator before the model
            (it picks the rank's GPU) and pass the object.
        validation_split: fraction in (0, 1) of the rows held out for validation: the LAST
            rows of ``X``, ``y`` as given (before shuffling), as Keras does; shuffle data that
            is sorted by class first. Not together with ``validation_data``. Streamed data:
            a row-range view of the source's tail, evaluated a block at a time.
        verbose: None (``progress`` decides), 0 silent, 1 a bar on a terminal and a line per
            epoch elsewhere, 2 a line per epoch (stdout, rank 0). Epochs are also logged at
            INFO on the ``logging`` logger ``"gpunn"``.
        checkpoint_steps: also save a checkpoint every this many steps within an epoch
            (with ``checkpoint_path``); ``resume_from`` such a file continues with the next
            step, giving the bits of an uninterrupted run.
        chunk_rows: the most rows streaming holds at once (the ring of staged rows and the
            block being read, :func:`gpunn.staging.plan_chunks`; chunks are about 0.8 of it
            on the CPU; a ValueError names the least that works); None: about 32 MiB of
            rows. Given with in-memory arrays, they are streamed too.
        sample_weight: a non-negative weight per row of ``X``, or None. Each batch's loss is
            then the weighted mean ``sum(w l) / sum(w)`` over its rows (scikit-learn's
            ``MLPClassifier``, PyTorch's ``CrossEntropyLoss(weight=)``; see
            :mod:`gpunn.weights`); the epoch's ``loss`` in the history averages its steps'
            weighted means, as it averages their means without weights. With
            ``validation_split``, the held-out rows' weights weight ``val_loss``. With
            streamed data, an array or a source of one weight per row (read whole), staged
            with each chunk's rows.
        class_weight: ``"balanced"`` (scikit-learn's ``n / (n_classes * bincount(y))``) or a
            dict ``{label: weight}`` (others weigh 1), for ``cross_entropy`` or one-output
            ``bce``; it multiplies ``sample_weight``.

    Returns:
        A :class:`History` (continuing the checkpoint's when resuming).
    """
    comm = get_comm(comm, backend=model.backend)
    inputs = _input_files(X=X, y=y, sample_weight=sample_weight, validation_data=validation_data)
    # Inside the guard: one rank's bad input, missing resume file or failed load stops every
    # rank at once instead of leaving the others in the first collective until the time-out.
    with comm.guard(agreed=(RanksDisagree,)):
        streamed = chunk_rows is not None or is_streamed(X) or is_streamed(y)
        if streamed:
            X, y, weights, validation_data, loss, T_shape = _stream_inputs(
                model, X, y, loss, sample_weight, class_weight, validation_split,
                validation_data)
            n = len(X)
        else:
            X, y, sample_weight, validation_data = _split_validation(
                X, y, sample_weight, validation_split, validation_data)
            Xd, T, loss = model.prepare(X, y, loss)
            n = Xd.shape[0]
            weights = (None if sample_weight is None and class_weight is None else
                       row_weights(sample_weight, class_weight, model.backend.to_numpy(T),
                                   loss, model.n_out))
        if getattr(comm, "name", None) == "mpi" and not isinstance(model.flat_params,
                                                                   np.ndarray):
            raise TypeError(f"comm: the 'mpi' communicator moves host (NumPy) arrays; a model "
                            f"on the {model.backend.name} backend needs 'nccl' (or 'auto'), "
                            "got 'mpi'")
        epochs = check_int("epochs", epochs, low=1, high=MAX_EPOCHS)
        global_batch = _global_batch(batch_size, n, comm.size)
        # one batch: order is moot
        shuffle = check_bool("shuffle", shuffle) and global_batch < n
        record_steps = check_bool("record_steps", record_steps)
        rng = np.random.default_rng(check_int("seed", seed, low=0))
        callbacks = CallbackList(callbacks)
        show, lines = (flag and comm.rank == 0 for flag in check_verbose(verbose, progress))
        skip = check_choice("on_nonfinite", on_nonfinite, ("raise", "skip")) == "skip"
        recorded = epochs * -(-n // global_batch) if record_steps else 0
        every, path = check_checkpointing(checkpoint_every, checkpoint_path, epochs, recorded,
                                          writer=comm.rank == 0)
        if checkpoint_steps is not None:
            checkpoint_steps = check_int("checkpoint_steps", checkpoint_steps, low=1)
            if path is None:
                raise ValueError("checkpoint_steps: expected checkpoint_path too, got "
                                 f"checkpoint_steps={checkpoint_steps} and no path")
        if comm.rank == 0:  # the writer: its files apart from each other and the inputs
            _check_run_outputs(path, callbacks, inputs, resume_from, epochs, recorded)
        check_every = (None if check_every is None
                       else check_int("check_every", check_every, low=1))
        validation = _prepare_validation(model, validation_data, loss, "validation_data"
                                         if validation_split is None else "validation_split")
        if streamed:
            trainer = StreamStep(model, loss, get_optimizer(optimizer, lr), X, y, T_shape,
                                 global_batch, chunk_rows, seed, not skip, comm, weights)
        else:
            trainer = TrainStep(model, loss, get_optimizer(optimizer, lr), Xd, T, global_batch,
                                halt_on_nonfinite=not skip, comm=comm, weights=weights)
        trainer.optimizer.check_dtype(model.dtype)  # before any lr reaches a device table
        schedule = get_schedule(schedule)
        history = History(backend=model.backend.name, batch_size=global_batch, n_samples=n,
                          weight_sum=None if weights is None else float(weights.sum()))
        done, steps = 0, None
        if resume_from is not None:
            schedule, history, rng, done, steps = resume(resume_from, trainer, schedule,
                                                         history, epochs)
        _check_finite_start(model)
        if comm.size > 1:
            agree(comm, "fit", _fingerprint(trainer, schedule, epochs, shuffle, seed, done))
            model.params.broadcast(comm)  # rank 0's parameters, everywhere
    run = _bind_callbacks(callbacks, trainer, history, epochs, validation is not None)
    logs = {}
    watch_compiles(announce_compile if show or lines else None)  # None: the caller's stays
    with comm.guard(agreed=(TrainingDiverged,)), _progress_bar(show, epochs, done) as bar, \
            contextlib.closing(trainer), _on_divergence(callbacks):
        for epoch in range(done + 1, epochs + 1):
            callbacks.call("on_epoch_begin", epoch, {})
            trainer.prepare_epoch(epoch, rng, shuffle, 0 if steps is None else len(steps[0]))

            def save_now(records, epoch=epoch):  # mid-epoch: epoch - 1 done, and records
                save_during_fit(comm, path, trainer, schedule, history, epoch - 1, rng, records)

            seconds, compiled = _run_epoch(trainer, run, schedule, epoch, history,
                                           record_steps, skip, check_every, steps,
                                           (checkpoint_steps, save_now))
            steps = None
            if compiled and (show or lines):
                report_compile(compiled)
            _log_epoch(trainer, history, epoch, seconds, validation)
            bar.update(1)
            bar.set_postfix(_summary(history), refresh=False)
            logs = epoch_logs(history)
            if comm.rank == 0:
                report_epoch(epoch, epochs, logs, lines)
            stop = _callbacks_stop(callbacks, epoch, logs, comm)
            if path is not None and (epoch % every == 0 or epoch == epochs or stop):
                save_during_fit(comm, path, trainer, schedule, history, epoch, rng)
            if stop:
                break
    if show or lines:
        forget_announcement()
    callbacks.call("on_train_end", logs)
    return history


def _check_finite_start(model):
    """Refuse a model whose parameters hold NaN/inf before the first step: training could
    only report it as divergence, with advice (a smaller learning rate) that cannot help."""
    bad = model.params.count_nonfinite()
    if bad:
        raise ValueError(f"model: expected finite parameters before training, got {bad} of "
                         f"{model.n_params} NaN/inf (set before fit was called); "
                         "re-initialize the model or load a checkpoint")


@contextlib.contextmanager
def _on_divergence(callbacks):
    """Run every callback's ``on_train_diverged`` on TrainingDiverged, then raise it again."""
    try:
        yield
    except TrainingDiverged as exc:
        callbacks.call("on_train_diverged", exc)
        raise


def _fingerprint(trainer, schedule, epochs, shuffle, seed, done):
    """What every rank of one data-parallel run must share (the model's own seed aside:
    rank 0's parameters are broadcast; unless the model has dropout, whose masks it keys)."""
    model, optimizer = trainer.model, trainer.optimizer
    dropout_seed = model.seed if any(layer.dropout for layer in model.layers) else None
    architecture = {k: v for k, v in model.config().items() if k not in ("seed", "dtype",
                                                                          "precision")}
    return {"rows": trainer.rows, "features": tuple(trainer.X.shape[1:]),
            "targets": tuple(trainer.T.shape[1:]), "architecture": architecture,
            "dtype": model.dtype.name, "precision": model.precision,
            "loss": trainer.loss.name, "optimizer": optimizer.name, "lr": optimizer.base_lr,
            "hyperparameters": {k: getattr(optimizer, k) for k in optimizer.hyperparameters},
            "schedule": repr(schedule), "epochs": epochs, "batch_size": trainer.global_batch,
            "shuffle": shuffle, "seed": seed, "resumed_epochs": done,
            "weights": None if trainer.weights is None else float(trainer.weights.sum()),
            "dropout_seed": dropout_seed}


def _callbacks_stop(callbacks, epoch, logs, comm):
    """Run every callback; True if one asked to stop (rank 0's answer, for all ranks)."""
    stop = callbacks.epoch_end(epoch, logs)
    return comm.bcast(stop) if comm.size > 1 else stop


def _bind_callbacks(callbacks, trainer, history, epochs, validation):
    """Give the callbacks their context; ``run(k)``, the step with the batch hooks around it
    only if one wants them."""
    callbacks.bind(trainer.model, trainer.optimizer, history,
                   {"epochs": epochs, "batch_size": trainer.global_batch,
                    "steps": trainer.n_steps, "rank": trainer.comm.rank,
                    "validation": validation})
    run = callbacks.wrap_step(trainer) if callbacks.wants_batches else trainer.run
    callbacks.call("on_train_begin", {})
    return run


def _held_out_rows(validation_split, validation_data, n):
    """Rows that ``validation_split`` holds out of ``n`` (None: no split)."""
    if validation_split is None:
        return None
    fraction = check_number("validation_split", validation_split, low=0.0, high=1.0,
                            low_open=True, high_open=True)
    if validation_data is not None:
        raise ValueError("validation_split: expected None when validation_data is given, "
                         f"got {validation_split!r}")
    n_val = int(n * fraction)
    if not 1 <= n_val < n:
        raise ValueError(f"validation_split: expected a fraction leaving rows on both sides, "
                         f"got {fraction} of {n} rows")
    return n_val


def _split_validation(X, y, sample_weight, validation_split, validation_data):
    """``(X_train, y_train, sample_weight_train, validation_data)``: the last
    ``validation_split`` of the rows (with their weights)."""
    if validation_split is None:
        return X, y, sample_weight, validation_data
    X = X if hasattr(X, "shape") else np.asarray(X)
    y = y if hasattr(y, "shape") else np.asarray(y)
    n = X.shape[0]
    cut = n - _held_out_rows(validation_split, validation_data, n)
    if sample_weight is None:
        return X[:cut], y[:cut], None, (X[cut:], y[cut:])
    w = check_sample_weight(sample_weight, n)
    return X[:cut], y[:cut], _training_weights(w, cut), (X[cut:], y[cut:], w[cut:])


def _training_weights(w, cut):
    """The weights of the rows before ``cut`` (those ``validation_split`` trains on): some
    must be positive, or nothing would be learned."""
    if not (w[:cut] > 0).any():
        raise ValueError(f"sample_weight: expected a positive weight among the {cut} training "
                         f"rows (validation_split holds out the last {w.size - cut}), got all "
                         "zeros there")
    return w[:cut]


def _stream_inputs(model, X, y, loss, sample_weight, class_weight, validation_split,
                   validation_data):
    """Streamed ``(X, y, weights, validation_data, loss, T_shape)``: the sources checked
    (:func:`gpunn.staging.stream_sources`), the weights of the training rows (float64, on the
    host: 8 bytes a row) or None, and with ``validation_split`` the last rows as row-range
    views (the tail before shuffling, as in memory)."""
    X, y, loss, T_shape, T = stream_sources(model, X, y, loss,
                                            keep_targets=class_weight is not None)
    n = len(X)
    sample_weight = check_sample_weight(in_memory(sample_weight, "sample_weight"), n)
    n_val = _held_out_rows(validation_split, validation_data, n)
    if n_val is not None:
        cut = n - n_val
        validation_data = (RangeRows(X, cut, n), RangeRows(y, cut, n),
                           *([] if sample_weight is None else [sample_weight[cut:]]))
        X, y = RangeRows(X, 0, cut), RangeRows(y, 0, cut)
        sample_weight = (None if sample_weight is None
                         else _training_weights(sample_weight, cut))
        T = None if T is None else T[:cut]
    weights = (sample_weight if class_weight is None else
               row_weights(sample_weight, class_weight, T, loss, model.n_out))
    return X, y, weights, validation_data, loss, T_shape


def _global_batch(batch_size, n, ranks):
    """Rows of one global batch: ``batch_size`` per rank times ``ranks``, or all ``n``."""
    if n < ranks:
        raise ValueError(f"X: expected at least one row per rank ({ranks} ranks), got {n}")
    if batch_size is None:
        return n
    if isinstance(batch_size, str) and batch_size == "auto":
        return min(DEFAULT_BATCH_SIZE, n // ranks) * ranks
    return check_int("batch_size", batch_size, low=1, high=n // ranks) * ranks


def _run_epoch(trainer, run, schedule, epoch, history, record_steps, skip=False,
               check_every=None, done=None, saving=(None, None)):
    """One pass over the batches, ``run(k)`` each; records the epoch's loss, returns its wall
    time. The loss averages the steps whose update was applied (NaN if none was).

    ``done``: resuming mid-epoch, the records of the steps already done; ``saving``:
    ``(every, save)``, ``save(records)`` after every ``every`` steps (None: never)."""
    trainer.begin_epoch(trainer.optimizer.epoch_rates(schedule, epoch, trainer.n_steps,
                                                      trainer.model.dtype), done)
    started, compiling, loading = time.perf_counter(), compile_seconds(), load_seconds()
    every, save = saving
    for k in range(trainer.steps_done, trainer.n_steps):
        run(k)
        last = k + 1 == trainer.n_steps
        if check_every is not None and (k + 1) % check_every == 0 and not last:
            _check_divergence(trainer, epoch, trainer.read(), skip)
        if every is not None and (k + 1) % every == 0 and not last:
            records = trainer.read()
            _check_divergence(trainer, epoch, records, skip)
            save(records)
    records = trainer.read()  # waits for the device: the epoch's time is all in
    compiled = compile_seconds() - compiling
    # Loading kernels (compiled on the first run, from Numba's cache later) is no epoch time.
    seconds = time.perf_counter() - started - (load_seconds() - loading)
    _check_divergence(trainer, epoch, records, skip)
    history.skipped_steps += records.count(STEP_NONFINITE)
    if record_steps:
        history.step_loss.extend(records.means.tolist())
    history.loss.append(records.applied_mean())
    return seconds, compiled


def _check_divergence(trainer, epoch, records, skip):
    """Raise TrainingDiverged for the first flagged step (a skipped one only when not
    ``skip``); no update after it was applied, so the step's last finite loss is the step
    object's."""
    statuses = (STEP_BAD_UPDATE,) if skip else (STEP_NONFINITE, STEP_BAD_UPDATE)
    k = records.first(statuses)
    if k is None:
        return
    raise TrainingDiverged(epoch, k + 1, records.mean(k), trainer.last_finite_loss,
                           bad_update=records.status[k] == STEP_BAD_UPDATE)


def _log_epoch(trainer, history, epoch, seconds, validation):
    history.epoch.append(epoch)
    history.seconds.append((history.seconds[-1] if history.seconds else 0.0) + seconds)
    history.samples_per_second.append(trainer.rows / seconds if seconds > 0 else math.inf)
    history.lr.append(trainer.optimizer.lr)
    if validation is not None:
        # in chunks of a global batch's rows: the workspace that training sized
        val_loss, accuracy = validation(trainer.global_batch)
        history.val_loss.append(val_loss)
        if accuracy is not None:
            history.val_accuracy.append(accuracy)


def _summary(history):
    summary = {"loss": f"{history.loss[-1]:.4g}"}
    if history.val_accuracy:
        summary["val_acc"] = f"{history.val_accuracy[-1]:.4f}"
    elif history.val_loss:
        summary["val_loss"] = f"{history.val_loss[-1]:.4g}"
    return summary


def _file_of(value):
    """The file (or folder) ``value`` reads from: a path, a memory map's file, a file-backed
    row source's path (gpunn.sources); None for data in memory."""
    if isinstance(value, (str, os.PathLike)):
        return value
    if isinstance(value, np.memmap):
        return value.filename
    path = getattr(value, "path", None)
    return path if isinstance(path, (str, os.PathLike)) else None


def _input_files(**named):
    """``{argument: path}`` of the files ``fit`` reads its data from (validation_data's
    members as ``validation_data[i]``)."""
    validation = named.pop("validation_data")
    if isinstance(validation, (tuple, list)):
        named.update({f"validation_data[{i}]": v for i, v in enumerate(validation)})
    files = ((name, _file_of(value)) for name, value in named.items())
    return {name: path for name, path in files if path is not None}


def _check_run_outputs(checkpoint_path, callbacks, inputs, resume_from, epochs, recorded):
    """Every file the run writes, checked before it starts (each as the writer checks it):
    no two the same file, none an input file or inside an input folder, only checkpoint
    writers (``checkpoint_path``, ModelCheckpoint) may replace ``resume_from``, and a
    ModelCheckpoint's header holds the ``recorded`` steps as ``checkpoint_path``'s must."""
    saved = callbacks.outputs(checkpoints=True)
    for saved_path in saved.values():
        check_checkpointing(None, saved_path, epochs, recorded, writer=False)
    writers = {**({} if checkpoint_path is None else {"checkpoint_path": checkpoint_path}),
               **saved}
    logs = callbacks.outputs(checkpoints=False)
    for target in check_outputs({**writers, **logs}, inputs).values():
        target.close()
    if logs and resume_from is not None:
        for target in check_outputs(logs, {"resume_from": resume_from}).values():
            target.close()


def _prepare_validation(model, validation_data, loss, name="validation_data"):
    """``evaluate(batch_size) -> (val_loss, val_accuracy)`` of ``validation_data``, checked
    now; None for None. Sources (paths, memory maps, ...) are evaluated a block at a time.
    Errors name ``name`` (``validation_split``: the rows it held out)."""
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise TypeError("validation_data: expected a pair (X_val, y_val) or a triple (X_val, "
                        f"y_val, sample_weight_val), got {type(validation_data).__name__}"
                        + (f" of {len(validation_data)}"
                           if isinstance(validation_data, (tuple, list)) else ""))
    streamed = any(is_streamed(v) for v in validation_data[:2])
    try:
        if streamed:
            Xv, yv, _, _, _ = stream_sources(model, validation_data[0], validation_data[1],
                                             loss)
            n = len(Xv)
        else:
            Xv, Tv, _ = model.prepare(validation_data[0], validation_data[1], loss)
            n = Xv.shape[0]
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    weights = None
    if len(validation_data) == 3:
        weights = check_sample_weight(in_memory(validation_data[2], "validation_data[2]"), n,
                                      "validation_data[2]")
    if streamed:
        check_rows(model, Xv, yv, loss, name)  # NaN/inf refused now, not after epoch 1
        return functools.partial(evaluate_rows, model, Xv, yv, loss, weights=weights,
                                 argument=name)
    return functools.partial(model.evaluate_device, Xv, Tv, loss, weights=weights)


def _progress_bar(show, epochs, done=0):
    from tqdm.auto import tqdm  # a widget in Jupyter, text elsewhere

    return tqdm(total=epochs, initial=done, unit="epoch", disable=not show, file=sys.stderr,
                dynamic_ncols=True)
