"""Callbacks: hook order and context, EarlyStopping, ReduceLROnPlateau with schedules,
ModelCheckpoint, CSVLogger, validation_split, verbose output and logging."""

import csv
import logging
import os

import numpy as np
import pytest

import gpunn
from gpunn.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ReduceLROnPlateau,
)


def blobs(n=48, n_in=4, n_classes=3, seed=0):
    centres = np.random.default_rng(100).normal(size=(n_classes, n_in)) * 2
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    return centres[y] + rng.normal(size=(n, n_in)), y


def classifier(seed=0):
    return gpunn.MLP([4, 8, 3], activation="tanh", output="softmax", dtype="float64",
                     seed=seed)


class Recorder(Callback):
    """Records every hook call, and what fit gave it."""

    def __init__(self, batches=False):
        self.calls, self.batch_losses, self.batches = [], [], batches

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")
        self.context = (self.model, self.optimizer, self.history, dict(self.params))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch}")
        self.last_logs = logs

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


class BatchRecorder(Recorder):
    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(f"batch {batch}")
        self.batch_losses.append(logs["loss"])


def test_hooks_run_in_order_with_model_optimizer_and_history(backend):
    X, y = blobs()
    model, recorder = classifier(), Recorder()
    history = gpunn.fit(model, X, y, lr=0.05, epochs=2, batch_size=16, callbacks=[recorder],
                        validation_data=blobs(seed=1))
    assert recorder.calls == ["train_begin", "epoch_begin 1", "epoch_end 1", "epoch_begin 2",
                              "epoch_end 2", "train_end"]
    got_model, optimizer, got_history, params = recorder.context
    assert got_model is model and got_history is history and optimizer.name == "adam"
    assert params == {"epochs": 2, "batch_size": 16, "steps": 3, "rank": 0, "validation": True}
    assert recorder.last_logs == {"loss": history.loss[-1], "cost": history.loss[-1],
                                  "lr": 0.05, "seconds": history.seconds[-1],
                                  "epoch_seconds": history.seconds[-1] - history.seconds[-2],
                                  "val_loss": history.val_loss[-1],
                                  "val_accuracy": history.val_accuracy[-1]}
    assert not recorder.wants_batches


def test_batch_hooks_only_when_asked_and_report_each_step_loss(backend):
    X, y = blobs()
    recorder = BatchRecorder()
    assert recorder.wants_batches
    history = gpunn.fit(classifier(), X, y, lr=0.05, epochs=2, batch_size=16,
                        record_steps=True, callbacks=[recorder])
    assert recorder.calls[1:6] == ["epoch_begin 1", "batch 0", "batch 1", "batch 2",
                                   "epoch_end 1"]
    np.testing.assert_allclose(recorder.batch_losses, history.step_loss, rtol=1e-12)


def test_plain_callables_and_callbacks_mix():
    X, y = blobs()
    seen = []
    history = gpunn.fit(classifier(), X, y, epochs=5,
                        callbacks=[Recorder(), lambda e, h, m: seen.append(e) or e == 2])
    assert seen == [1, 2] and history.epoch == [1, 2]


def test_early_stopping_waits_patience_epochs():
    X, y = blobs()
    stopper = EarlyStopping("loss", patience=2, min_delta=1e9)  # nothing counts as better
    history = gpunn.fit(classifier(), X, y, epochs=20, callbacks=[stopper])
    assert history.epoch == [1, 2, 3, 4] and stopper.stopped_epoch == 4
    assert stopper.best_epoch == 1 and stopper.best == history.loss[0]


def test_early_stopping_restores_the_best_epoch(backend):
    X, y = blobs()
    X_val, y_val = blobs(seed=1)
    y_val = (y_val + 1) % 3  # wrong labels: the validation loss rises as training goes on
    snapshots = []
    stopper = EarlyStopping("val_loss", patience=3, restore_best=True)
    model = classifier()
    history = gpunn.fit(model, X, y, lr=0.05, epochs=30, validation_data=(X_val, y_val),
                        callbacks=[lambda e, h, m: snapshots.append(
                            backend.to_numpy(m.flat_params).copy()), stopper])
    best = int(np.argmin(history.val_loss))
    assert len(history.epoch) < 30 and stopper.best_epoch == best + 1
    np.testing.assert_array_equal(backend.to_numpy(model.flat_params), snapshots[best])


