"""The checkpoint reader's refusals, message by message, and the files it must keep loading.

Each row edits one part of a checkpoint written by ``fit`` (checksums recomputed, as a hostile
editor would) and states the whole message the reader must give: what was expected and what
came, cut to a bounded length. Written for the mutants of gpunn/checkpoint that survived the
other tests (benchmarks/MUTATION.md): a refusal that names the wrong thing, a value shown
uncut, a check that takes too much or too little.
"""

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save

import gpunn
from gpunn import checkpoint
from gpunn.control import STATUSES

X = np.random.default_rng(0).normal(size=(9, 3))
Y = np.random.default_rng(1).integers(0, 2, size=9)
LONG = "x" * 100  # a value longer than any message shows


def cut(value, limit):
    """How a message shows a long value: its first ``limit`` characters and its length."""
    text = str(value)
    return f"{text[:limit]}... ({len(text)} characters)"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """``(path, header, arrays)`` of a checkpoint that fit wrote after 2 epochs."""
    path = tmp_path_factory.mktemp("reader") / "fit.ckpt"
    model = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=0)
    gpunn.fit(model, X, Y, optimizer="adam", epochs=2, batch_size=4, verbose=0,
              checkpoint_path=path)
    with safe_open(path, framework="np") as handle:
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
        header = json.loads(handle.metadata()["gpunn"])
    return path, header, arrays


def write(path, header, arrays):
    """A container with consistent checksums over ``header`` and ``arrays``."""
    header = dict(header, crc32={k: checkpoint.crc(v) for k, v in arrays.items()})
    text = json.dumps(header)
    path.write_bytes(save(arrays, metadata={"gpunn": text,
                                            "gpunn.crc32": checkpoint.text_crc(text)}))
    return path


def edit(header, part, key, value):
    """A copy of ``header`` with ``header[part][key] = value`` (``key`` None: the part)."""
    header = json.loads(json.dumps(header))
    if key is None:
        header[part] = value
    else:
        header[part][key] = value
    return header


def refusal(path):
    with pytest.raises(gpunn.CheckpointError) as caught:
        gpunn.load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: "):]


STATUS_NAMES = sorted(STATUSES.values())
REFUSED_HEADERS = [
    ("model", "layers", [], "model: expected a non-empty list of layers, got []"),
    ("model", "layers", {"n_in": 3},
     "model: expected a non-empty list of layers, got {'n_in': 3}"),
    ("model", "layers", LONG, f"model: expected a non-empty list of layers, got {cut(LONG, 60)}"),
    ("model", "dtype", 7, "model: expected dtype 'float32' or 'float64', got 7"),
    ("model", "dtype", [LONG],
     f"model: expected dtype 'float32' or 'float64', got {cut([LONG], 60)}"),
    ("model", "seed", -1, "invalid checkpoint content (ValueError: seed: expected an integer in "
                          "[0, inf], got -1)"),
    ("optimizer", "name", LONG,
     f"optimizer: expected a name in {sorted(gpunn.optim.OPTIMIZERS)}, got '{'x' * 60}'"),
    ("history", "epoch", [1.5, 2], "history.epoch: expected a list of integers, got [1.5, 2]"),
    ("history", "epoch", [True, 2], "history.epoch: expected a list of integers, got [True, 2]"),
    ("history", "loss", LONG, f"history.loss: expected a list of numbers, got {cut(LONG, 60)}"),
    ("history", "weight_sum", 0,
     "history.weight_sum: expected None or a positive finite number, got 0"),
    ("history", "weight_sum", LONG,
     f"history.weight_sum: expected None or a positive finite number, got {cut(LONG, 60)}"),
    ("history", "backend", 3, "history.backend: expected a name, got int"),
    ("history", "n_samples", -1,
     "invalid checkpoint content (ValueError: history.n_samples: expected an integer in "
     f"[0, {2 ** 53}], got -1)"),
]


