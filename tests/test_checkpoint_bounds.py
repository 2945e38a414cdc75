"""What a checkpoint may claim is bounded before anything is built from it (issue 19 item 5):
header bytes and JSON containers, sparse files, counts; loading peaks near 1x the file; every
refusal is a CheckpointError and leaves the model as it was."""

import json
import os
import tracemalloc

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save as save_safetensors

import gpunn
from gpunn.checkpoint import container, crc, format, text_crc
from gpunn.train import MAX_EPOCHS

MB = 1 << 20


def rewrite(path, arrays=None, **changes):
    """Rewrite a checkpoint's gpunn header (and arrays), keeping every checksum consistent."""
    with safe_open(path, framework="np") as handle:
        saved = {name: handle.get_tensor(name) for name in handle.keys()}
        header = json.loads(handle.metadata()["gpunn"])
    saved.update(arrays or {})
    header.update(changes, crc32={k: crc(v) for k, v in saved.items()})
    text = json.dumps(header)
    path.write_bytes(save_safetensors(saved, metadata={"gpunn": text,
                                                       "gpunn.crc32": text_crc(text)}))


def peak_of(call):
    """``(result or the exception raised, peak bytes traced while calling)``."""
    tracemalloc.start()
    try:
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - returned for the caller to check
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def small_model_file(tmp_path):
    path = tmp_path / "m.safetensors"
    gpunn.MLP([3, 4, 2], seed=1).save(path)
    return path