class BlowUpAfter(Callback):
    """After epoch ``epoch``: its parameters recorded, then one of them set to inf, so the
    next epoch's loss is not finite and fit raises TrainingDiverged."""

    def __init__(self, epoch):
        self.epoch, self.snapshots = epoch, []

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append(self.model.params.host().copy())
        if epoch == self.epoch:
            self.model.params.load_host(np.where(np.arange(self.snapshots[-1].size) == 0,
                                                 np.inf, self.snapshots[-1]))


def test_early_stopping_restores_the_best_epoch_when_training_diverges(backend):
    X, y = blobs()
    stopper, blow_up = EarlyStopping("loss", patience=5, restore_best=True), BlowUpAfter(3)
    model = classifier()
    with pytest.raises(gpunn.TrainingDiverged, match="epoch 4") as caught:
        gpunn.fit(model, X, y, lr=0.05, epochs=10, callbacks=[stopper, blow_up])
    assert stopper.best_epoch == 3
    np.testing.assert_array_equal(model.params.host(), blow_up.snapshots[2])
    # the message says what the model holds now, not only what the step left
    assert str(caught.value).endswith(
        "Then EarlyStopping(restore_best=True) put back the parameters of epoch 3, its best "
        f"(loss {stopper.best}); the optimizer state is still the diverged run's.")


def test_a_divergence_without_a_best_epoch_keeps_the_message_as_it_was(backend):
    X, y = blobs()
    stopper = EarlyStopping("loss", patience=5, restore_best=True)
    class BlowUpFirst(BlowUpAfter):  # the first epoch diverges: no best epoch to restore
        def on_train_begin(self, logs=None):
            params = self.model.params.host()
            self.model.params.load_host(np.where(np.arange(params.size) == 0, np.inf, params))

    with pytest.raises(gpunn.TrainingDiverged, match="epoch 1") as caught:
        gpunn.fit(classifier(), X, y, lr=0.05, epochs=3, callbacks=[stopper, BlowUpFirst(9)])
    assert "EarlyStopping" not in str(caught.value)


def test_monitor_that_is_not_logged_is_named():
    X, y = blobs()
    with pytest.raises(ValueError, match="monitor 'val_loss' is not recorded"):
        gpunn.fit(classifier(), X, y, epochs=2, callbacks=[EarlyStopping()])


def test_reduce_lr_on_plateau_scales_the_schedule_instead_of_being_overwritten(backend):
    X, y = blobs()
    reducer = ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=1e9)
    history = gpunn.fit(classifier(), X, y, lr=0.01, epochs=4, callbacks=[reducer],
                        schedule=gpunn.Exponential(rate=0.9))
    # Epoch 1 sets the best; every later epoch reduces, from the end of epoch 2 on.
    expected = [0.01 * 0.9 ** e * 0.5 ** max(e - 1, 0) for e in range(4)]
    np.testing.assert_allclose(history.lr, expected, rtol=1e-12)


def test_reduce_lr_on_plateau_respects_min_lr_and_cooldown():
    X, y = blobs()
    reducer = ReduceLROnPlateau("loss", factor=0.1, patience=0, min_delta=1e9, cooldown=1,
                                min_lr=0.0005)
    history = gpunn.fit(classifier(), X, y, lr=0.01, epochs=6, callbacks=[reducer])
    assert history.lr == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0005, 0.0005])