@pytest.mark.parametrize("part, key, value, message", REFUSED_HEADERS,
                         ids=[f"{p}.{k}={str(v)[:12]}" for p, k, v, _ in REFUSED_HEADERS])
def test_an_edited_header_is_refused_with_its_whole_message(fitted, tmp_path, part, key, value,
                                                            message):
    _, header, arrays = fitted
    path = write(tmp_path / "edited.ckpt", edit(header, part, key, value), arrays)
    assert refusal(path) == message


@pytest.mark.parametrize("rows", [1, 40], ids=["short", "long: cut to 300 characters"])
def test_another_layout_is_refused_showing_both(fitted, tmp_path, rows):
    _, header, arrays = fitted
    layout = [["W0", 0, 12]] * rows
    path = write(tmp_path / "edited.ckpt", edit(header, "layout", None, layout), arrays)
    shown = str(layout) if rows == 1 else cut(layout, 300)
    expected = [tuple(r) for r in header["layout"]]
    assert refusal(path) == f"layout: expected {expected} for this architecture, got {shown}"


def test_an_invalid_rng_state_names_numpys_error(fitted, tmp_path):
    _, header, arrays = fitted
    state = dict(header["rng_state"], state={"state": -1, "inc": 1})
    try:  # what NumPy itself says of that state
        np.random.PCG64().state = state
    except Exception as exc:  # noqa: BLE001 - whichever NumPy raises
        numpy_says = f"{type(exc).__name__}: {exc}"
    path = write(tmp_path / "edited.ckpt", edit(header, "rng_state", None, state), arrays)
    assert refusal(path) == f"rng_state: not a valid PCG64 state ({numpy_says})"


def test_entries_of_the_wrong_dtype_are_named(fitted, tmp_path):
    _, header, arrays = fitted
    arrays = dict(arrays, params=arrays["params"].astype(np.float32))
    size = arrays["params"].size
    path = write(tmp_path / "edited.ckpt", header, arrays)
    assert refusal(path) == (f"entry 'params': expected float64 of shape ({size},), got F32 "
                             f"of shape ({size},)")


@pytest.mark.parametrize("present", ["fit.step_totals", "fit.step_status"])
def test_a_mid_epoch_record_needs_both_of_its_entries(fitted, tmp_path, present):
    _, header, arrays = fitted
    steps = {"fit.step_totals": np.array([0.5]), "fit.step_status": np.array([0])}
    arrays = dict(arrays, **{present: steps[present]})
    path = write(tmp_path / "edited.ckpt", header, arrays)
    assert refusal(path) == (f"expected entries {sorted({*arrays, *steps})}, got "
                             f"{sorted(arrays)}")


def test_unknown_step_statuses_are_listed(fitted, tmp_path):
    _, header, arrays = fitted
    arrays = dict(arrays, **{"fit.step_totals": np.array([0.5, 0.25, 1.0]),
                             "fit.step_status": np.array([0, 7, 9])})
    unknown = sorted({0, 7, 9})
    path = write(tmp_path / "edited.ckpt", header, arrays)
    assert refusal(path) == (f"fit.step_status: expected step statuses {STATUS_NAMES}, got "
                             f"{unknown}")


# --- files the reader must keep loading --------------------------------------------------

def test_an_optimizer_saved_before_its_first_step_loads(tmp_path):
    """No state yet (t = 0): the file lists none and loads with none."""
    model = gpunn.MLP([3, 2], seed=1)
    path = gpunn.save_checkpoint(tmp_path / "fresh.ckpt", model, gpunn.Adam(lr=0.01))
    loaded = gpunn.load_checkpoint(path)
    assert loaded.optimizer.t == 0 and loaded.optimizer.state_dict()["state"] == {}
    loaded.optimizer.step(loaded.model)  # and it can start
    assert loaded.optimizer.t == 1


