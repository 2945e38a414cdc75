"""Written for the mutants of gpunn/checkpoint that survived the whole mutation run
(benchmarks/MUTATION.md): each refusal's whole message, the files that must keep loading, and
the bounds at their edges. Headers are edited as a hostile editor would (checksums recomputed,
``test_checkpoint_reader.write``)."""

import copy
import json
import os
import threading

import numpy as np
import pytest
from safetensors.numpy import save
from test_checkpoint_reader import LONG, X, Y, cut, refusal, write
from test_checkpoint_reader import edit as reader_edit
from test_checkpoint_reader import fitted as fitted  # noqa: F401 - the module's fixture
from test_resume_checks import Interrupt

import gpunn
from gpunn import checkpoint
from gpunn.checkpoint import format

BIT_GENERATORS = "['PCG64', 'PCG64DXSM', 'Philox', 'SFC64', 'MT19937']"
HISTORY_FIELDS = ("['backend', 'batch_size', 'epoch', 'loss', 'lr', 'n_samples', "
                  "'samples_per_second', 'seconds', 'skipped_steps', 'step_loss', "
                  "'val_accuracy', 'val_loss', 'weight_sum']")


def _read(path):
    """``(header, arrays)`` of a checkpoint file, as a hostile editor reads them."""
    from safetensors import safe_open

    with safe_open(path, framework="np") as handle:
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
        return json.loads(handle.metadata()["gpunn"]), arrays


def _pop(part, key):
    def edit(header):
        header[part].pop(key)
    return edit


def _put(part, key, value):
    def edit(header):
        header.update(reader_edit(header, part, key, value))
    return edit


def _second_n_in(header):
    header["model"]["layers"][1]["n_in"] = 5


EDITS = [
    ("model without seed", _pop("model", "seed"),
     "model: expected a config with keys ['dtype', 'layers', 'output', 'seed'], got "
     "['dtype', 'layers', 'output', 'precision']"),
    ("model a list", _put("model", None, ["a"]),
     "model: expected a config with keys ['dtype', 'layers', 'output', 'seed'], got ['a']"),
    ("a layer not a dict", _put("model", "layers", [5, {}]),
     "model: layers[0]: expected a dict, got int"),
    ("layer 1 takes other inputs", _second_n_in, "model: layers[1].n_in: expected 4, got 5"),
    ("optimizer a list", _put("optimizer", None, [1]),
     "optimizer: expected a name in ['adam', 'adamw', 'momentum', 'rmsprop', 'sgd'], got "
     "'list'"),
    ("optimizer without state names", _pop("optimizer", "state_names"),
     "optimizer: expected state ['m', 'v'] after 6 steps, got NoneType"),
    ("optimizer with one state of two", _put("optimizer", "state_names", ["m"]),
     "optimizer: expected state ['m', 'v'] after 6 steps, got ['m']"),
    ("hyperparameters not a dict", _put("optimizer", "hyperparameters", 3),
     "invalid checkpoint content (TypeError: state_dict['hyperparameters']: expected a dict, "
     "got int)"),
    ("rng a long name", _put("rng_state", "bit_generator", LONG),
     f"rng_state: expected a bit generator in {BIT_GENERATORS}, got '{cut(LONG, 60)}'"),
    ("rng a list", _put("rng_state", None, [1]),
     f"rng_state: expected a bit generator in {BIT_GENERATORS}, got 'None'"),
    ("rng uinteger past 32 bits", _put("rng_state", "uinteger", 2 ** 40),
     "rng_state: not a valid PCG64 state (OverflowError: value too large to convert to "
     "uint32_t)"),
    ("schedule a list", _put("schedule", None, [1]), "schedule: expected a config dict, got list"),
    ("schedule unknown", _put("schedule", None, {"name": "nope"}),
     "schedule: schedule: expected one of ['constant', 'cosine', 'exponential', 'inverse_sqrt', "
     "'inverse_time', 'one_cycle', 'staircase', 'warmup'], got 'nope'"),
    ("extra a list", _put("extra", None, [1]), "extra: expected a JSON object, got list"),
    ("history a list", _put("history", None, [1]),
     f"history: expected the fields {HISTORY_FIELDS}, got ['1']"),
    ("weight_sum inf", _put("history", "weight_sum", float("inf")),
     "history.weight_sum: expected None or a positive finite number, got inf"),
    ("no layout", lambda header: header.pop("layout"),
     "header: expected a 'layout' entry, got none"),
]