def test_a_header_above_the_cap_is_refused_before_it_is_parsed(tmp_path):
    path = small_model_file(tmp_path)
    numbers = [0.5] * ((container.MAX_HEADER_BYTES // 5) + 1000)  # "0.5, " per number
    rewrite(path, extra={"junk": numbers})
    del numbers
    assert os.path.getsize(path) > container.MAX_HEADER_BYTES
    error, peak = peak_of(lambda: gpunn.load(path))
    assert isinstance(error, gpunn.CheckpointError), error
    assert str(path) in str(error) and "header" in str(error) and "at most" in str(error)
    assert peak < MB  # the claim is refused from the length field: nothing was parsed


def test_a_header_of_many_containers_is_refused_before_json_builds_them(tmp_path):
    path = small_model_file(tmp_path)
    rewrite(path, extra={"junk": [[]] * (2 * container.MAX_CONTAINERS)})
    size = os.path.getsize(path)
    assert size < container.MAX_HEADER_BYTES
    error, peak = peak_of(lambda: gpunn.load(path))
    assert isinstance(error, gpunn.CheckpointError), error
    assert "JSON objects and lists" in str(error)
    assert peak < 4 * size  # the text and its copies, not 2 * 65536 lists


def test_saving_refuses_a_header_that_loading_would_refuse(tmp_path):
    path = tmp_path / "m.safetensors"
    net = gpunn.MLP([3, 4, 2])
    with pytest.raises(ValueError, match="header: expected at most"):
        gpunn.save_checkpoint(path, net, junk=[0.5] * (container.MAX_HEADER_BYTES // 5 + 1000))
    with pytest.raises(ValueError, match="JSON objects and lists"):
        gpunn.save_checkpoint(path, net, junk=[[]] * (2 * container.MAX_CONTAINERS))
    assert not path.exists() and os.listdir(tmp_path) == []


def sparse_checkpoint(path, n_hidden):
    """A valid checkpoint of an all-zero MLP([n_hidden, n_hidden, 2]) whose data is one hole."""
    net = gpunn.MLP([n_hidden, n_hidden, 2])
    size = net.n_params if False else net.flat_params.size
    header = {"format": format.FORMAT, "version": format.VERSION, "model": net.config(),
              "layout": [list(r) for r in net.param_ranges], "epoch": 0, "extra": {},
              "crc32": {"params": crc(np.zeros(size, np.float32))}}
    text = json.dumps(header)
    tiny = save_safetensors({"params": np.zeros(1, np.float32)},
                            metadata={"gpunn": text, "gpunn.crc32": text_crc(text)})
    head = tiny[8:8 + int.from_bytes(tiny[:8], "little")].decode()
    head = head.replace('"shape":[1]', f'"shape":[{size}]').replace(
        '"data_offsets":[0,4]', f'"data_offsets":[0,{4 * size}]').rstrip().encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as file:
        file.write(len(head).to_bytes(8, "little") + head)
        file.truncate(8 + len(head) + 4 * size)
    return 4 * size


def test_a_sparse_file_is_refused_before_its_data_is_read(tmp_path):
    path = tmp_path / "sparse.safetensors"
    data_bytes = sparse_checkpoint(path, 2048)
    with open(path, "rb") as file:
        if os.lseek(file.fileno(), 0, getattr(os, "SEEK_HOLE", 4)) >= os.path.getsize(path):
            pytest.skip("this file system does not report holes")
    assert os.stat(path).st_blocks * 512 < data_bytes // 100
    error, peak = peak_of(lambda: gpunn.load(path))
    assert isinstance(error, gpunn.CheckpointError), error
    assert "sparse" in str(error) and str(path) in str(error)
    assert peak < data_bytes // 10


def adam_checkpoint(tmp_path, sizes=(256, 512, 512, 10)):
    net = gpunn.MLP(list(sizes), output="softmax", seed=3)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, sizes[0])).astype(np.float32)
    y = np.arange(64) % sizes[-1]
    optimizer = gpunn.Adam(lr=1e-3)
    gpunn.fit(net, X, y, optimizer=optimizer, epochs=1, batch_size=32, verbose=0)
    path = tmp_path / "adam.safetensors"
    gpunn.save_checkpoint(path, net, optimizer)
    return path, net


def test_loading_into_a_model_peaks_near_the_file_size(tmp_path):
    path, net = adam_checkpoint(tmp_path)
    other = gpunn.MLP([256, 512, 512, 10], output="softmax")
    loaded, peak = peak_of(lambda: gpunn.load_checkpoint(path, model=other))
    assert not isinstance(loaded, Exception), loaded
    np.testing.assert_array_equal(other.params.host(), net.params.host())
    assert sorted(loaded.optimizer.state) == ["m", "v"]
    size = os.path.getsize(path)
    assert peak < 1.2 * size, f"peak {peak / size:.2f}x the file"


def test_reading_peaks_near_the_file_size(tmp_path):
    path, _ = adam_checkpoint(tmp_path)
    saved, peak = peak_of(lambda: gpunn.checkpoint.read_checkpoint(path))
    assert not isinstance(saved, Exception), saved
    size = os.path.getsize(path)
    assert peak < 1.2 * size, f"peak {peak / size:.2f}x the file"


def fit_checkpoint(tmp_path, epochs=2):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    settings = dict(optimizer="adam", lr=1e-2, batch_size=8, verbose=0, seed=4)
    net = gpunn.MLP([5, 6, 2], output="softmax", seed=2)
    path = tmp_path / "run.safetensors"
    gpunn.fit(net, X, y, epochs=epochs, checkpoint_path=path, **settings)
    return path, X, y, settings


@pytest.mark.parametrize("claim, match", [
    ({"epoch": 10_000_000}, "history.epoch: expected 10000000 entries"),
    ({"epoch": 2 ** 80}, "epoch: expected an integer in [0, 9007199254740992]"),
    ({"optimizer": "t"}, "optimizer t: expected an integer in [0, 9007199254740992]"),
], ids=["epochs-a-list-cannot-hold", "epoch-past-int64", "step-count-past-int64"])
def test_absurd_counts_are_refused_cheaply_and_leave_the_model_as_it_was(tmp_path, claim, match):
    path, X, y, settings = fit_checkpoint(tmp_path)
    if claim.get("optimizer") == "t":
        with safe_open(path, framework="np") as handle:
            optimizer = json.loads(handle.metadata()["gpunn"])["optimizer"]
        claim = {"optimizer": dict(optimizer, t=2 ** 70)}
    rewrite(path, **claim)
    net = gpunn.MLP([5, 6, 2], output="softmax", seed=9)
    before = net.params.host()
    error, peak = peak_of(lambda: gpunn.fit(net, X, y, epochs=MAX_EPOCHS, resume_from=path,
                                            **settings))
    assert isinstance(error, gpunn.CheckpointError), error
    assert match in str(error) and str(path) in str(error)
    assert peak < 20 * MB
    np.testing.assert_array_equal(net.params.host(), before)


def test_resuming_with_fewer_epochs_than_saved_is_refused_before_anything_changes(tmp_path):
    path, X, y, settings = fit_checkpoint(tmp_path, epochs=3)
    saved = path.read_bytes()
    net = gpunn.MLP([5, 6, 2], output="softmax", seed=9)
    before = net.params.host()
    with pytest.raises(ValueError, match=r"^epochs: expected at least 3 \(.* has done 3 epochs; "
                                         r"epochs counts them\), got 2$"):
        gpunn.fit(net, X, y, epochs=2, resume_from=path, checkpoint_path=path, **settings)
    np.testing.assert_array_equal(net.params.host(), before)
    assert path.read_bytes() == saved


def test_a_model_checkpoint_file_is_refused_by_resume_with_a_true_message(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    path = tmp_path / "mc.safetensors"
    net = gpunn.MLP([5, 6, 2], output="softmax", seed=2)
    gpunn.fit(net, X, y, epochs=2, verbose=0,
              callbacks=[gpunn.callbacks.ModelCheckpoint(path, monitor="loss")])
    with pytest.raises(gpunn.CheckpointError) as caught:
        gpunn.fit(net, X, y, epochs=4, verbose=0, resume_from=path)
    message = str(caught.value)
    assert "model-only" not in message  # it holds the optimizer and history too
    assert "shuffling state" in message and "ModelCheckpoint" in message


def test_a_run_whose_recorded_steps_would_outgrow_the_header_is_refused_before_training(
        tmp_path, monkeypatch):
    """A fit checkpoint must always load: with record_steps, a run whose step losses could
    not fit in a header is refused at the start, not after training at its first save."""
    monkeypatch.setattr(container, "MAX_HEADER_BYTES", 64 * 1024)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    epochs_run = []

    class Count(gpunn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs_run.append(epoch)

    net = gpunn.MLP([5, 6, 2], output="softmax")
    with pytest.raises(ValueError, match="record_steps: expected at most about 1260 recorded"):
        gpunn.fit(net, X, y, epochs=20, batch_size=2, record_steps=True, verbose=0,
                  checkpoint_path=tmp_path / "run.safetensors",
                  callbacks=[Count()])
    assert epochs_run == [] and os.listdir(tmp_path) == []
    gpunn.fit(net, X, y, epochs=2, batch_size=8, record_steps=True, verbose=0,
              checkpoint_path=tmp_path / "run.safetensors")  # 50 steps fit: saved, loads
    assert len(gpunn.load_checkpoint(tmp_path / "run.safetensors").history.step_loss) == 50


def test_loading_a_new_model_costs_the_file_and_the_models_own_buffers(tmp_path):
    """A model built to be loaded skips the seeded initialization (host float64 copies): the
    peak is the checked file plus the new model's parameters and gradient."""
    path, _ = adam_checkpoint(tmp_path)
    loaded, peak = peak_of(lambda: gpunn.load_checkpoint(path))
    assert not isinstance(loaded, Exception), loaded
    size = os.path.getsize(path)
    own = 2 * loaded.model.flat_params.nbytes  # parameters and gradient
    assert peak < 1.1 * size + own, f"peak {peak / size:.2f}x the file"
    assert not np.array_equal(loaded.model.params.host(), 0)


def test_saving_a_header_past_the_bound_is_a_value_error_before_safetensors():
    """A header of 110 MB: safetensors refuses past about 100 MB with its own error; the
    bound is checked on the text first, as a ValueError naming it."""
    with pytest.raises(ValueError, match=r"^header: expected at most 16777216 bytes, got "):
        gpunn.save_checkpoint("unused.safetensors", gpunn.MLP([3, 4, 2]), junk="y" * 110_000_000)