def test_a_fit_with_weights_summing_below_one_saves_a_file_that_resumes(tmp_path):
    """history.weight_sum is any positive sum: small weights are no damage."""
    path, w = tmp_path / "w.ckpt", np.full(9, 0.05)
    first = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=0)
    gpunn.fit(first, X, Y, optimizer="adam", epochs=1, batch_size=4, verbose=0,
              sample_weight=w, checkpoint_path=path)
    assert 0 < gpunn.load_checkpoint(path).history.weight_sum < 1
    resumed = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=5)
    history = gpunn.fit(resumed, X, Y, optimizer="adam", epochs=2, batch_size=4, verbose=0,
                        sample_weight=w, resume_from=path)
    assert history.epoch == [1, 2]


def test_read_checkpoint_checks_the_architecture_of_like(fitted):
    path, _, _ = fitted
    other = gpunn.MLP([3, 5, 2], output="softmax", dtype="float64")
    with pytest.raises(gpunn.CheckpointError, match=r": model: expected the saved architecture"):
        checkpoint.read_checkpoint(path, like=other)
    same = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=9)
    assert checkpoint.read_checkpoint(path, like=same).epoch == 2


@pytest.mark.parametrize("part, value, message", [
    ("format", LONG, f"expected format 'gpunn-checkpoint', got '{cut(LONG, 60)}'"),
    ("version", 3, "expected gpunn-checkpoint version 2, got version '3'"),
    ("version", LONG, f"expected gpunn-checkpoint version 2, got version '{cut(LONG, 60)}'"),
], ids=["format", "version", "long version"])
def test_another_format_or_version_is_named(fitted, tmp_path, part, value, message):
    _, header, arrays = fitted
    path = write(tmp_path / "edited.ckpt", edit(header, part, None, value), arrays)
    assert refusal(path) == message


def test_a_header_without_epoch_and_extra_loads_with_their_defaults(fitted, tmp_path):
    _, header, arrays = fitted
    header = {k: v for k, v in header.items() if k not in ("epoch", "extra")}
    loaded = gpunn.load_checkpoint(write(tmp_path / "old.ckpt", header, arrays))
    assert loaded.epoch == 0 and loaded.extra == {}


def test_a_bf16_model_loads_with_its_precision(tmp_path):
    model = gpunn.MLP([3, 4, 2], output="softmax", precision="bf16", seed=0)
    loaded = gpunn.load_checkpoint(model.save(tmp_path / "bf16.ckpt")).model
    assert loaded.config()["precision"] == "bf16" and loaded.config() == model.config()


def test_a_config_the_model_refuses_is_a_checkpoint_error(fitted, tmp_path):
    """bf16 GEMMs read float32 operands: a float64 model of precision bf16 cannot be built."""
    _, header, arrays = fitted
    path = write(tmp_path / "edited.ckpt", edit(header, "model", "precision", "bf16"), arrays)
    with pytest.raises(ValueError) as built:
        gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", precision="bf16")
    assert refusal(path) == f"model: {built.value}"


def test_a_long_content_error_is_cut_to_300_characters(fitted, tmp_path):
    _, header, arrays = fitted
    layers = json.loads(json.dumps(header["model"]["layers"]))
    layers[0]["z" * 400] = 1
    with pytest.raises(TypeError) as built:
        gpunn.Dense(**layers[0])
    path = write(tmp_path / "edited.ckpt", edit(header, "model", "layers", layers), arrays)
    assert refusal(path) == f"invalid checkpoint content (TypeError: {str(built.value)[:300]})"


def test_a_path_of_another_type_is_a_type_error():
    with pytest.raises(TypeError) as caught:
        gpunn.load_checkpoint(3)
    assert str(caught.value) == "path: expected a file path, got int"


# --- the container: a file's claims bounded before it is parsed, at the exact bound -------

