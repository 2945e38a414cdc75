"""The flat layout puts the decayed weights first (one weight-decay boundary), and checkpoint
files of the layout before it (each layer's W and b together) load converted and resume the
same run bit for bit."""

import json

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save as save_safetensors

import gpunn
from gpunn.checkpoint import crc, text_crc

ALIGN_BEFORE = 32  # the alignment of the old files, in elements: written here, not imported


def old_layout(sizes):
    """The layout files had before weights came first, from its rule: W0, b0, W1, b1, ...
    each block starting at the next multiple of 32 elements."""
    ranges, offset = [], 0
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        for name, size in ((f"W{i}", n_in * n_out), (f"b{i}", n_out)):
            ranges.append([name, offset, offset + size])
            offset = -(-(offset + size) // ALIGN_BEFORE) * ALIGN_BEFORE
    return ranges


def to_old_file(path, sizes):
    """Rewrite a checkpoint as the old code wrote it: old layout, params and state moved."""
    with safe_open(path, framework="np") as handle:
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
        header = json.loads(handle.metadata()["gpunn"])
    old = old_layout(sizes)
    new = {name: (start, stop) for name, start, stop in header["layout"]}
    for name in [k for k in arrays if k == "params" or k.startswith("optimizer.")]:
        moved = np.zeros(old[-1][2], arrays[name].dtype)
        for block, start, stop in old:
            moved[start:stop] = arrays[name][slice(*new[block])]
        arrays[name] = moved
    header.update(layout=old, crc32={k: crc(v) for k, v in arrays.items()})
    text = json.dumps(header)
    path.write_bytes(save_safetensors(arrays, metadata={"gpunn": text,
                                                        "gpunn.crc32": text_crc(text)}))
    return old


def data(n=30, n_in=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    return rng.normal(size=(n, n_in)) + y[:, None], y


SIZES = [5, 7, 6, 3]


def run(model, epochs, **kwargs):
    X, y = data()
    return gpunn.fit(model, X, y, optimizer="adam", lr=0.03, epochs=epochs, batch_size=8,
                     seed=2, record_steps=True, **kwargs)


def classifier(seed=0):
    return gpunn.MLP(SIZES, activation="tanh", output="softmax", seed=seed)


def test_weights_come_first_and_the_boundary_is_the_first_bias():
    model = classifier()
    names = [name for name, _, _ in model.param_ranges]
    assert names == ["W0", "W1", "W2", "b0", "b1", "b2"]
    starts = {name: start for name, start, _ in model.param_ranges}
    assert model.params.decay_end == starts["b0"]
    assert starts["W2"] + 6 * 3 <= model.params.decay_end


def test_an_old_layout_model_file_loads_with_the_same_parameters(tmp_path):
    model = classifier(seed=4)
    path = tmp_path / "old.safetensors"
    model.save(path)
    old = to_old_file(path, SIZES)
    with safe_open(path, framework="np") as handle:
        raw = handle.get_tensor("params")
    loaded = gpunn.load(path)
    for i, layer in enumerate(loaded.layers):  # W and b straight from the old offsets
        start = next(s for name, s, _ in old if name == f"W{i}")
        np.testing.assert_array_equal(loaded.backend.to_numpy(layer.W).ravel(),
                                      raw[start:start + layer.W.size])
        start = next(s for name, s, _ in old if name == f"b{i}")
        np.testing.assert_array_equal(loaded.backend.to_numpy(layer.b),
                                      raw[start:start + layer.n_out])
    np.testing.assert_array_equal(loaded.params.host(), model.params.host())
    X, _ = data()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    resaved = tmp_path / "new.safetensors"
    loaded.save(resaved)  # written in today's layout
    with safe_open(resaved, framework="np") as handle:
        layout = json.loads(handle.metadata()["gpunn"])["layout"]
    assert [list(r) for r in loaded.param_ranges] == layout != old


def test_an_old_layout_fit_checkpoint_resumes_bit_for_bit(tmp_path):
    straight = classifier()
    expected = run(straight, 4)
    path = tmp_path / "run.safetensors"
    run(classifier(), 2, checkpoint_path=path)
    to_old_file(path, SIZES)
    saved = gpunn.load_checkpoint(path)
    assert saved.epoch == 2 and sorted(saved.optimizer.state) == ["m", "v"]
    resumed = classifier(seed=9)
    history = run(resumed, 4, resume_from=path)
    np.testing.assert_array_equal(resumed.params.host(), straight.params.host())
    assert history.step_loss == expected.step_loss


def test_an_unknown_layout_is_refused(tmp_path):
    model = classifier()
    path = tmp_path / "m.safetensors"
    model.save(path)
    with safe_open(path, framework="np") as handle:
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
        header = json.loads(handle.metadata()["gpunn"])
    header["layout"] = header["layout"][::-1]
    text = json.dumps(header)
    path.write_bytes(save_safetensors(arrays, metadata={"gpunn": text,
                                                        "gpunn.crc32": text_crc(text)}))
    try:
        gpunn.load(path)
    except gpunn.CheckpointError as exc:
        assert "layout: expected" in str(exc)
    else:
        raise AssertionError("a reversed layout loaded")
