"""FlatParams, the one host write path of parameters: after every writer gpunn has (restore
best, load, resume, unpickle, copies, sklearn state, the scaling fold, the data-parallel
broadcast) the model computes with exactly the parameters it holds, in every precision.

The sharp check is the bfloat16 working copy: its bits must be the master rounded to bfloat16
(an independent rounding, tests/reference_precision.py). The forward pass is checked too,
against a float64 reference of the master with the GEMM inputs rounded as the precision rounds
them, so fp32 and tf32 prove the same: the model computes with what it holds.
"""

import copy
import pickle
import re

import numpy as np
import pytest
import reference
import reference_precision as rp

import gpunn
from gpunn.callbacks import Callback, EarlyStopping
from gpunn.params import ALIGN, FlatParams, decay_end, layout, pack, relayout
from gpunn.tabular import fold_scaling

PRECISIONS = ["fp32", "tf32", "bf16"]
BITS = {"bf16": 7, "tf32": 10}


def _model(precision, seed=1):
    return gpunn.MLP([6, 16, 3], activation="tanh", output="softmax", seed=seed,
                     precision=precision)


def _data(rows=48):
    rng = np.random.default_rng(0)
    return rng.standard_normal((rows, 6)).astype(np.float32), rng.integers(0, 3, rows)


def _fit(model, epochs, **kwargs):
    X, y = _data()
    return gpunn.fit(model, X, y, optimizer="adam", lr=0.05, epochs=epochs, batch_size=16,
                     seed=3, **kwargs)


def _block(model, name):
    """``(start, stop)`` of the block ``name`` in the model's flat buffers."""
    return next((start, stop) for block, start, stop in model.param_ranges if block == name)


def _reference_logits(model, X):
    """Float64 forward of the model's master with every GEMM input rounded per precision."""
    if model.precision == "fp32":
        r = np.asarray
    else:
        def r(x):
            return rp.round_to_mantissa(np.asarray(x, np.float32), BITS[model.precision])
    host, A = model.params.host(), np.asarray(X, np.float64)
    for i, layer in enumerate(model.layers):
        (w0, w1), (b0, b1) = _block(model, f"W{i}"), _block(model, f"b{i}")
        W = host[w0:w1].reshape(layer.n_in, layer.n_out)
        Z = r(A) @ r(W) + host[b0:b1]
        A = reference.activation(layer.activation, Z)
    return A


def _computes_with(model, expected):
    """``model`` holds ``expected`` and its GEMMs read exactly that (rounded per precision)."""
    np.testing.assert_array_equal(model.params.host(), expected)
    if model.precision == "bf16":
        bits = model.backend.to_numpy(model.flat_work)
        rp.assert_bf16_equal(bits, rp.round_to_mantissa(expected, 7).reshape(-1))
    else:
        assert model.flat_work is None
    X, _ = _data(8)
    np.testing.assert_allclose(model.backend.to_numpy(model.forward(X)),
                               _reference_logits(model, X), rtol=1e-4, atol=1e-5)


def _trained(precision, epochs=2, seed=1):
    model = _model(precision, seed)
    _fit(model, epochs)
    return model


class _Snapshots(Callback):
    def __init__(self):
        self.params = {}

    def on_epoch_end(self, epoch, logs=None):
        self.params[epoch] = self.model.params.host()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_restore_best(backend, precision):
    # mode "max" on the falling training loss: the best epoch is the first one
    snapshots = _Snapshots()
    stopper = EarlyStopping("loss", patience=10, mode="max", restore_best=True)
    model = _model(precision)
    _fit(model, 3, callbacks=[snapshots, stopper])
    assert stopper.best_epoch == 1
    assert not np.array_equal(snapshots.params[1], snapshots.params[3])
    _computes_with(model, snapshots.params[1])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_load_checkpoint_into_a_model(backend, precision, tmp_path):
    source = _trained(precision)
    path = source.save(tmp_path / "m.safetensors")
    target = _trained(precision, seed=5)
    gpunn.load_checkpoint(path, model=target)
    _computes_with(target, source.params.host())
    _computes_with(gpunn.load(path), source.params.host())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_resume(backend, precision, tmp_path):
    path = tmp_path / "run.safetensors"
    saved = _model(precision)
    _fit(saved, 2, checkpoint_path=path)
    resumed = _trained(precision, seed=5)
    _fit(resumed, 2, resume_from=path)  # epochs == the saved epoch: loads, trains no more
    _computes_with(resumed, saved.params.host())


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_unpickle_and_copies(backend, precision, how):
    model = _trained(precision)
    clone = {"pickle": lambda m: pickle.loads(pickle.dumps(m)), "deepcopy": copy.deepcopy,
             "copy": lambda m: m.copy()}[how](model)
    _computes_with(clone, model.params.host())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_copy_changing_precision(backend, precision):
    model = _trained("fp32")
    _computes_with(model.copy(precision=precision), model.params.host())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_sklearn_state(backend, precision):
    pytest.importorskip("sklearn")
    from gpunn.sklearn import GpunnClassifier

    X, y = _data()
    estimator = GpunnClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0)
    estimator.fit(X, y)
    # The estimator trains in fp32; its pickled state carries the model's config, precision
    # included, so a model of each precision goes through the same restore.
    estimator._model = estimator.model_.copy(precision=precision)
    restored = pickle.loads(pickle.dumps(estimator))
    assert restored.model_.precision == precision
    _computes_with(restored.model_, estimator.model_.params.host())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_scaling_fold(backend, precision):
    model = _trained(precision)
    mean, std = np.linspace(-1, 1, 6), np.linspace(0.5, 2, 6)
    folded = fold_scaling(model, mean, std)
    host = model.params.host().astype(np.float64)
    (w0, w1), (b0, b1) = _block(model, "W0"), _block(model, "b0")
    W = host[w0:w1].reshape(6, 16)
    expected = model.params.host()
    expected[w0:w1] = (W / std[:, None]).ravel()
    expected[b0:b1] = host[b0:b1] - (mean / std) @ W
    _computes_with(folded, expected)
    X, _ = _data(8)
    np.testing.assert_allclose(folded.backend.to_numpy(folded.forward(X * std + mean)),
                               model.backend.to_numpy(model.forward(X)), rtol=2e-2, atol=2e-2)


