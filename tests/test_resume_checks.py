"""What ``fit(resume_from=...)`` and ``fit(checkpoint_path=...)`` refuse, message by message,
and the mid-epoch checkpoint (``checkpoint_steps``) of an in-memory fit.

Written for the mutants of gpunn/checkpoint/resume.py that survived the other tests
(benchmarks/MUTATION.md): each refusal's whole message, a mid-epoch record one step too long,
and a mid-epoch save that loses its steps.
"""

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save

import gpunn
from gpunn import checkpoint

X = np.random.default_rng(0).normal(size=(9, 3))
Y = np.random.default_rng(1).integers(0, 2, size=9)
SETTINGS = {"optimizer": "adam", "batch_size": 4, "verbose": 0, "seed": 2}  # 3 steps an epoch


def classifier(seed=0, **kwargs):
    return gpunn.MLP([3, 4, 2], output="softmax", dtype="float64", seed=seed, **kwargs)


class Interrupt(gpunn.callbacks.Callback):
    """Ctrl-C after step ``step`` (from 0) of epoch ``epoch``."""

    def __init__(self, epoch, step):
        self.at, self.epoch = (epoch, step), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt


def rewritten(path, header=None, arrays=None):
    """``path`` rewritten with header parts and arrays replaced, checksums consistent."""
    with safe_open(path, framework="np") as handle:
        old = {name: handle.get_tensor(name) for name in handle.keys()}
        text = json.loads(handle.metadata()["gpunn"])
    old.update(arrays or {})
    old = {k: v for k, v in old.items() if v is not None}
    text.update(header or {}, crc32={k: checkpoint.crc(v) for k, v in old.items()})
    text = json.dumps(text)
    path.write_bytes(save(old, metadata={"gpunn": text,
                                         "gpunn.crc32": checkpoint.text_crc(text)}))
    return path


def refusal(path, model=None, epochs=4, **kwargs):
    """The message (without the path) of the CheckpointError that resuming gives; the model
    must be left as it was."""
    model = classifier(seed=7) if model is None else model
    before = model.params.host()
    with pytest.raises(gpunn.CheckpointError) as caught:
        gpunn.fit(model, X, Y, epochs=epochs, resume_from=path, **{**SETTINGS, **kwargs})
    np.testing.assert_array_equal(model.params.host(), before)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: "):]


@pytest.fixture
def fit_file(tmp_path):
    """A checkpoint fit wrote after 2 epochs."""
    path = tmp_path / "fit.ckpt"
    gpunn.fit(classifier(), X, Y, epochs=2, checkpoint_path=path, **SETTINGS)
    return path


@pytest.fixture
def mid_epoch_file(tmp_path):
    """A checkpoint fit wrote after step 2 of epoch 2 (then Ctrl-C), and the uninterrupted
    run's parameters after 3 epochs."""
    straight = classifier()
    gpunn.fit(straight, X, Y, epochs=3, **SETTINGS)
    path = tmp_path / "mid.ckpt"
    with pytest.raises(KeyboardInterrupt):
        gpunn.fit(classifier(), X, Y, epochs=3, checkpoint_path=path, checkpoint_steps=2,
                  callbacks=[Interrupt(2, 2)], **SETTINGS)
    return path, straight.params.host()


def test_a_mid_epoch_checkpoint_of_an_in_memory_fit_resumes_to_the_same_bits(mid_epoch_file):
    path, expected = mid_epoch_file
    saved = gpunn.load_checkpoint(path)
    assert saved.epoch == 1 and len(saved.steps[0]) == 2 and len(saved.steps[1]) == 2
    assert np.isfinite(saved.steps[0]).all()
    model = classifier(seed=7)
    history = gpunn.fit(model, X, Y, epochs=3, resume_from=path, **SETTINGS)
    assert history.epoch == [1, 2, 3]
    np.testing.assert_array_equal(model.params.host(), expected)


def test_a_mid_epoch_record_of_a_whole_epoch_is_refused(mid_epoch_file):
    """Three steps done of an epoch of three: that epoch is over, so the record lies."""
    path, _ = mid_epoch_file
    rewritten(path, arrays={"fit.step_totals": np.ones(3), "fit.step_status": np.zeros(3, int)})
    assert refusal(path, epochs=3) == ("fit.step_totals: expected between 1 and 2 steps done "
                                       "of an epoch of 3, got 3")


def test_a_model_only_checkpoint_names_all_it_lacks(tmp_path):
    path = gpunn.save_checkpoint(tmp_path / "model.ckpt", classifier())
    assert refusal(path) == (
        "expected a checkpoint written by fit(checkpoint_path=...) (optimizer, history and "
        "shuffling state), got one without optimizer and history and shuffling state: files "
        "of model.save, ModelCheckpoint or save_checkpoint without rng= cannot continue a fit "
        "exactly; load their model with gpunn.load_checkpoint(path, model)")


@pytest.mark.parametrize("order, shown", [
    (None, "none"), (np.arange(8), "shape (8,)"),
    (np.array([0, 1, 2, 3, 4, 5, 6, 7, 9]), "row 9, outside 0..8"),
    (np.array([0, 1, 2, -1, 4, 5, 6, 7, 8]), "row -1, outside 0..8"),
    (np.array([0, 1, 2, 3, 6, 5, 6, 3, 8]), "row 3 more than once"),
], ids=["missing", "too short", "past the end", "negative", "repeated"])
def test_a_row_order_that_is_not_a_permutation_of_the_rows_is_refused(fit_file, order, shown):
    rewritten(fit_file, arrays={"fit.order": order})
    assert refusal(fit_file) == f"fit.order: expected a permutation of the 9 rows of X, got {shown}"


def test_a_dropout_model_of_another_seed_is_refused(tmp_path):
    path = tmp_path / "drop.ckpt"
    gpunn.fit(classifier(seed=3, dropout=0.5), X, Y, epochs=1, checkpoint_path=path,
              **SETTINGS)
    assert refusal(path, classifier(seed=9, dropout=0.5)) == (
        "model.seed: expected 3 as saved (it keys the dropout masks), got 9")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"checkpoint_every": 2}, ValueError,
     "checkpoint_every: expected checkpoint_path too, got every=2 and checkpoint_path=None"),
    ({"checkpoint_path": "PATH", "record_steps": True, "epochs": 40_000, "batch_size": 1},
     ValueError,
     f"record_steps: expected at most about {(16 << 20) // 2 // 26} recorded steps with "
     "checkpoint_path (their losses go into the checkpoint's header), got 360000 in 40000 "
     "epochs; record fewer (record_steps=False) or checkpoint without them"),
], ids=["every without a path", "too many recorded steps"])
def test_checkpoint_arguments_are_refused_before_training(tmp_path, kwargs, error, message):
    kwargs = {k: tmp_path / "c.ckpt" if v == "PATH" else v for k, v in kwargs.items()}
    model = classifier()
    before = model.params.host()
    with pytest.raises(error) as caught:
        gpunn.fit(model, X, Y, **{"epochs": 2, **SETTINGS, **kwargs})
    assert str(caught.value) == message
    np.testing.assert_array_equal(model.params.host(), before)
    assert not (tmp_path / "c.ckpt").exists()