def test_a_header_of_exactly_the_bounds_loads_and_one_past_them_is_refused(fitted,
                                                                             monkeypatch):
    path, header, _ = fitted
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    text = json.dumps(header)
    containers = text.count("{") + text.count("[")
    depth = 4  # {"model": {"layers": [{"n_in": ...}]}} and {"rng_state": {"state": {...}}}
    bounds = {"MAX_HEADER_BYTES": length, "MAX_CONTAINERS": containers, "MAX_DEPTH": depth}
    for name, bound in bounds.items():
        monkeypatch.setattr(checkpoint.container, name, bound)
    assert gpunn.load_checkpoint(path).epoch == 2
    for name, bound in bounds.items():
        monkeypatch.setattr(checkpoint.container, name, bound - 1)
        with pytest.raises(gpunn.CheckpointError, match=rf"header: expected (JSON nested )?at "
                                                        rf"most {bound - 1} "):
            gpunn.load_checkpoint(path)
        monkeypatch.setattr(checkpoint.container, name, bound)


def test_a_file_of_its_length_field_alone_is_named_truncated(tmp_path):
    path = tmp_path / "eight.ckpt"
    path.write_bytes((100).to_bytes(8, "little"))
    assert refusal(path) == ("not a readable gpunn checkpoint (a safetensors file; header: "
                             "expected 100 bytes (as its length field says), got 0 (the file is "
                             "truncated))")


def test_a_damaged_header_is_named(fitted, tmp_path):
    path, _, arrays = fitted
    with safe_open(path, framework="np") as handle:
        metadata = handle.metadata()
    metadata["gpunn"] = metadata["gpunn"].replace('"epoch": 2', '"epoch": 1')
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(save(arrays, metadata=metadata))
    assert refusal(damaged) == "header: checksum mismatch (the file is damaged)"


def test_a_safetensors_file_of_another_program_lists_some_of_its_metadata(tmp_path):
    path = tmp_path / "other.safetensors"
    keys = [f"{i}{'k' * 50}" for i in range(10)]
    path.write_bytes(save({"w": np.zeros(2)}, metadata=dict.fromkeys(keys, "v")))
    shown = sorted(k[:40] for k in keys)[:8]
    assert refusal(path) == (f"expected a gpunn checkpoint (safetensors metadata 'gpunn'), got "
                             f"metadata keys {shown}")


def test_a_history_json_cannot_store_is_refused_by_name_before_writing(tmp_path):
    history = gpunn.History()
    history.loss.append(np.float32(1.0))  # a NumPy scalar appended by hand
    with pytest.raises(TypeError) as caught:
        gpunn.save_checkpoint(tmp_path / "h.ckpt", gpunn.MLP([2, 1]), history=history)
    assert str(caught.value) == ("history: expected JSON-serializable values, got Object of "
                                 "type float32 is not JSON serializable")
    assert not (tmp_path / "h.ckpt").exists()


def _reference_structure(text):
    """Containers opened and nesting depth by a character-at-a-time JSON scanner (strings
    and escapes skipped)."""
    depth = deepest = opened = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            opened += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return opened, deepest


def test_the_nesting_bound_skips_strings_as_json_does():
    """Brackets, quotes and runs of backslashes inside strings; against a scanner and
    against the depth of the structure json.dumps was given."""
    rng = np.random.default_rng(0)
    pieces = ["[", "]", "{", "}", '"', "\\", "\\\\", '\\"', "a", "é"]

    def value(depth):
        if depth == 0 or rng.random() < 0.3:
            return "".join(rng.choice(pieces, rng.integers(0, 12)))
        if rng.random() < 0.5:
            return [value(depth - 1) for _ in range(rng.integers(0, 3))]
        return {"".join(rng.choice(pieces, 3)): value(depth - 1) for _ in range(2)}

    def count(obj):
        if isinstance(obj, list):
            return 1 + sum(map(count, obj))
        if isinstance(obj, dict):
            return 1 + sum(map(count, obj.values()))
        return 0

    def nesting(obj):
        if isinstance(obj, list):
            return 1 + max(map(nesting, obj), default=0)
        if isinstance(obj, dict):
            return 1 + max(map(nesting, obj.values()), default=0)
        return 0

    for _ in range(300):
        obj = value(6)
        for text in (json.dumps(obj), json.dumps(obj, ensure_ascii=False)):
            assert checkpoint.container._structure(text) == _reference_structure(text) == (
                count(obj), nesting(obj))