@pytest.mark.parametrize("edit, message", [e[1:] for e in EDITS], ids=[e[0] for e in EDITS])
def test_an_edited_part_is_refused_with_its_whole_message(fitted, tmp_path, edit, message):
    _, header, arrays = fitted
    header = copy.deepcopy(header)
    edit(header)
    assert refusal(write(tmp_path / "edited.ckpt", header, arrays)) == message


def test_a_model_saved_without_precision_loads_as_fp32(fitted, tmp_path):
    """Files from before bf16 have no "precision" in their config: fp32."""
    _, header, arrays = fitted
    header = copy.deepcopy(header)
    header["model"].pop("precision")
    loaded = gpunn.load_checkpoint(write(tmp_path / "old.ckpt", header, arrays))
    assert loaded.model.precision == "fp32"
    assert loaded.optimizer.base_lr == header["optimizer"]["base_lr"]


def test_the_optimizer_keeps_its_base_rate_apart_from_its_rate(fitted, tmp_path):
    """A scheduled run's rate differs from its base rate: both come back as saved."""
    _, header, arrays = fitted
    header = copy.deepcopy(header)
    header["optimizer"].update(lr=0.25, base_lr=0.5)
    loaded = gpunn.load_checkpoint(write(tmp_path / "rates.ckpt", header, arrays))
    assert (loaded.optimizer.lr, loaded.optimizer.base_lr) == (0.25, 0.5)


def test_a_header_that_is_not_an_object_names_its_type(fitted, tmp_path):
    _, _, arrays = fitted
    text = json.dumps([1, 2])
    path = tmp_path / "list.ckpt"
    path.write_bytes(save(arrays, metadata={"gpunn": text,
                                            "gpunn.crc32": checkpoint.text_crc(text)}))
    assert refusal(path) == "expected format 'gpunn-checkpoint', got 'list'"


def test_checksums_of_other_entries_are_listed(fitted, tmp_path):
    _, header, arrays = fitted
    header = dict(header, crc32={"params": 1})
    text = json.dumps(header)
    path = tmp_path / "crc.ckpt"
    path.write_bytes(save(arrays, metadata={"gpunn": text,
                                            "gpunn.crc32": checkpoint.text_crc(text)}))
    assert refusal(path) == ("crc32: expected checksums of ['fit.order', 'optimizer.m', "
                             "'optimizer.v', 'params'], got ['params']")


@pytest.mark.parametrize("at", [0, 5, -1])
def test_a_nan_anywhere_in_the_parameters_is_refused(fitted, tmp_path, at):
    """The finiteness check reads the arrays in chunks: their first element too."""
    _, header, arrays = fitted
    arrays = dict(arrays, params=arrays["params"].copy())
    arrays["params"][at] = np.nan
    assert refusal(write(tmp_path / "nan.ckpt", header, arrays)) == \
        "entry 'params': expected finite values, got 1 NaN/inf"


def test_a_mid_epoch_file_with_a_skipped_step_loads(tmp_path):
    """A step whose loss was not finite has a NaN total: the one float entry that may."""
    model = gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=0)
    status = np.array([gpunn.control.STEP_APPLIED, gpunn.control.STEP_NONFINITE])
    path = checkpoint.save_checkpoint(tmp_path / "mid.ckpt", model, epoch=0,
                                      steps=([1.5, np.nan], status))
    loaded = checkpoint.read_checkpoint(path)
    np.testing.assert_array_equal(loaded.steps[0], [1.5, np.nan])
    assert loaded.steps[1].dtype == np.int64 and loaded.steps[0].dtype == np.float64


