"""Property tests of the checkpoint reader: damaged or crafted files give CheckpointError or
the saved content exactly, never another exception, with bounded memory."""

import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save

import gpunn
from gpunn import checkpoint

MEMORY_LIMIT = 8 * 2**20  # bytes of Python/NumPy allocations while loading a ~4 KB file


def _valid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "valid.ckpt"
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(9, 3)), rng.integers(0, 2, size=9)
    model, optimizer = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64"), gpunn.Adam()
    history = gpunn.fit(model, X, y, optimizer=optimizer, epochs=2, batch_size=4)
    gpunn.save_checkpoint(path, model, optimizer, gpunn.Exponential(0.5), history, epoch=2,
                          rng=np.random.default_rng(1), order=np.arange(9))
    return path.read_bytes()


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    data = _valid_file(tmp_path_factory)
    expected = tmp_path_factory.mktemp("expected") / "e.ckpt"
    expected.write_bytes(data)
    return data, gpunn.load_checkpoint(expected)


def mutations(size):
    """Truncations, bit flips, overwritten runs (names, header edits), insertions, appends."""
    position = st.integers(0, size - 1)
    flip = st.tuples(position, st.integers(0, 7))
    return st.one_of(
        st.builds(lambda n: ("truncate", n), st.integers(0, size - 1)),
        st.builds(lambda flips: ("flip", flips), st.lists(flip, min_size=1, max_size=4)),
        st.builds(lambda p, b: ("overwrite", p, b), position, st.binary(min_size=1, max_size=12)),
        st.builds(lambda p, b: ("insert", p, b), position, st.binary(min_size=1, max_size=12)),
        st.builds(lambda b: ("append", b), st.binary(min_size=1, max_size=64)),
        st.builds(lambda p, w: ("rename", p, w), st.sampled_from(
            [b"params", b"optimizer.m", b"fit.order", b"F64", b"I64", b"crc32", b"layout"]),
            st.sampled_from([b"paramz", b"optimizer.v", b"F32", b"U64", b"x", b"", b"epoch"])),
    )


def mutate(data, mutation):
    kind, *args = mutation
    if kind == "truncate":
        return data[:args[0]]
    if kind == "flip":
        out = bytearray(data)
        for position, bit in args[0]:
            out[position] ^= 1 << bit
        return bytes(out)
    if kind == "overwrite":
        position, new = args
        return data[:position] + new + data[position + len(new):]
    if kind == "insert":
        return data[:args[0]] + args[1] + data[args[0]:]
    if kind == "append":
        return data + args[0]
    return data.replace(args[0], args[1], 1)


def load_measured(path):
    tracemalloc.start()
    try:
        return gpunn.load_checkpoint(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MEMORY_LIMIT, peak


def assert_same(loaded, expected):
    np.testing.assert_array_equal(np.asarray(loaded.model.backend.to_numpy(
        loaded.model.flat_params)), expected.params)
    assert loaded.config == expected.config and loaded.epoch == expected.epoch
    assert loaded.history == expected.history and loaded.rng_state == expected.rng_state
    np.testing.assert_array_equal(loaded.order, expected.order)
    got, want = loaded.optimizer.state_dict(), expected.optimizer.state_dict()
    for key in ("m", "v"):
        np.testing.assert_array_equal(got["state"].pop(key), want["state"].pop(key))
    assert got == want


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_files_raise_checkpoint_error_or_load_the_saved_content(original, tmp_path,
                                                                      data):
    valid, expected = original
    mutation = data.draw(mutations(len(valid)))
    path = tmp_path / "mutated.ckpt"
    path.write_bytes(mutate(valid, mutation))
    try:
        loaded = load_measured(path)
    except gpunn.CheckpointError:
        return
    assert_same(loaded, expected)


def crafted(path, header, arrays):
    """A container with a consistent checksum over ``header`` (a dict)."""
    header = dict(header, crc32={k: checkpoint.crc(v) for k, v in arrays.items()})
    text = json.dumps(header)
    path.write_bytes(save(arrays, metadata={"gpunn": text,
                                            "gpunn.crc32": checkpoint.text_crc(text)}))


def header_of(model):
    return {"format": "gpunn-checkpoint", "version": 2, "model": model.config(),
            "layout": [list(r) for r in model.param_ranges], "epoch": 0, "extra": {}}


def test_a_tiny_file_claiming_a_huge_model_costs_nothing(tmp_path):
    small = gpunn.MLP([3, 2])
    head = header_of(small)
    head["model"]["layers"] = [{"n_in": 10000, "n_out": 10000, "activation": "identity"}]
    head["layout"] = [["W0", 0, 10**8], ["b0", 10**8, 10**8 + 10000]]
    crafted(tmp_path / "huge.ckpt", head, {"params": np.zeros(64, np.float32)})
    assert (tmp_path / "huge.ckpt").stat().st_size < 4096
    with pytest.raises(gpunn.CheckpointError, match=r"entry 'params': expected float32 of "
                                                    r"shape \(100010000,\)"):
        load_measured(tmp_path / "huge.ckpt")


@pytest.mark.parametrize("n, match", [
    (1000, r"expected at most 16 entries, got 1001$"),
    (12, r"expected entries \['params'\], got \['entry00000', .*'entry00007'\] and 5 more "
         r"\(13 in all\)$"),
], ids=["refused before listing", "listed briefly"])
def test_many_entries_give_a_short_message(tmp_path, n, match):
    small = gpunn.MLP([3, 2])
    arrays = {f"entry{i:05d}": np.zeros(1, np.float32) for i in range(n)}
    arrays["params"] = np.zeros(small.flat_params.size, np.float32)
    crafted(tmp_path / "many.ckpt", header_of(small), arrays)
    with pytest.raises(gpunn.CheckpointError, match=match) as caught:
        load_measured(tmp_path / "many.ckpt")
    assert len(str(caught.value)) < 400


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=4),
    max_leaves=12)


