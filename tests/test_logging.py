"""Logging where users look: TensorBoard event files (read back record by record, CRCs
checked), the per-step tqdm.auto progress bar, History.to_dataframe."""

import glob
import io
import struct

import numpy as np
import pytest

import gpunn
from gpunn.progressbar import ProgressBar

ROWS, BATCH, EPOCHS = 48, 16, 3
STEPS = ROWS // BATCH


def data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(ROWS, 4)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)


def train(callbacks, record_steps=False):
    X, y = data()
    model = gpunn.MLP([4, 8, 3], activation="relu", output="softmax")
    return gpunn.fit(model, X, y, epochs=EPOCHS, batch_size=BATCH, lr=0.05,
                     validation_data=data(1), callbacks=callbacks, record_steps=record_steps,
                     progress=False)


def masked_crc32c(data):
    """TFRecord's masked CRC-32C (Castagnoli), bit by bit: independent of any writer's table."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_scalars(log_dir):
    """``{tag: [(step, value), ...]}`` from the one event file in ``log_dir``."""
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    (path,) = glob.glob(f"{log_dir}/events.out.tfevents.*")
    raw, scalars, offset = open(path, "rb").read(), {}, 0
    while offset < len(raw):
        header = raw[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", raw[offset + 8:offset + 12])[0] == masked_crc32c(header)
        record = raw[offset + 12:offset + 12 + length]
        crc = raw[offset + 12 + length:offset + 16 + length]
        assert struct.unpack("<I", crc)[0] == masked_crc32c(record)
        offset += 16 + length
        event = event_pb2.Event.FromString(record)
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_epoch_scalars(tmp_path):
    pytest.importorskip("tensorboardX")
    from gpunn.tensorboard import TensorBoard

    callback = TensorBoard(tmp_path / "runs")
    assert not callback.wants_batches  # per epoch: no device read per step
    history = train([callback])
    scalars = read_scalars(tmp_path / "runs")
    assert sorted(scalars) == ["epoch/loss", "epoch/lr", "epoch/samples_per_second",
                               "epoch/val_accuracy", "epoch/val_loss"]
    for tag, values in (("loss", history.loss), ("val_loss", history.val_loss),
                        ("val_accuracy", history.val_accuracy), ("lr", history.lr)):
        steps, logged = zip(*scalars[f"epoch/{tag}"])
        assert list(steps) == [1, 2, 3]
        np.testing.assert_allclose(logged, values, rtol=1e-6, err_msg=tag)  # float32 stored


@pytest.mark.parametrize("update_freq,every", [("batch", 1), (2, 2)], ids=["batch", "every-2"])
def test_tensorboard_step_scalars(tmp_path, update_freq, every):
    pytest.importorskip("tensorboardX")
    from gpunn.tensorboard import TensorBoard

    history = train([TensorBoard(str(tmp_path), update_freq=update_freq)], record_steps=True)
    steps, logged = zip(*read_scalars(tmp_path)["batch/loss"])
    expected_steps = list(range(every, EPOCHS * STEPS + 1, every))
    assert list(steps) == expected_steps
    expected = [history.step_loss[s - 1] for s in expected_steps]
    np.testing.assert_allclose(logged, expected, rtol=1e-6)


def test_tensorboard_arguments_checked(tmp_path):
    pytest.importorskip("tensorboardX")
    from gpunn.tensorboard import TensorBoard

    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="log_dir: expected a folder or a new folder name"):
        TensorBoard(tmp_path / "file")
    with pytest.raises(TypeError, match="log_dir: expected a folder path, got int"):
        TensorBoard(3)
    with pytest.raises(ValueError, match="update_freq: expected 'epoch', 'batch' or an int"):
        TensorBoard(tmp_path, update_freq="step")
    with pytest.raises(ValueError, match=r"update_freq: expected an integer in \[1, inf\]"):
        TensorBoard(tmp_path, update_freq=0)


def test_progress_bar_per_step():
    out = io.StringIO()
    history = train([ProgressBar(file=out)])
    text = out.getvalue()
    for epoch in range(1, EPOCHS + 1):
        assert f"epoch {epoch}/{EPOCHS}" in text
    assert f"{STEPS}/{STEPS}" in text
    assert f"loss={history.loss[-1]:.4g}" in text and "val_loss=" in text


def test_history_to_dataframe_has_every_column():
    pandas = pytest.importorskip("pandas")
    history = train(None)
    frame = history.to_dataframe()
    assert isinstance(frame, pandas.DataFrame)
    assert frame.index.name == "epoch" and frame.index.tolist() == [1, 2, 3]
    assert list(frame.columns) == ["loss", "seconds", "samples_per_second", "lr", "val_loss",
                                   "val_accuracy"]
    np.testing.assert_array_equal(frame["loss"], history.loss)
    np.testing.assert_array_equal(frame["val_loss"], history.val_loss)
    assert gpunn.History().to_dataframe().empty


def test_tensorboard_steps_continue_after_resume(tmp_path):
    pytest.importorskip("tensorboardX")
    from gpunn.tensorboard import TensorBoard

    X, y = data()
    path = str(tmp_path / "run.safetensors")
    model = gpunn.MLP([4, 8, 3], activation="relu", output="softmax")
    gpunn.fit(model, X, y, epochs=2, batch_size=BATCH, checkpoint_path=path, progress=False)
    gpunn.fit(model, X, y, epochs=EPOCHS, batch_size=BATCH, resume_from=path, progress=False,
              callbacks=[TensorBoard(tmp_path / "resumed", update_freq="batch")])
    scalars = read_scalars(tmp_path / "resumed")
    assert [step for step, _ in scalars["batch/loss"]] == list(range(2 * STEPS + 1,
                                                                      EPOCHS * STEPS + 1))
    assert [step for step, _ in scalars["epoch/loss"]] == [EPOCHS]


def test_tensorboard_writes_on_rank_0_only(tmp_path):
    pytest.importorskip("tensorboardX")
    from gpunn.tensorboard import TensorBoard

    callback = TensorBoard(tmp_path / "rank1", update_freq="batch")
    callback.params = {"epochs": 1, "batch_size": 4, "steps": 2, "rank": 1}
    callback.on_train_begin({})
    callback.on_epoch_begin(1, {})
    callback.on_train_batch_end(0, {"loss": 1.0, "size": 4})
    callback.on_epoch_end(1, {"loss": 1.0, "lr": 0.1})
    callback.on_train_end({})
    assert not (tmp_path / "rank1").exists()