def test_another_architecture_of_like_is_shown_whole(fitted):
    path, _, _ = fitted
    other = gpunn.MLP([3, 5, 2], output="softmax", dtype="float64")
    with pytest.raises(gpunn.CheckpointError) as caught:
        checkpoint.read_checkpoint(path, like=other)
    def architecture(hidden):
        return (f"{{'layers': [{{'n_in': 3, 'n_out': {hidden}, 'activation': 'relu', 'init': "
                f"'glorot_uniform'}}, {{'n_in': {hidden}, 'n_out': 2, 'activation': 'identity', "
                f"'init': 'glorot_uniform'}}], 'output': 'softmax', 'dtype': 'float64', "
                f"'precision': 'fp32'}}")

    assert str(caught.value) == (f"{path}: model: expected the saved architecture "
                                 f"{architecture(4)}, got {architecture(5)}")


def test_like_of_another_type_is_a_type_error_naming_it(fitted):
    path, _, _ = fitted
    with pytest.raises(TypeError) as caught:
        checkpoint.read_checkpoint(path, like="model")
    assert str(caught.value) == "model: expected a Sequential or MLP, got str"


@pytest.mark.parametrize("name, value, message", [
    ("model", None, "model: expected a Sequential or MLP, got NoneType"),
    ("optimizer", "adam", "optimizer: expected an Optimizer, got str"),
])
def test_save_checkpoint_names_an_argument_of_another_type(tmp_path, name, value, message):
    model = gpunn.MLP([3, 2], output="softmax", seed=0)
    kwargs = {"model": model, name: value}
    with pytest.raises(TypeError) as caught:
        checkpoint.save_checkpoint(tmp_path / "x.ckpt", **kwargs)
    assert str(caught.value) == message
    assert not (tmp_path / "x.ckpt").exists()


def test_a_generator_state_with_arrays_is_stored_and_another_type_named(tmp_path):
    """MT19937's state holds an array (stored as a list); a non-Generator is a TypeError."""
    model = gpunn.MLP([3, 2], output="softmax", seed=0)
    rng = np.random.Generator(np.random.MT19937(0))
    path = checkpoint.save_checkpoint(tmp_path / "mt.ckpt", model, rng=rng)
    state = checkpoint.read_checkpoint(path).rng_state
    assert state["state"]["key"] == rng.bit_generator.state["state"]["key"].tolist()
    with pytest.raises(TypeError) as caught:
        checkpoint.save_checkpoint(tmp_path / "o.ckpt", model, rng="not a generator")
    assert str(caught.value) == "rng: expected a numpy.random.Generator, got str"