def test_model_checkpoint_saves_only_improvements_atomically(tmp_path, backend):
    X, y = blobs()
    X_val, y_val = blobs(seed=1)
    y_val = (y_val + 1) % 3
    snapshots = []
    saver = ModelCheckpoint(tmp_path / "best-{epoch}.npz", save_best_only=True)
    history = gpunn.fit(classifier(), X, y, lr=0.05, epochs=6, validation_data=(X_val, y_val),
                        callbacks=[lambda e, h, m: snapshots.append(
                            backend.to_numpy(m.flat_params).copy()), saver])
    improved = [e for e in history.epoch
                if history.val_loss[e - 1] < min(history.val_loss[:e - 1], default=np.inf)]
    assert sorted(os.listdir(tmp_path)) == sorted(f"best-{e}.npz" for e in improved)
    saved = gpunn.load_checkpoint(saver.last_path)
    assert saved.epoch == improved[-1] and saved.optimizer is not None
    np.testing.assert_array_equal(backend.to_numpy(saved.model.flat_params),
                                  snapshots[improved[-1] - 1])


def test_model_checkpoint_needs_an_existing_folder(tmp_path):
    X, y = blobs()
    with pytest.raises(ValueError, match="ModelCheckpoint.path: expected a file in an exist"):
        gpunn.fit(classifier(), X, y, epochs=1,
                  callbacks=[ModelCheckpoint(tmp_path / "missing" / "m.npz")])


def test_csv_logger_writes_a_row_per_epoch(tmp_path):
    X, y = blobs()
    path = tmp_path / "log.csv"
    history = gpunn.fit(classifier(), X, y, epochs=3, validation_split=0.25,
                        callbacks=[CSVLogger(path)])
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    np.testing.assert_allclose([float(r["loss"]) for r in rows], history.loss, rtol=1e-12)
    np.testing.assert_allclose([float(r["val_loss"]) for r in rows], history.val_loss,
                               rtol=1e-12)
    gpunn.fit(classifier(), X, y, epochs=2, callbacks=[CSVLogger(path, append=True)])
    with open(path, newline="") as file:
        assert [r["epoch"] for r in csv.DictReader(file)] == ["1", "2", "3", "1", "2"]


def test_validation_split_holds_out_the_last_rows(backend):
    X, y = blobs()
    split = gpunn.fit(classifier(), X, y, epochs=3, batch_size=8, validation_split=0.25)
    explicit = gpunn.fit(classifier(), X[:36], y[:36], epochs=3, batch_size=8,
                         validation_data=(X[36:], y[36:]))
    assert split.val_loss == explicit.val_loss and split.loss == explicit.loss
    assert split.n_samples == 36


@pytest.mark.parametrize("kwargs, match", [
    ({"validation_split": 1.0}, r"validation_split: expected a finite number in \(0.0, 1.0\)"),
    ({"validation_split": 0.001}, "validation_split: expected a fraction leaving rows"),
    ({"validation_split": 0.2, "validation_data": (np.ones((2, 4)), [0, 1])},
     "validation_split: expected None when validation_data is given"),
    ({"verbose": 3}, r"verbose: expected one of \[0, 1, 2\]"),
    ({"verbose": 1, "progress": True}, "progress: expected None when verbose is given"),
], ids=["split-1", "split-too-small", "split-and-data", "verbose-3", "verbose-and-progress"])
def test_bad_validation_and_verbose_arguments(kwargs, match):
    X, y = blobs()
    with pytest.raises(ValueError, match=match):
        gpunn.fit(classifier(), X, y, epochs=1, **kwargs)


def test_verbose_prints_a_line_per_epoch_and_logs(capsys, caplog):
    X, y = blobs()
    with caplog.at_level(logging.INFO, logger="gpunn"):
        gpunn.fit(classifier(), X, y, epochs=3, verbose=2, validation_split=0.25)
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out] == [["epoch", "1/3"], ["epoch", "2/3"],
                                                 ["epoch", "3/3"]]
    assert "val_loss" in out[0] and "lr 0.001" in out[0]
    assert [r.getMessage() for r in caplog.records if r.name == "gpunn"] == out
    gpunn.fit(classifier(), X, y, epochs=2, verbose=1)  # captured output: not a terminal
    assert len(capsys.readouterr().out.splitlines()) == 2
    gpunn.fit(classifier(), X, y, epochs=2, verbose=0)
    assert capsys.readouterr() == ("", "")


