"""Checkpoints: round trips, across backends, atomic writes, and one error for every bad file."""

import io
import json
import os
import pickle

import numpy as np
import pytest
from conftest import _make
from safetensors import safe_open
from safetensors.numpy import save as save_safetensors

import gpunn
from gpunn import checkpoint as ckpt
from gpunn.backends import use_backend
from gpunn.checkpoint import container

EXECUTED = []


def record_execution():
    """What a malicious pickle in a crafted file would run; must never be called."""
    EXECUTED.append(True)


class Payload:
    def __reduce__(self):
        return record_execution, ()


def data(n=12, n_in=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.integers(0, 2, size=n)


def model(dtype="float64", sizes=(3, 5, 2)):
    return gpunn.MLP(list(sizes), activation="tanh", output="softmax", dtype=dtype, seed=1)


def trained(path):
    """A model and Adam after two epochs, saved to ``path`` with everything fit would save."""
    X, y = data()
    net, optimizer, schedule = model(), gpunn.Adam(lr=0.05), gpunn.Exponential(0.5)
    history = gpunn.fit(net, X, y, optimizer=optimizer, schedule=schedule, epochs=2,
                        batch_size=5)
    rng = np.random.default_rng(4)
    gpunn.save_checkpoint(path, net, optimizer, schedule, history, epoch=2, rng=rng,
                          order=np.arange(12)[::-1], note="run 1")
    return net, optimizer, history


def test_round_trip_keeps_everything(backend, tmp_path):
    path = tmp_path / "run.ckpt"
    net, optimizer, history = trained(path)
    loaded = gpunn.load_checkpoint(path)
    assert loaded.model.config() == net.config() and loaded.model.backend is backend
    np.testing.assert_array_equal(backend.to_numpy(loaded.model.flat_params),
                                  backend.to_numpy(net.flat_params))
    saved_state, got_state = optimizer.state_dict(), loaded.optimizer.state_dict()
    assert got_state["t"] == saved_state["t"] == 6 and got_state["lr"] == saved_state["lr"]
    for key in ("m", "v"):
        np.testing.assert_array_equal(got_state["state"][key], saved_state["state"][key])
    assert loaded.schedule.config() == {"name": "exponential", "rate": 0.5, "per": "epoch"}
    assert loaded.history == history and loaded.epoch == 2 and loaded.extra == {"note": "run 1"}
    assert loaded.rng().random() == np.random.default_rng(4).random()
    np.testing.assert_array_equal(loaded.order, np.arange(12)[::-1])
    assert os.listdir(tmp_path) == ["run.ckpt"]


def test_a_bare_model_round_trips_and_model_only_loads(backend, tmp_path):
    net = model(dtype="float32")
    gpunn.save_checkpoint(tmp_path / "m.safetensors", net)
    loaded = gpunn.load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.optimizer is loaded.schedule is loaded.history is loaded.rng_state is None
    assert loaded.epoch == 0 and loaded.model.dtype == np.float32
    again = gpunn.load(tmp_path / "m.safetensors")
    X, _ = data()
    np.testing.assert_array_equal(again.predict_proba(X), net.predict_proba(X))


def test_model_save_and_gpunn_load(backend, tmp_path):
    net = model()
    assert net.save(tmp_path / "m.safetensors") == tmp_path / "m.safetensors"
    loaded = gpunn.load(tmp_path / "m.safetensors")
    assert loaded.config() == net.config() and loaded is not net
    np.testing.assert_array_equal(backend.to_numpy(loaded.flat_params),
                                  backend.to_numpy(net.flat_params))
    assert gpunn.load_checkpoint(tmp_path / "m.safetensors").optimizer is None


def test_gpunn_save_writes_what_model_save_writes_and_the_model_imports_no_checkpoint(
        tmp_path):
    """model.save hands itself to gpunn.save: the same bytes, and gpunn.model (below the
    checkpoint package, which builds models) imports nothing from it, even inside functions."""
    import ast
    import inspect

    from gpunn import model as model_module

    net = model()
    net.save(tmp_path / "a.safetensors")
    assert gpunn.save(net, tmp_path / "b.safetensors") == tmp_path / "b.safetensors"
    files = []
    for name in ("a", "b"):  # not the bytes: the order of metadata keys is not fixed
        with safe_open(tmp_path / f"{name}.safetensors", framework="np") as handle:
            files.append((handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}))
    assert files[0][0] == files[1][0] and list(files[0][1]) == list(files[1][1]) == ["params"]
    np.testing.assert_array_equal(files[0][1]["params"], files[1][1]["params"])
    imported = [node.module if isinstance(node, ast.ImportFrom) else alias.name
                for node in ast.walk(ast.parse(inspect.getsource(model_module)))
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names]
    assert imported and not [name for name in imported if "checkpoint" in (name or "")]