def test_loading_into_a_model_another_thread_trains_names_load_checkpoint(fitted):
    path, _, _ = fitted
    model = gpunn.load_checkpoint(path).model
    started, release = threading.Event(), threading.Event()

    class Hold(gpunn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            started.set()
            release.wait(30)

    worker = threading.Thread(target=gpunn.fit, args=(model, X, Y), kwargs=dict(
        epochs=1, batch_size=4, verbose=0, callbacks=[Hold()]))
    worker.start()
    try:
        assert started.wait(30)
        with pytest.raises(RuntimeError, match=r"^load_checkpoint: this model is in use "):
            gpunn.load_checkpoint(path, model=model)
    finally:
        release.set()
        worker.join(30)


@pytest.mark.parametrize("text, shown", [("x" * 60, "x" * 60), ("x" * 61, cut("x" * 61, 60))])
def test_short_cuts_a_value_only_past_its_limit(text, shown):
    assert format.short(text, 60) == shown


def test_short_list_shows_eight_names_and_counts_the_rest():
    eight = [f"n{i}" for i in range(8)]
    assert format.short_list(eight) == str(sorted(eight))
    nine = eight + ["n8"]
    assert format.short_list(nine) == f"{sorted(nine)[:8]} and 1 more (9 in all)"
    assert format.short_list(7) == "int"
    assert format.short_list(["y" * 41]) == str([cut("y" * 41, 40)])
    assert format.short_list([2, "a", 1]) == "['1', '2', 'a']"  # mixed kinds: sorted as text


def test_an_npz_and_a_tiny_file_are_named(tmp_path):
    np.savez(tmp_path / "old.npz", a=np.zeros(2))
    assert refusal(tmp_path / "old.npz") == (
        "this is a .npz (zip) file, e.g. a checkpoint of gpunn 0.1's format 1; this version "
        "reads and writes safetensors checkpoints (format 2) only")
    (tmp_path / "tiny.ckpt").write_bytes(b"\x01\x02\x03")
    assert refusal(tmp_path / "tiny.ckpt") == (
        "not a readable gpunn checkpoint (a safetensors file; expected at least 8 bytes, got 3)")


def test_a_header_shorter_than_its_length_field_names_both(fitted, tmp_path):
    path, _, _ = fitted
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    cut_file = tmp_path / "cut.ckpt"
    cut_file.write_bytes(data[:8 + length - 1])
    assert refusal(cut_file) == (f"not a readable gpunn checkpoint (a safetensors file; header: "
                                 f"expected {length} bytes (as its length field says), got "
                                 f"{length - 1} (the file is truncated))")


def test_a_header_that_is_not_json_names_the_error(fitted, tmp_path):
    _, _, arrays = fitted
    text = "{not json"
    path = tmp_path / "bad.ckpt"
    path.write_bytes(save(arrays, metadata={"gpunn": text,
                                            "gpunn.crc32": checkpoint.text_crc(text)}))
    assert refusal(path) == "header is not JSON (JSONDecodeError)"


@pytest.mark.skipif(not hasattr(os, "SEEK_HOLE"), reason="no SEEK_HOLE on this system")
def test_a_sparse_file_names_its_first_hole(fitted, tmp_path):
    path, _, _ = fitted
    data = path.read_bytes()
    sparse = tmp_path / "sparse.ckpt"
    with open(sparse, "wb") as file:
        file.write(data)
        file.seek(len(data) + (1 << 20))
        file.write(b"\0")
    size = sparse.stat().st_size
    hole = os.lseek(os.open(sparse, os.O_RDONLY), 0, os.SEEK_HOLE)
    if hole >= size:
        pytest.skip("this file system stores no holes")
    assert refusal(sparse) == (f"the file is sparse (a hole at byte {hole} of {size}): expected "
                               "every byte stored; copy it without holes (cp --sparse=never)")


# --- fit's checkpoints and resume (gpunn/checkpoint/resume.py) --------------------------------

def _fit(model, epochs, **kwargs):
    """9 rows in batches of 4 (3 steps an epoch), Adam, seeded."""
    return gpunn.fit(model, X, Y, optimizer="adam", lr=0.05, epochs=epochs, batch_size=4,
                     seed=3, verbose=0, record_steps=True, **kwargs)


def _model(hidden=4, seed=0, backend=None):
    with gpunn.use_backend(backend or gpunn.get_backend()):
        return gpunn.MLP([3, hidden, 2], output="softmax", dtype="float64", seed=seed)


def _mid_epoch(tmp_path, steps):
    """The checkpoint of a run stopped (Ctrl-C) with ``steps`` steps of epoch 2 done (each
    step and epoch saved; the callback of batch ``steps`` runs before its save)."""
    path = tmp_path / "mid.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _fit(_model(), 3, checkpoint_path=path, checkpoint_steps=1, checkpoint_every=1,
             callbacks=[Interrupt(2, steps)])
    saved = checkpoint.read_checkpoint(path)
    assert saved.epoch == 1 and len(saved.steps[0]) == steps
    return path


def test_a_checkpoint_of_another_architecture_is_refused_before_the_model_changes(tmp_path):
    path = tmp_path / "run.ckpt"
    _fit(_model(), 1, checkpoint_path=path)
    other = _model(hidden=5)
    before = other.params.host().copy()
    with pytest.raises(gpunn.CheckpointError, match=r": model: expected the saved architecture"):
        _fit(other, 2, resume_from=path)
    np.testing.assert_array_equal(other.params.host(), before)