def key_paths(header):
    """Every top-level key and every key one level down, as tuples."""
    paths = [(key,) for key in header]
    paths += [(key, sub) for key, value in header.items() if isinstance(value, dict)
              for sub in value]
    return sorted(paths)


def edited(header, path, value, delete):
    header = json.loads(json.dumps(header))
    parent = header if len(path) == 1 else header[path[0]]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return header


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_edited_headers_with_valid_checksums_raise_or_give_a_usable_checkpoint(original, tmp_path,
                                                                            data):
    """A hostile editor who recomputes the checksums: CheckpointError, or a checkpoint whose
    model, optimizer, RNG and schedule all work."""
    valid, _ = original
    source = tmp_path / "source.ckpt"
    source.write_bytes(valid)
    with safe_open(source, framework="np") as handle:
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
        header = json.loads(handle.metadata()["gpunn"])
    path = data.draw(st.sampled_from(key_paths(header)))
    new = edited(header, path, data.draw(JSON), data.draw(st.booleans()))
    crafted(tmp_path / "edited.ckpt", new, arrays)
    try:
        loaded = load_measured(tmp_path / "edited.ckpt")
    except gpunn.CheckpointError:
        return
    model = loaded.model
    assert np.all(np.isfinite(model.backend.to_numpy(model.flat_params)))
    X = np.random.default_rng(0).normal(size=(5, model.n_in))
    model.loss_and_grad(X, np.zeros(5, np.int64) if model.output == "softmax" else
                        np.zeros((5, model.n_out)))
    if loaded.optimizer is not None:
        loaded.optimizer.step(model)
    if loaded.rng_state is not None:
        loaded.rng().random()
    if loaded.schedule is not None:
        loaded.schedule(0.1, 3)


RESUME = {"optimizer": "adam", "epochs": 4, "batch_size": 4, "verbose": 0}  # 3 steps an epoch


def resume_data():
    return (np.random.default_rng(0).normal(size=(9, 3)),
            np.random.default_rng(0).integers(0, 2, size=9))


def resume_measured(path, model, limit=32 * 2**20):
    """``fit(resume_from=path)`` continuing the original's run, its peak memory bounded."""
    X, y = resume_data()
    tracemalloc.start()
    try:
        return gpunn.fit(model, X, y, resume_from=path, **RESUME)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < limit, peak


def resume_model():
    return gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=7)


class Interrupt(gpunn.callbacks.Callback):
    """Ctrl-C after step 1 of epoch 2: fit's last checkpoint is then the mid-epoch one."""

    def __init__(self):
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == (2, 1):
            raise KeyboardInterrupt


@pytest.fixture(scope="module", params=["save_checkpoint at an epoch end", "fit mid-epoch"])
def resumable(request, original, tmp_path_factory):
    """``(bytes of a file to resume from, the parameters resuming from it gives)``: the
    load tests' file, and one fit wrote itself after step 1 of epoch 2 (checkpoint_steps)."""
    folder = tmp_path_factory.mktemp("resumable")
    path = folder / "original.ckpt"
    if request.param == "fit mid-epoch":
        with pytest.raises(KeyboardInterrupt):
            gpunn.fit(gpunn.MLP([3, 4, 2], output="softmax", dtype="float64"), *resume_data(),
                      checkpoint_path=path, checkpoint_steps=1, callbacks=[Interrupt()],
                      **RESUME)
        assert gpunn.load_checkpoint(path).steps is not None
    else:
        path.write_bytes(original[0])
    model = resume_model()
    resume_measured(path, model)
    return path.read_bytes(), model.params.host()


def assert_resumes_or_refuses(path, expected=None):
    """CheckpointError with the model untouched, or a run that continues to 4 finite epochs
    (with the parameters ``expected``, when given: the file's content is the original's)."""
    model = resume_model()
    before = model.params.host()
    try:
        history = resume_measured(path, model)
    except gpunn.CheckpointError:
        np.testing.assert_array_equal(model.params.host(), before)
        return
    assert history.epoch == [1, 2, 3, 4] and np.all(np.isfinite(model.params.host()))
    if expected is not None:
        np.testing.assert_array_equal(model.params.host(), expected)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_resume_from_a_mutated_file_refuses_or_continues_the_same_run(resumable, tmp_path,
                                                                     data):
    """Damaged bytes: refused, or (the checksums let only the saved content through) the
    very run that resuming from the original gives, bit for bit."""
    valid, expected = resumable
    path = tmp_path / "mutated.ckpt"
    path.write_bytes(mutate(valid, data.draw(mutations(len(valid)))))
    assert_resumes_or_refuses(path, expected)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_resume_from_an_edited_header_refuses_or_continues(resumable, tmp_path, data):
    """The hostile editor of the test above, now at fit(resume_from=...): absurd epochs and
    step counts included."""
    valid, _ = resumable
    source = tmp_path / "source.ckpt"
    source.write_bytes(valid)
    with safe_open(source, framework="np") as handle:
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
        header = json.loads(handle.metadata()["gpunn"])
    path = data.draw(st.sampled_from(key_paths(header)))
    new = edited(header, path, data.draw(JSON | st.integers(2**31, 2**80)),
                 data.draw(st.booleans()))
    crafted(tmp_path / "edited.ckpt", new, arrays)
    assert_resumes_or_refuses(tmp_path / "edited.ckpt")