@pytest.mark.parametrize("save_on, load_on", [("cpu", "cuda-emulated"), ("cuda-emulated", "cpu")])
def test_checkpoints_move_between_backends(tmp_path, save_on, load_on):
    with use_backend(_make(save_on)):
        net, optimizer, _ = trained(tmp_path / "run.ckpt")
        X, y = data(seed=2)
        expected = net.predict_proba(X)
    with use_backend(_make(load_on)) as target:
        loaded = gpunn.load_checkpoint(tmp_path / "run.ckpt")
        assert loaded.model.backend is target
        np.testing.assert_array_equal(target.to_numpy(loaded.model.flat_params),
                                      np.asarray(net.flat_params))
        np.testing.assert_allclose(loaded.model.predict_proba(X), expected, rtol=1e-12)
        loaded.model.loss_and_grad(X, y)
        loaded.optimizer.step(loaded.model)  # the state arrays live on the new backend
        assert loaded.optimizer.t == optimizer.t + 1


def test_loading_into_a_model_checks_its_architecture(backend, tmp_path):
    path = tmp_path / "run.ckpt"
    net, _, _ = trained(path)
    same = model()
    gpunn.load_checkpoint(path, model=same)
    np.testing.assert_array_equal(backend.to_numpy(same.flat_params),
                                  backend.to_numpy(net.flat_params))
    for other in (model(sizes=(3, 6, 2)), model(dtype="float32")):
        before = backend.to_numpy(other.flat_params).copy()
        with pytest.raises(gpunn.CheckpointError, match="model: expected the saved architecture"):
            gpunn.load_checkpoint(path, model=other)
        np.testing.assert_array_equal(backend.to_numpy(other.flat_params), before)