@pytest.mark.parametrize("steps", [1, 2])
def test_a_mid_epoch_checkpoint_resumes_bit_for_bit(tmp_path, steps):
    """One step of an epoch done is the least a mid-epoch file holds: it resumes too."""
    straight = _model()
    expected = _fit(straight, 3)
    path = _mid_epoch(tmp_path, steps)
    resumed = _model(seed=7)
    history = _fit(resumed, 3, resume_from=path)
    np.testing.assert_array_equal(resumed.params.host(), straight.params.host())
    assert history.step_loss == expected.step_loss
    assert history.backend == expected.backend == gpunn.get_backend().name


def test_a_mid_epoch_checkpoint_needs_the_epoch_it_is_in(tmp_path):
    path = _mid_epoch(tmp_path, 1)
    with pytest.raises(ValueError) as caught:
        _fit(_model(), 1, resume_from=path)
    assert str(caught.value) == (f"epochs: expected at least 2 ({path} has done 1 epochs and "
                                 f"is in the next; epochs counts them), got 1")


def _resume_refusal(path, change):
    """The CheckpointError of resuming from ``path`` after ``change(header, arrays)``."""
    header, arrays = _read(path)
    change(header, arrays)
    write(path, header, arrays)
    with pytest.raises(gpunn.CheckpointError) as caught:
        _fit(_model(), 3, resume_from=path)
    return str(caught.value)


def test_a_mid_epoch_record_of_no_steps_is_refused(tmp_path):
    """A crafted file whose step records are empty: an epoch's end is not written so."""
    def no_steps(header, arrays):
        for name in ("fit.step_totals", "fit.step_status"):
            arrays[name] = arrays[name][:0]

    path = _mid_epoch(tmp_path, 1)
    assert _resume_refusal(path, no_steps) == (
        f"{path}: fit.step_totals: expected between 1 and 2 steps done of an epoch of 3, got 0")


def test_an_empty_loss_list_is_refused_where_validation_lists_may_be_empty(tmp_path):
    def no_losses(header, arrays):
        assert header["history"]["val_loss"] == []  # no validation: empty, and it resumes
        header["history"]["loss"] = []

    path = tmp_path / "run.ckpt"
    _fit(_model(), 2, checkpoint_path=path)
    assert _resume_refusal(path, no_losses) == (
        f"{path}: history.loss: expected 2 entries (one per epoch), got 0")


def test_resume_on_the_emulated_device_continues_bit_for_bit(tmp_path):
    """The CUDA backend's launch code (emulated) resumes as the CPU does."""
    from host_build import emulated_backend

    backend = emulated_backend()
    straight = _model(backend=backend)
    with gpunn.use_backend(backend):
        _fit(straight, 2)
        path = tmp_path / "run.ckpt"
        _fit(_model(backend=backend), 1, checkpoint_path=path)
        resumed = _model(seed=7, backend=backend)
        _fit(resumed, 2, resume_from=path)
    np.testing.assert_array_equal(resumed.params.host(), straight.params.host())


def test_checkpointing_checks_the_path_by_its_argument_name(tmp_path):
    from gpunn.checkpoint.resume import check_checkpointing

    with pytest.raises(ValueError, match=r"^checkpoint_path: "):
        check_checkpointing(None, tmp_path, 3)  # a folder: checked now, the default writer


def test_the_recorded_steps_a_checkpoint_holds_are_bounded_at_half_the_header():
    from gpunn.checkpoint.container import MAX_HEADER_BYTES
    from gpunn.checkpoint.resume import _NUMBER_BYTES, check_checkpointing

    epochs = 7
    most = MAX_HEADER_BYTES // 2 // _NUMBER_BYTES - 8 * epochs  # the largest that fits
    assert check_checkpointing(None, None, epochs, most) == (None, None)
    assert check_checkpointing(2, "run.ckpt", epochs, most, writer=False) == (2, "run.ckpt")
    with pytest.raises(ValueError) as caught:
        check_checkpointing(None, "run.ckpt", epochs, most + 1, writer=False)
    assert str(caught.value) == (
        f"record_steps: expected at most about {MAX_HEADER_BYTES // 2 // _NUMBER_BYTES} "
        f"recorded steps with checkpoint_path (their losses go into the checkpoint's header), "
        f"got {most + 1} in {epochs} epochs; record fewer (record_steps=False) or checkpoint "
        f"without them")