def test_a_long_string_in_a_header_costs_bytes_per_character_not_hundreds():
    """The second review's case: a valid 15 MB string in ``extra`` peaked at about 2 GB (the
    string-skipping regular expression); the nesting check now costs the text's bytes and a
    block's worth of arrays, escapes or not."""
    import tracemalloc

    for text in ('{"a": "' + "y" * 8_000_000 + '"}', '{"a": "' + '\\"' * 4_000_000 + '"}'):
        tracemalloc.start()
        assert checkpoint.container._structure(text) == (1, 1)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # The text's bytes and one block's arrays (was about 560 bytes per character)
        assert peak < 1.5 * len(text) + 16 * (1 << 20), peak


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64])
def test_the_nesting_bound_carries_strings_and_escapes_across_blocks(block):
    """Block edges inside strings, inside runs of backslashes and between nested brackets."""
    rng = np.random.default_rng(block)
    for _ in range(200):
        obj = [{"k\\\\\\": ["\\" * int(rng.integers(0, 5)) + '"]{' * int(rng.integers(0, 3)),
                          [[]] * int(rng.integers(0, 3))]}] * int(rng.integers(1, 3))
        text = json.dumps(obj)
        assert checkpoint.container._structure(text, block) == _reference_structure(text)


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_negative_squared_gradient_state_is_refused(tmp_path, name):
    """Adam's and RMSprop's ``v`` is a mean of squares: a crafted negative one (which the
    update would take the root of) is not a saved state. Momentum's ``v`` may be negative."""
    model = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=0)
    path = tmp_path / "fit.ckpt"
    gpunn.fit(model, X, Y, optimizer=name, epochs=1, batch_size=4, verbose=0,
              checkpoint_path=path)
    with safe_open(path, framework="np") as handle:
        arrays = {key: handle.get_tensor(key) for key in handle.keys()}
        header = json.loads(handle.metadata()["gpunn"])
    assert gpunn.load_checkpoint(write(tmp_path / "same.ckpt", header, arrays)).optimizer
    arrays["optimizer.v"] = arrays["optimizer.v"].copy()
    arrays["optimizer.v"][[1, 5]] = -1e-30
    assert refusal(write(tmp_path / "negative.ckpt", header, arrays)).endswith(
        "state_dict['state']['v']: expected values >= 0 (a running mean of squared "
        "gradients), got 2 negative)")
    arrays["optimizer.v"][[1, 5]] = -0.0  # the sign bit of zero is a zero
    assert gpunn.load_checkpoint(write(tmp_path / "zero.ckpt", header, arrays)).optimizer


def test_momentum_state_may_be_negative(tmp_path):
    model = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=0)
    optimizer = gpunn.optim.get_optimizer("momentum", 0.1)
    gpunn.fit(model, X, Y, optimizer=optimizer, epochs=1, batch_size=4, verbose=0)
    state = optimizer.state_dict()
    assert (np.asarray(state["state"]["v"]) < 0).any()
    optimizer.load_state_dict(state)


@pytest.mark.parametrize("name, value", [("m", np.nan), ("v", np.inf), ("v", -np.inf)])
def test_load_state_dict_refuses_non_finite_state(name, value):
    """The optimizer's own check, not only the checkpoint reader's: a state dict passed by
    hand with NaN/inf state is refused naming the entry."""
    model = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=0)
    optimizer = gpunn.optim.get_optimizer("adam", 0.01)
    gpunn.fit(model, X, Y, optimizer=optimizer, epochs=1, batch_size=4, verbose=0)
    state = optimizer.state_dict()
    state["state"][name] = np.array(state["state"][name], copy=True)
    state["state"][name][2] = value
    with pytest.raises(ValueError, match=rf"state_dict\['state'\]\['{name}'\]: expected finite "
                                         r"values, got 1 NaN/inf"):
        gpunn.optim.get_optimizer("adam", 0.01).load_state_dict(state)