def test_a_crash_mid_save_keeps_the_previous_file(backend, tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    net, _, _ = trained(path)
    original = path.read_bytes()

    def crashing_writer(file, blob):
        file.write(b"\x10\x00\x00\x00 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(container, "write_file", crashing_writer)
    net.flat_params[...] = 0
    with pytest.raises(OSError, match="disk full"):
        gpunn.save_checkpoint(path, net)
    assert path.read_bytes() == original and os.listdir(tmp_path) == ["run.ckpt"]
    assert np.any(backend.to_numpy(gpunn.load(path).flat_params) != 0)


def entries(path):
    """The file's tensors, and its gpunn header (parsed) under "header"."""
    with safe_open(path, framework="np") as handle:
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
        arrays["header"] = json.loads(handle.metadata()["gpunn"])
    return arrays


def header(arrays):
    return arrays["header"]


def with_header(arrays, **changes):
    return dict(arrays, header=dict(header(arrays), **changes))


def rewrite(path, arrays, fix_checksums=True):
    """Write ``arrays`` (tensors plus "header": a dict, a str, or absent) as a container whose
    checksums match, so the reader's later checks are the ones tested."""
    arrays = dict(arrays)
    head = arrays.pop("header", None)
    if isinstance(head, dict) and fix_checksums:
        head = dict(head, crc32={k: ckpt.crc(v) for k, v in arrays.items()})
    metadata = {}
    if head is not None:
        text = head if isinstance(head, str) else json.dumps(head)
        metadata = {"gpunn": text, "gpunn.crc32": ckpt.text_crc(text)}
    path.write_bytes(save_safetensors(arrays, metadata=metadata))


def with_hyperparameters(arrays, **changes):
    saved = header(arrays)["optimizer"]
    hyper = dict(saved["hyperparameters"], **changes)
    return with_header(arrays, optimizer=dict(saved, hyperparameters=hyper))


def drop(name):
    return lambda a: {k: v for k, v in a.items() if k != name}


BAD_ENTRIES = [
    ("wrong version", lambda a: with_header(a, version=1), "expected gpunn-checkpoint version 2"),
    ("other format", lambda a: with_header(a, format="keras"), "expected format"),
    ("no header", drop("header"), "expected a gpunn checkpoint"),
    ("list header", lambda a: dict(a, header="[1]"), "expected format"),
    ("bad json", lambda a: dict(a, header="{"), "header is not JSON"),
    ("deep json", lambda a: dict(a, header="[" * 5000 + "]" * 5000),
     "header: expected JSON nested at most 64 levels, got 5000"),
    ("deep json in a string", lambda a: dict(a, header='["' + "[" * 5000 + '"]'),
     "expected format"),
    ("many json lists", lambda a: dict(a, header="[" * 100000 + "]" * 100000),
     "header: expected at most 65536 JSON objects and lists, got 100000"),
    ("missing params", drop("params"), r"expected entries \[.*'params'"),
    ("missing state", drop("optimizer.m"), r"expected entries \[.*'optimizer.m'"),
    ("unexpected entry", lambda a: dict(a, surprise=np.zeros(1)), "got .*'surprise'"),
    ("short params", lambda a: dict(a, params=a["params"][:-1]), "entry 'params': expected"),
    ("2-D params", lambda a: dict(a, params=a["params"][:, None]), "entry 'params': expected"),
    ("float32 params", lambda a: dict(a, params=a["params"].astype(np.float32)),
     "entry 'params': expected float64"),
    ("int state", lambda a: dict(a, **{"optimizer.v": a["optimizer.v"].astype(np.int64)}),
     "entry 'optimizer.v': expected float64"),
    ("NaN params", lambda a: dict(a, params=np.where(np.arange(a["params"].size) == 3, np.nan,
                                                     a["params"])),
     "entry 'params': expected finite values, got 1 NaN/inf"),
    ("inf state", lambda a: dict(a, **{"optimizer.v": a["optimizer.v"] + np.inf}),
     "entry 'optimizer.v': expected finite values"),
    ("bad layer", lambda a: with_header(a, model=dict(header(a)["model"], layers=[{"n_in": 0}])),
     "invalid checkpoint content"),
    ("bad layout", lambda a: with_header(a, layout=[["W0", 0, 15]]), "layout: expected"),
    ("huge layer", lambda a: with_header(a, model=dict(header(a)["model"], layers=[
        {"n_in": 3, "n_out": 10**9, "activation": "tanh"}])), "layout: expected"),
    ("bad optimizer", lambda a: with_header(a, optimizer=dict(header(a)["optimizer"],
                                                              name="lion")), "lion"),
    ("optimizer eps", lambda a: with_hyperparameters(a, eps=1e-320), "eps: expected 0 or a value"),
    ("bad rng", lambda a: with_header(a, rng_state={"bit_generator": "os.system"}),
     "rng_state: expected a bit generator"),
    ("bad rng state", lambda a: with_header(a, rng_state={
        "bit_generator": "PCG64", "state": {"state": "x", "inc": 1}, "has_uint32": 0,
        "uinteger": 0}), "rng_state: not a valid PCG64 state"),
    ("bad history", lambda a: with_header(a, history={"epochs": 1}), "history: expected the"),
    ("str batch size", lambda a: with_header(a, history=dict(header(a)["history"],
                                                             batch_size="5")),
     "history.batch_size: expected an integer"),
    ("extra list", lambda a: with_header(a, extra=[1]), "extra: expected a JSON object"),
    ("bad checksum", lambda a: with_header(a, crc32=dict(header(a)["crc32"], params=1)),
     "entry 'params': checksum mismatch"),
]


@pytest.mark.parametrize("change, match", [row[1:] for row in BAD_ENTRIES],
                         ids=[row[0] for row in BAD_ENTRIES])
def test_bad_entries_raise_checkpoint_error(backend, tmp_path, change, match):
    path = tmp_path / "run.ckpt"
    trained(path)
    rewrite(path, change(entries(path)), fix_checksums="checksum mismatch" not in match)
    same = model()
    before = backend.to_numpy(same.flat_params).copy()
    with pytest.raises(gpunn.CheckpointError, match=match) as caught:
        gpunn.load_checkpoint(path, model=same)
    assert str(path) in str(caught.value) and isinstance(caught.value, ValueError)
    np.testing.assert_array_equal(backend.to_numpy(same.flat_params), before)


def test_a_changed_header_without_its_checksum_is_damage(backend, tmp_path):
    path = tmp_path / "run.ckpt"
    trained(path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'\\"epoch\\": 2', b'\\"epoch\\": 3'))
    assert path.read_bytes() != data
    with pytest.raises(gpunn.CheckpointError, match="header: checksum mismatch"):
        gpunn.load_checkpoint(path)


def pickle_bytes(_):
    return pickle.dumps(Payload())


def npy_bytes(_):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def npz_bytes(_):
    buffer = io.BytesIO()
    np.savez(buffer, params=np.zeros(3), payload=np.array([Payload()], dtype=object))
    return buffer.getvalue()


@pytest.mark.parametrize("content, match", [
    (lambda b: b[:len(b) // 2], "not a readable"),
    (lambda b: b[:100], "not a readable"),
    (lambda b: b"", "not a readable"),
    (lambda b: b"hello, not a checkpoint", "not a readable"),
    (lambda b: (2**63).to_bytes(8, "little") + b"{}", "not a readable"),
    (pickle_bytes, "not a readable"),
    (npy_bytes, "not a readable"),
    (npz_bytes, r"this is a \.npz \(zip\) file.*format 1"),
], ids=["half", "100 bytes", "empty", "text", "huge header length", "pickle", "npy", "npz"])
def test_unreadable_files_raise_checkpoint_error(backend, tmp_path, content, match):
    path = tmp_path / "run.ckpt"
    trained(path)
    path.write_bytes(content(path.read_bytes()))
    with pytest.raises(gpunn.CheckpointError, match=match):
        gpunn.load_checkpoint(path)
    assert EXECUTED == []


def test_flipped_bytes_raise_or_change_nothing(backend, tmp_path):
    """A flip the zip CRCs and checks cannot see (e.g. a timestamp) must leave the content
    as saved; every other flip raises CheckpointError. Never silently different numbers."""
    path = tmp_path / "run.ckpt"
    trained(path)
    original, expected = path.read_bytes(), entries(path)
    rng, raised = np.random.default_rng(0), 0
    for position in rng.choice(len(original), size=60, replace=False):
        corrupted = bytearray(original)
        corrupted[position] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(corrupted))
        try:
            gpunn.load_checkpoint(path)
        except gpunn.CheckpointError:
            raised += 1
            continue
        loaded = entries(path)
        assert loaded.keys() == expected.keys(), position
        for name in expected:
            np.testing.assert_array_equal(loaded[name], expected[name], err_msg=str(position))
    assert raised >= 45


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        gpunn.load_checkpoint(tmp_path / "absent.ckpt")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"model": "net"}, TypeError, "model: expected a Sequential or MLP, got str"),
    ({"optimizer": "adam"}, TypeError, "optimizer: expected an Optimizer, got str"),
    ({"history": {}}, TypeError, "history: expected a History, got dict"),
    ({"rng": 3}, TypeError, "rng: expected a numpy.random.Generator, got int"),
    ({"epoch": -1}, ValueError, r"epoch: expected an integer in \[0, 9007199254740992\], got -1"),
    ({"schedule": "polynomial"}, ValueError, "schedule: expected one of"),
    ({"note": object()}, TypeError, "extra: expected JSON-serializable values"),
])
def test_bad_save_arguments_name_the_argument(backend, tmp_path, kwargs, error, match):
    kwargs = {"model": model(), **kwargs}
    with pytest.raises(error, match=match):
        gpunn.save_checkpoint(tmp_path / "run.ckpt", **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("code", [b"U64", b"I64"], ids=["uint64", "int64"])
def test_a_float64_model_file_whose_tensors_claim_another_dtype_is_refused(tmp_path, code):
    """np.dtype(None) == float64: an unknown dtype code must not pass as float64 (the bits
    would load as huge finite numbers, silently)."""
    path = tmp_path / "m.safetensors"
    gpunn.MLP([3, 4, 2], dtype="float64").save(path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"F64"', b'"' + code + b'"'))
    with pytest.raises(gpunn.CheckpointError, match="entry 'params': expected float64"):
        gpunn.load(path)