def trained_history():
    X, y = blobs()
    return gpunn.fit(classifier(), X, y, epochs=3, validation_split=0.25,
                     schedule=gpunn.Exponential(rate=0.5))


def test_history_to_csv_and_dataframe(tmp_path):
    history = trained_history()
    history.to_csv(tmp_path / "h.csv")
    with open(tmp_path / "h.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["epoch", "loss", "seconds", "samples_per_second", "lr",
                             "val_loss", "val_accuracy"]
    np.testing.assert_allclose([float(r["lr"]) for r in rows], history.lr, rtol=1e-15)
    pandas = pytest.importorskip("pandas")
    frame = history.to_dataframe()
    assert isinstance(frame, pandas.DataFrame) and frame.index.tolist() == [1, 2, 3]
    assert frame["val_accuracy"].tolist() == history.val_accuracy


def test_history_plot_draws_on_given_axes(tmp_path):
    figure_module = pytest.importorskip("matplotlib.figure")
    history = trained_history()
    assert history.panels() == ["loss", "loss_vs_time", "accuracy", "lr"]
    figure = figure_module.Figure()
    axes = figure.subplots(1, 4)
    assert history.plot(ax=axes) is figure
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), history.loss)
    np.testing.assert_allclose(axes[1].lines[0].get_xdata(), history.seconds)
    np.testing.assert_allclose(axes[2].lines[0].get_ydata(), history.val_accuracy)
    np.testing.assert_allclose(axes[3].lines[0].get_ydata(), history.lr)
    single = figure_module.Figure().subplots()
    history.plot(ax=single)
    assert len(single.lines) == 2  # training cost and validation loss
    history.plot(tmp_path / "all.png")
    assert (tmp_path / "all.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name, error", [
    ("{nope}.npz", "unknown fields"), ("{epoch:.x}.npz", "Format specifier|format code"),
    ("{}.npz", "unknown fields"), ("{loss:d}.npz", "format code"), ("dir", "directory")])
def test_model_checkpoint_path_and_template_checked_before_training(tmp_path, name, error):
    (tmp_path / "dir").mkdir()
    X, y = blobs()
    epochs = []
    with pytest.raises(ValueError, match=rf"ModelCheckpoint.path: .*({error})"):
        gpunn.fit(classifier(), X, y, epochs=2, validation_split=0.25,
                  callbacks=[lambda epoch, history, model: epochs.append(epoch),
                             ModelCheckpoint(tmp_path / name)])
    assert epochs == []


def test_model_checkpoint_template_of_every_log_name_is_accepted(tmp_path):
    X, y = blobs()
    template = "m-{epoch:02d}-{loss:.3f}-{val_loss:.3f}-{val_accuracy:.2f}-{lr:g}.npz"
    saver = ModelCheckpoint(tmp_path / template)
    gpunn.fit(classifier(), X, y, epochs=2, validation_split=0.25, callbacks=[saver])
    assert len(os.listdir(tmp_path)) == 2 and os.path.basename(saver.last_path).startswith("m-02-")


def test_csv_logger_refuses_a_pipe_or_folder_before_training(tmp_path):
    X, y = blobs()
    fifo = tmp_path / "log.csv"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so the unfixed open cannot block
    epochs = []
    try:
        for path, kind in ((fifo, "named pipe"), (tmp_path, "directory")):
            with pytest.raises(ValueError, match=f"CSVLogger.path: .*{kind}"):
                gpunn.fit(classifier(), X, y, epochs=2,
                          callbacks=[lambda epoch, history, model: epochs.append(epoch),
                                     CSVLogger(path)])
            assert epochs == []
        assert os.read(reader, 100) == b""  # nothing was written into the pipe
    finally:
        os.close(reader)