class _FakeRanks:
    """A communicator whose broadcast brings another rank's parameters."""

    size, rank = 2, 1

    def __init__(self, root_params):
        self.root_params = root_params

    def bcast_array(self, array, root=0):
        array[...] = self.root_params
        return array


@pytest.mark.parametrize("precision", PRECISIONS)
def test_broadcast(backend, precision):
    model = _trained(precision)
    root = _trained(precision, seed=5).params.host()
    model.params.broadcast(_FakeRanks(backend.asarray(root)))
    _computes_with(model, root)


def test_load_host_refuses_another_layout(backend):
    model = _model("bf16")
    before = model.params.host()
    with pytest.raises(ValueError, match=rf"values: expected a 1-D array of {before.size} "
                                         r"real numbers .* got shape \(3,\)"):
        model.params.load_host(np.zeros(3))
    with pytest.raises(ValueError, match="dtype <U1"):
        model.params.load_host(np.array(["x"] * before.size))
    np.testing.assert_array_equal(model.params.host(), before)


def test_layout_aligns_every_block_decayed_first():
    entries = [("W0", 33, True), ("b0", 1, False), ("W1", 64, True), ("b1", 2, False)]
    ranges = layout(entries)
    assert ranges == [("W0", 0, 33), ("W1", 64, 128), ("b0", 128, 129), ("b1", 160, 162)]
    assert all(start % ALIGN == 0 for _, start, _ in ranges)
    assert decay_end(entries, ranges) == 128
    assert decay_end([("W0", 33, True)], layout([("W0", 33, True)])) == 33
    assert pack([(n, s) for n, s, _ in entries]) == [("W0", 0, 33), ("b0", 64, 65),
                                                      ("W1", 96, 160), ("b1", 160, 162)]


def test_relayout_moves_every_block():
    entries = [("W0", 33, True), ("b0", 1, False), ("W1", 64, True)]
    source, target = pack([(n, s) for n, s, _ in entries]), layout(entries)
    values = np.zeros(source[-1][2])
    for k, (_, start, stop) in enumerate(source):
        values[start:stop] = np.arange(start, stop) + 1000.0 * k
    moved = relayout(values, source, target)
    back = relayout(moved, target, source)
    np.testing.assert_array_equal(back, values)
    assert moved.size == target[-1][2] and moved[33:64].tolist() == [0.0] * 31
    np.testing.assert_array_equal(moved[64:128], values[96:160])


def test_sync_working_copy_is_a_deprecated_alias(backend):
    model = _model("bf16")
    model.layers[0].W[...] = 0.5  # a user's write into a view
    with pytest.warns(DeprecationWarning, match="load_host"):
        model.sync_working_copy()
    _computes_with(model, model.params.host())


def test_flat_params_is_the_owners_master(backend):
    model = _model("bf16")
    assert isinstance(model.params, FlatParams)
    assert model.flat_params is model.params.master
    assert model.flat_grads is model.params.grads
    assert model.flat_work is model.params.work


def test_cli_bf16_early_stopping_reports_the_saved_weights(backend, capsys, tmp_path):
    """``gpunn train --precision bf16 --early-stopping`` scores the weights it keeps and saves
    (it scored the last epoch's stale bfloat16 copy while saving the restored master)."""
    from gpunn import datasets
    from gpunn.cli import main

    path = tmp_path / "m.safetensors"
    code = main(["train", "--dataset", "digits", "--precision", "bf16", "--early-stopping", "1",
                 "--lr", "0.03", "--epochs", "15", "--seed", "0", "--test-size", "0.25",
                 "--save", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    found = re.search(r"stopped after epoch (\d+), kept epoch (\d+)", out)
    assert found, out
    stopped, kept = map(int, found.groups())
    assert kept < stopped  # the restore changed the weights
    _, X_test, _, y_test = datasets.train_test_split(*datasets.digits(), 0.25, 0)
    accuracy = np.mean(gpunn.load(path).predict(X_test) == y_test)
    assert f"test accuracy {accuracy:.4f}" in out, out



@pytest.mark.parametrize("precision", PRECISIONS)
def test_from_torch(backend, precision):
    torch = pytest.importorskip("torch")
    from gpunn.export import from_torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    model = from_torch(module, output="softmax", precision=precision)
    expected = np.zeros(model.params.size, np.float32)
    for i, layer in enumerate((module[0], module[2])):
        (w0, w1), (b0, b1) = _block(model, f"W{i}"), _block(model, f"b{i}")
        expected[w0:w1] = layer.weight.detach().numpy().T.ravel()
        expected[b0:b1] = layer.bias.detach().numpy()
    _computes_with(model, expected)