def test_a_float32_model_refuses_an_optimizer_constant_float32_cannot_hold(tmp_path):
    """eps = 1e-40 is a normal float64 but a subnormal float32: checked in the model's dtype."""
    model = gpunn.MLP([3, 4, 2], output="softmax", dtype="float32", seed=0)
    path = tmp_path / "f32.ckpt"
    gpunn.fit(model, X.astype(np.float32), Y, optimizer="adam", epochs=1, batch_size=4,
              verbose=0, checkpoint_path=path)
    header, arrays = _read(path)
    header["optimizer"]["hyperparameters"]["eps"] = 1e-40
    assert refusal(write(tmp_path / "eps.ckpt", header, arrays)) == (
        "invalid checkpoint content (ValueError: eps: expected 0 or a value in [1.175e-38, "
        "3.403e+38] (normal float32 numbers, the precision of the model), got 1e-40)")


def test_a_file_of_a_header_and_no_tensors_lists_the_missing_entries(fitted, tmp_path):
    """Its size is exactly 8 + the header's length: not truncated, but without entries (the
    row order is expected only where the file holds one)."""
    _, header, _ = fitted
    text = json.dumps(header)
    path = tmp_path / "header-only.ckpt"
    path.write_bytes(save({}, metadata={"gpunn": text, "gpunn.crc32": checkpoint.text_crc(text)}))
    assert refusal(path) == "expected entries ['optimizer.m', 'optimizer.v', 'params'], got []"


@pytest.mark.skipif(not hasattr(os, "SEEK_HOLE"), reason="no SEEK_HOLE on this system")
def test_a_file_that_starts_with_a_hole_names_byte_0(tmp_path):
    path = tmp_path / "hole.ckpt"
    with open(path, "wb") as file:
        file.seek(8192)
        file.write(b"x" * 10000)
    if os.lseek(os.open(path, os.O_RDONLY), 0, os.SEEK_HOLE) != 0:
        pytest.skip("this file system stores no holes")
    assert refusal(path) == ("the file is sparse (a hole at byte 0 of 18192): expected every "
                             "byte stored; copy it without holes (cp --sparse=never)")


def test_a_streamed_fit_saves_its_int32_row_order_as_int64(tmp_path):
    """Streaming keeps the order as int32 (4 bytes a row); the file holds int64."""
    np.save(tmp_path / "X.npy", X)
    path = tmp_path / "run.ckpt"
    gpunn.fit(_model(), tmp_path / "X.npy", Y, epochs=1, batch_size=4, verbose=0,
              chunk_rows=24, checkpoint_path=path)
    order = checkpoint.read_checkpoint(path).order
    assert order.dtype == np.int64 and sorted(order) == list(range(9))


@pytest.mark.parametrize("per_epoch", [0, 1, 8], ids=["no steps", "one a epoch", "eight"])
def test_a_run_too_long_for_its_checkpoint_names_epochs_not_record_steps(per_epoch):
    """Without recorded steps (or with no more than the 8 numbers an epoch's history adds)
    the epochs fill the header: the refusal names epochs, not record_steps."""
    from gpunn.checkpoint.container import MAX_HEADER_BYTES
    from gpunn.checkpoint.resume import _NUMBER_BYTES, check_checkpointing

    most = MAX_HEADER_BYTES // 2 // (8 * _NUMBER_BYTES)
    assert check_checkpointing(None, "run.ckpt", most, 0, writer=False) == (most, "run.ckpt")
    with pytest.raises(ValueError) as caught:
        check_checkpointing(None, "run.ckpt", most + 1, per_epoch * (most + 1), writer=False)
    assert str(caught.value) == (
        f"epochs: expected at most about {most} epochs with checkpoint_path (each epoch's "
        f"history goes into the checkpoint's header), got {most + 1}; checkpoint a shorter "
        "run, or none")