def test_csv_logger_append_keeps_rows_and_adds_new_columns(tmp_path):
    """An existing file whose last line lacks its newline, then a run that logs columns the
    header lacks (validation added): no glued row, no dropped column, old rows unchanged."""
    X, y = blobs()
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\r\n1,0.5\r\n2,0.25")  # no newline at the end
    gpunn.fit(classifier(), X, y, epochs=2, validation_data=blobs(seed=1),
              callbacks=[CSVLogger(path, append=True)])
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["epoch"] for r in rows] == ["1", "2", "1", "2"]
    assert rows[0]["loss"] == "0.5" and rows[1]["loss"] == "0.25"
    assert rows[0]["val_loss"] == "" and float(rows[3]["val_loss"]) > 0
    assert all(float(r["loss"]) > 0 for r in rows)


def test_csv_logger_widening_keeps_the_link_and_the_permissions(tmp_path):
    """Adding columns rewrites the log as every output is written: through a symlink to the
    file it names (the link stays), with the file's permission bits (0640 stays 0640)."""
    X, y = blobs()
    real, link = tmp_path / "real.csv", tmp_path / "link.csv"
    real.write_text("epoch,loss\r\n1,0.5\r\n")
    real.chmod(0o640)
    link.symlink_to(real)
    gpunn.fit(classifier(), X, y, epochs=1, validation_data=blobs(seed=1),
              callbacks=[CSVLogger(link, append=True)])
    assert link.is_symlink() and (real.stat().st_mode & 0o777) == 0o640
    header = real.read_text().splitlines()[0].split(",")
    assert header[:2] == ["epoch", "loss"] and "val_loss" in header


@pytest.mark.parametrize("existing, message", [
    (b"epoch,loss\n1,0.5,extra\n", r"expected rows of at most the header's 2 fields to "
                                     r"append to, got 3 on line 2"),
    (b"epoch;loss\n1;0.5\n", r"expected a log with an 'epoch' column separated by ',' to "
                             r"append to, got the header \['epoch;loss'\]"),
    (b"epoch,loss\n1,\xff\n", r"expected a UTF-8 CSV log to append to, got byte 0xff"),
])
def test_csv_logger_refuses_a_file_it_cannot_append_to_before_training(tmp_path, capsys,
                                                                       existing, message):
    X, y = blobs()
    path = tmp_path / "log.csv"
    path.write_bytes(existing)
    with pytest.raises(ValueError, match=rf"^CSVLogger.path: {message}"):
        gpunn.fit(classifier(), X, y, epochs=1, verbose=1,
                  callbacks=[CSVLogger(path, append=True)])
    assert path.read_bytes() == existing and "epoch 1" not in capsys.readouterr().out


@pytest.mark.parametrize("callback, message", [
    (lambda tmp: ModelCheckpoint(tmp / "m-{val_loss:.3f}.st"),
     r"^ModelCheckpoint.path: field 'val_loss' is not recorded by this run"),
    (lambda tmp: ModelCheckpoint(tmp / "m.st", save_best_only=True),
     r"^ModelCheckpoint: monitor 'val_loss' is not recorded by this run"),
    (lambda tmp: EarlyStopping("val_accuracy"),
     r"^EarlyStopping: monitor 'val_accuracy' is not recorded by this run"),
])
def test_val_logs_without_validation_are_refused_before_the_first_epoch(tmp_path, capsys,
                                                                        callback, message):
    X, y = blobs()
    with pytest.raises(ValueError, match=message):
        gpunn.fit(classifier(), X, y, epochs=2, verbose=1, callbacks=[callback(tmp_path)])
    assert "epoch 1" not in capsys.readouterr().out and not list(tmp_path.iterdir())


@pytest.mark.parametrize("template", ["m-{epoch:c}.st", "m-{epoch.__class__}.st",
                                      "m-{loss[0]}.st"])
def test_a_template_with_attributes_or_control_characters_is_refused(tmp_path, template):
    X, y = blobs()
    with pytest.raises(ValueError, match=r"ModelCheckpoint.path: expected a path whose format "
                                         r"fields are among"):
        gpunn.fit(classifier(), X, y, epochs=1,
                  callbacks=[ModelCheckpoint(tmp_path / template)])
    assert not list(tmp_path.iterdir())
