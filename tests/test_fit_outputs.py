"""``fit``'s outputs checked before the first epoch: ``checkpoint_path``, ModelCheckpoint's and
CSVLogger's files apart from each other and from every file the run reads (streamed X and y,
a memory map's file, a folder of shards, validation data); only a checkpoint writer may
replace ``resume_from``. Each refusal names both arguments and leaves every file as it was."""

import numpy as np
import pytest

import gpunn
from gpunn.callbacks import CSVLogger, ModelCheckpoint

RNG = np.random.default_rng(0)
X = RNG.normal(size=(48, 3)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int64)


def _files(tmp_path):
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    return str(tmp_path / "x.npy"), str(tmp_path / "y.npy")


def _fit(X_, y_, **kwargs):
    model = gpunn.MLP([3, 4, 2], output="softmax", seed=0)
    return gpunn.fit(model, X_, y_, epochs=kwargs.pop("epochs", 2), batch_size=16, verbose=0,
                     **kwargs)


def _outputs(path):
    return {"checkpoint_path": dict(checkpoint_path=path),
            "CSVLogger.path": dict(callbacks=[CSVLogger(path)]),
            "ModelCheckpoint.path": dict(callbacks=[ModelCheckpoint(path)])}


@pytest.mark.parametrize("output", ["checkpoint_path", "CSVLogger.path", "ModelCheckpoint.path"])
@pytest.mark.parametrize("onto", ["X", "y"])
def test_an_output_onto_a_streamed_input_is_refused_before_training(tmp_path, output, onto):
    x_path, y_path = _files(tmp_path)
    target = x_path if onto == "X" else y_path
    before = open(target, "rb").read()
    with pytest.raises(ValueError, match=rf"^{output}: expected a file apart from the input "
                                         rf"{onto} '.*', got the same file"):
        _fit(x_path, y_path, **_outputs(target)[output])
    assert open(target, "rb").read() == before


def test_a_memory_maps_file_and_validation_files_are_inputs(tmp_path):
    x_path, y_path = _files(tmp_path)
    mapped = np.load(x_path, mmap_mode="r")
    with pytest.raises(ValueError, match=r"^CSVLogger.path: expected a file apart from the "
                                         r"input X"):
        _fit(mapped, Y, callbacks=[CSVLogger(x_path)])
    with pytest.raises(ValueError, match=r"^checkpoint_path: expected a file apart from the "
                                         r"input validation_data\[1\]"):
        _fit(X, Y, validation_data=(x_path, y_path), checkpoint_path=y_path)
    assert np.array_equal(np.load(x_path), X) and np.array_equal(np.load(y_path), Y)


def test_an_output_inside_a_folder_of_shards_is_refused(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(2):
        np.save(shards / f"x{i}.npy", X[i * 24:(i + 1) * 24])
    with pytest.raises(ValueError, match=r"^checkpoint_path: expected a file outside the input "
                                         r"folder X"):
        _fit(str(shards), Y, checkpoint_path=str(shards / "run.safetensors"))
    assert sorted(p.name for p in shards.iterdir()) == ["x0.npy", "x1.npy"]


@pytest.mark.parametrize("first, second", [("checkpoint_path", "CSVLogger.path"),
                                           ("ModelCheckpoint.path", "CSVLogger.path"),
                                           ("checkpoint_path", "ModelCheckpoint.path")])
def test_two_outputs_on_one_file_are_refused(tmp_path, first, second):
    path = str(tmp_path / "out.bin")
    kwargs = {**_outputs(path)[first]}
    extra = _outputs(path)[second]
    kwargs["callbacks"] = kwargs.get("callbacks", []) + extra.get("callbacks", [])
    kwargs.update({k: v for k, v in extra.items() if k != "callbacks"})
    with pytest.raises(ValueError, match=r"expected a file apart from .*'s, got the same file"):
        _fit(X, Y, **kwargs)
    assert not (tmp_path / "out.bin").exists()


def test_a_log_onto_resume_from_is_refused_and_a_checkpoint_onto_it_is_not(tmp_path):
    path = str(tmp_path / "run.safetensors")
    _fit(X, Y, checkpoint_path=path)
    before = open(path, "rb").read()
    with pytest.raises(ValueError, match=r"^CSVLogger.path: expected a file apart from the "
                                         r"input resume_from"):
        _fit(X, Y, epochs=4, resume_from=path, callbacks=[CSVLogger(path)])
    assert open(path, "rb").read() == before
    history = _fit(X, Y, epochs=4, resume_from=path, checkpoint_path=path)
    assert history.epoch == [1, 2, 3, 4]
    assert gpunn.load(path).n_in == 3  # the file the resumed run wrote loads


def test_a_model_checkpoint_that_would_outgrow_its_header_is_refused_before_training(tmp_path):
    """ModelCheckpoint saves the history as fit's checkpoint_path does: the same bound on the
    recorded steps, checked before the first epoch, not at the first save."""
    from gpunn.checkpoint import container

    path = tmp_path / "m.safetensors"
    epochs = container.MAX_HEADER_BYTES // 2 // 26 // (48 + 8) + 1  # 48 steps an epoch
    with pytest.raises(ValueError, match=r"^record_steps: expected at most about"):
        gpunn.fit(gpunn.MLP([3, 4, 2], output="softmax", seed=0), X, Y, epochs=epochs,
                  batch_size=1, record_steps=True, verbose=0, callbacks=[ModelCheckpoint(path)])
    assert not path.exists()
