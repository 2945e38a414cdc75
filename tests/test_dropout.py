"""Dropout: the masks' generator, their bits on every backend, training against PyTorch.

No peer gives the same dropout on two devices, so none can be compared with directly. The masks
are checked three ways instead: the kernels' masks equal, bit for bit, those of an independent
restatement of the generator (``reference.splitmix64``, itself checked against splitmix64's
published outputs) on every backend (cpu and cuda-emulated here; the GPU check adds cuda);
their keep rate and independence are checked statistically; and PyTorch, fed the reference's
masks, trains the same model to the same parameters.
"""

import warnings

import numpy as np
import pytest
import reference as ref
from kernel_cases import _ctrl

import gpunn
from gpunn.backends.cpu import CpuBackend
from gpunn.layers import Dense, DropoutPass


def kernel_keep(backend, n, p, seed=7, layer=0, t=0, offset=0, dtype=np.float32):
    """The keep mask bias_act_fwd_drop draws for ``n`` elements (identity, b = 0, Z = 1)."""
    Z = backend.asarray(np.ones(n, dtype))
    A = backend.asarray(np.full(n, np.nan, dtype))
    backend.kernel("bias_act_fwd_drop", backend.asarray(np.zeros(1, dtype)), 1, 0,
                   backend.asarray(_ctrl(t=t)), seed, layer, offset, ref.drop_below(p),
                   1.0 / (1.0 - p), Z, A)
    out = backend.to_numpy(A)
    assert set(np.unique(out)) <= {0.0, np.float32(1.0 / (1.0 - p))}
    return out != 0


def test_the_reference_generator_gives_splitmix64s_published_outputs():
    # Vigna's splitmix64.c seeded with 1234567: its first five outputs.
    expected = [6457827717110365317, 3203168211198807973, 9817491932198370423,
                4593380528125082431, 16408922859458223821]
    assert [int(x) for x in ref.splitmix64(1234567, np.arange(5))] == expected


@pytest.mark.parametrize("seed, layer, t, offset", [(7, 0, 0, 0), (2**63 - 1, 5, 10**9, 3),
                                                    (0, 2, 1, 10**6)],
                         ids=["small", "large_counters", "shard_offset"])
def test_masks_are_the_references_bit_for_bit_on_every_backend(backend, seed, layer, t, offset):
    n, p = 3001, 0.3
    keep = kernel_keep(backend, n, p, seed, layer, t, offset)
    expected = ref.dropout_keep(seed, layer, t, np.arange(n) + offset, p)
    np.testing.assert_array_equal(keep, expected)


def test_cpu_and_cuda_emulated_drop_the_same_units():
    emulated = pytest.importorskip("host_build").emulated_backend()
    for dtype in (np.float32, np.float64):
        np.testing.assert_array_equal(kernel_keep(CpuBackend(), 5000, 0.5, 11, 1, 4, 0, dtype),
                                      kernel_keep(emulated, 5000, 0.5, 11, 1, 4, 0, dtype))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_is_one_minus_p(p):
    n = 200_000
    keep = kernel_keep(CpuBackend(), n, p, seed=3)
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(keep.mean() - (1 - p)) < 5 * sigma
    # no structure along the element index: each half and every 8th element keep alike
    for part in (keep[: n // 2], keep[n // 2:], keep[::8], keep[3::8]):
        assert abs(part.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / part.size)


@pytest.mark.parametrize("change", [{"t": 1}, {"layer": 1}, {"seed": 4}, {"offset": 1}],
                         ids=["step", "layer", "seed", "element"])
def test_masks_differ_independently_per_step_layer_seed_and_element(change):
    """Two masks that differ in one key agree where two independent ones would:
    p^2 + (1 - p)^2 of the elements (not all of them, and not shifted copies)."""
    n, p = 100_000, 0.5
    base = {"seed": 3, "layer": 0, "t": 0, "offset": 0}
    a = kernel_keep(CpuBackend(), n, p, **base)
    b = kernel_keep(CpuBackend(), n, p, **{**base, **change})
    agree = (a == b).mean()
    assert abs(agree - 0.5) < 5 * np.sqrt(0.25 / n)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_neighbours_in_element_and_step_are_independent(p):
    """Two elements are kept together (1 - p)^2 of the time, as independent draws are, within
    5 binomial sigma: the two halves of one splitmix64 output (2k, 2k + 1), neighbours from
    two outputs (2k + 1, 2k + 2), and one element at update counts t and t + 1."""
    n, both = 200_000, (1 - p) ** 2
    keep = kernel_keep(CpuBackend(), n + 1, p, seed=5, t=9)
    later = kernel_keep(CpuBackend(), n, p, seed=5, t=10)
    pairs = {"one output": (keep[0:n:2], keep[1:n:2]),
             "two outputs": (keep[1:n:2], keep[2:n + 1:2]),
             "next step": (keep[:n], later)}
    for name, (a, b) in pairs.items():
        sigma = np.sqrt(both * (1 - both) / a.size)
        assert abs((a & b).mean() - both) < 5 * sigma, name


def test_p_zero_keeps_everything_and_small_p_drops_some():
    backend = CpuBackend()
    assert kernel_keep(backend, 10_000, 0.0).all()
    assert not kernel_keep(backend, 10_000, 1e-3).all()


# --- the layer and the model ------------------------------------------------------------------

@pytest.mark.parametrize("value, error, match", [
    (1.0, ValueError, r"dropout: expected a finite number in \[0.0, 1.0\), got 1.0"),
    (-0.1, ValueError, r"dropout: expected a finite number in \[0.0, 1.0\), got -0.1"),
    (float("nan"), ValueError, "dropout: expected a finite number"),
    ("0.5", TypeError, "dropout: expected a real number, got str"),
    (True, TypeError, "dropout: expected a real number, got bool"),
])
def test_bad_dropout_is_refused_naming_the_argument(value, error, match):
    with pytest.raises(error, match=match):
        Dense(3, 4, dropout=value)
    with pytest.raises(error, match=match):
        gpunn.MLP([3, 4, 2], dropout=value)


def test_mlp_dropout_per_hidden_layer_and_never_on_the_output():
    model = gpunn.MLP([3, 5, 4, 2], activation="relu", dropout=[0.1, 0.4])
    assert [layer.dropout for layer in model.layers] == [0.1, 0.4, 0.0]
    with pytest.raises(ValueError, match="dropout: expected a probability or a list of 2"):
        gpunn.MLP([3, 5, 4, 2], dropout=[0.1])
    with pytest.raises(ValueError, match=r"dropout\[1\]: expected a finite number"):
        gpunn.MLP([3, 5, 4, 2], dropout=[0.1, 2.0])
    with pytest.raises(ValueError, match="layers\\[-1\\].dropout: expected 0"):
        gpunn.Sequential([Dense(3, 4, "relu"), Dense(4, 2, "identity", dropout=0.5)])


def test_config_copy_and_checkpoint_carry_dropout(tmp_path):
    model = gpunn.MLP([3, 5, 2], activation="relu", output="softmax", dropout=0.25, seed=4)
    assert model.config()["layers"][0]["dropout"] == 0.25
    assert "dropout" not in model.config()["layers"][1]  # 0: configs stay as before
    assert "dropout=0.25" in repr(model)
    assert model.copy(dtype="float64").layers[0].dropout == 0.25
    gpunn.save(model, tmp_path / "m.safetensors")
    loaded = gpunn.load_checkpoint(tmp_path / "m.safetensors").model
    assert [layer.dropout for layer in loaded.layers] == [0.25, 0.0]


def small_data(n=70, n_in=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)).astype(np.float32), rng.integers(0, classes, size=n)


def test_predict_and_evaluate_do_not_drop(backend):
    X, y = small_data()
    model = gpunn.MLP([6, 16, 3], activation="relu", output="softmax", dropout=0.5, seed=2)
    gpunn.fit(model, X, y, epochs=2, batch_size=16, progress=False)
    plain = gpunn.Sequential([Dense(6, 16, "relu"), Dense(16, 3, "identity")],
                             output="softmax", seed=2)
    plain.params.load_host(model.params.host())
    first = model.predict_proba(X)
    np.testing.assert_array_equal(model.predict_proba(X), first)
    np.testing.assert_array_equal(plain.predict_proba(X), first)
    assert model.evaluate(X, y) == plain.evaluate(X, y)
    assert model.loss(X, y) == plain.loss(X, y)


def test_loss_and_grad_drops_only_when_asked():
    X, y = small_data()
    model = gpunn.MLP([6, 16, 3], activation="tanh", output="softmax", dropout=0.5, seed=2)
    plain = model.loss_and_grad(X, y)
    assert plain == model.loss(X, y)
    dropped = model.loss_and_grad(X, y, dropout_update=3)
    assert dropped != plain
    assert model.loss_and_grad(X, y, dropout_update=3) == dropped
    assert model.loss_and_grad(X, y, dropout_update=4) != dropped
    with pytest.raises(ValueError, match="dropout_update: expected an integer in"):
        model.loss_and_grad(X, y, dropout_update=-1)


# Not relu: with zero initial biases, a row whose inputs to a layer are all dropped has z = 0
# exactly there, relu's kink, where central differences are not the derivative.
@pytest.mark.parametrize("activation", ["sigmoid", "leaky_relu", "gelu"])
def test_gradcheck_with_a_fixed_mask(backend, activation):
    X, y = small_data(n=9, n_in=3)
    model = gpunn.MLP([3, 5, 4, 3], activation=activation, output="softmax", dtype="float64",
                      dropout=0.4, seed=1)
    assert gpunn.gradcheck(model, X, y, dropout_update=2) < 1e-7


def test_a_shard_drops_what_the_whole_batch_drops_on_its_rows(backend):
    """A pass over rows 3: of a batch with first_row=3 (a rank's shard) computes those rows of
    the pass over the whole batch, masks included."""
    X, _ = small_data(n=11)
    model = gpunn.MLP([6, 8, 7, 3], activation="tanh", dropout=0.5, seed=5)
    ctrl = backend.asarray(_ctrl(t=6))
    Xd = backend.asarray(X)
    whole = backend.to_numpy(model.forward_pass(Xd, model.new_workspace(11).rows(11),
                                                DropoutPass(ctrl, 5, 0)))
    shard = backend.to_numpy(model.forward_pass(Xd[3:], model.new_workspace(8).rows(8),
                                                DropoutPass(ctrl, 5, 3)))
    np.testing.assert_array_equal(shard, whole[3:])


# --- export, estimators, CLI -------------------------------------------------------------------

def test_torch_export_has_dropout_modules_and_round_trips(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    X, _ = small_data()
    model = gpunn.MLP([6, 9, 7, 3], activation="relu", output="softmax", dropout=[0.5, 0.0],
                      seed=2)
    module = gpunn.export.to_torch(model).eval()
    kinds = [type(child).__name__ for child in module]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    assert module[2].p == 0.5
    with torch.no_grad():  # eval(): dropout is the identity, as in predict
        logits = module(torch.from_numpy(X)).numpy()
    ref.assert_close(logits, model.backend.to_numpy(model.forward(X)), np.float32)
    path = gpunn.export.save_state_dict(model, str(tmp_path / "m.safetensors"))
    assert sorted(safetensors_torch.load_file(path)) == sorted(module.state_dict())
    back = gpunn.export.from_torch(module, output="softmax")
    assert [layer.dropout for layer in back.layers] == [0.5, 0.0, 0.0]
    nn = torch.nn
    with pytest.raises(TypeError, match="cannot represent ReLU here"):
        gpunn.export.from_torch(nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.2), nn.ReLU(),
                                              nn.Linear(4, 2)))


def test_torch_export_drops_a_residual_blocks_branch_and_round_trips():
    torch = pytest.importorskip("torch")
    X, _ = small_data()
    model = gpunn.MLP([6, 8, 8, 8, 3], activation="relu", output="softmax", dropout=0.4,
                      seed=2, norm="layer", residual=True)
    module = gpunn.export.to_torch(model)
    kinds = [type(child).__name__ for child in module]
    assert kinds == ["Linear", "ReLU", "Dropout", "PreNormBlock", "PreNormBlock",
                     "PreNormBlock"]
    assert [getattr(block.drop, "p", None) for block in list(module)[3:]] == [0.4, 0.4, None]
    with torch.no_grad():
        logits = module.eval()(torch.from_numpy(X)).numpy()
        # training mode drops the branch only: the stream x passes whole
        x = torch.from_numpy(np.random.default_rng(0).normal(size=(4000, 8)).astype(np.float32))
        branch = module[3].eval()(x) - x
        dropped = module[3].train()(x) - x
        module.eval()
    live = branch != 0
    assert live.float().mean() > 0.3
    ratio = dropped[live] / branch[live]
    assert bool(((ratio == 0) | ((ratio - 1 / 0.6).abs() < 1e-3)).all())
    assert abs((ratio == 0).float().mean().item() - 0.4) < 0.05
    ref.assert_close(logits, model.backend.to_numpy(model.forward(X)), np.float32)
    back = gpunn.export.from_torch(module.eval(), output="softmax")
    assert [layer.dropout for layer in back.layers] == [0.4, 0.4, 0.4, 0.0]
    assert [layer.residual for layer in back.layers] == [False, True, True, False]
    with pytest.raises(TypeError, match="cannot represent Dropout here"):
        gpunn.export.from_torch(torch.nn.Sequential(*list(module)[:4], torch.nn.Dropout(0.1),
                                                    module[5]))


def test_onnx_export_is_the_inference_identity(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    X, _ = small_data()
    model = gpunn.MLP([6, 9, 3], activation="tanh", dropout=0.5, seed=2)
    path = gpunn.export.to_onnx(model, str(tmp_path / "m.onnx"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ref.assert_close(session.run(None, {"X": X})[0], model.predict(X), np.float32)


def test_estimators_take_dropout():
    pytest.importorskip("sklearn")
    from gpunn.sklearn import GpunnClassifier

    X, y = small_data()
    clf = GpunnClassifier(hidden_layer_sizes=(8,), max_iter=2, dropout=0.3, random_state=0)
    assert clf.get_params()["dropout"] == 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    assert clf.model_.layers[0].dropout == 0.3
    with pytest.raises(ValueError, match=r"dropout: expected a finite number in \[0.0, 1.0\)"):
        GpunnClassifier(dropout=1.5).fit(X, y)


def test_cli_dropout(capsys, tmp_path):
    from gpunn.cli import main

    code = main(["train", "--dataset", "synthetic", "--hidden", "8", "--epochs", "1",
                 "--dropout", "0.25", "--save", str(tmp_path / "m.safetensors")])
    assert code == 0, capsys.readouterr().err
    assert "dropout=0.25" in capsys.readouterr().out
    loaded = gpunn.load_checkpoint(tmp_path / "m.safetensors").model
    assert loaded.layers[0].dropout == 0.25
    assert main(["train", "--dataset", "synthetic", "--epochs", "1", "--dropout", "1"]) == 1
    assert "--dropout: expected a finite number in [0.0, 1.0), got 1.0" in capsys.readouterr().err


@pytest.mark.parametrize("sizes, blocks", [([6, 32, 16, 3], {}),
                                           ([6, 16, 16, 16, 3], {"norm": "layer",
                                                                 "residual": True})],
                         ids=["plain", "residual"])
def test_bf16_training_drops_the_same_units_as_fp32(backend, sizes, blocks):
    """precision="bf16" runs the bf16 forms of the dropout kernels (residual blocks' too):
    the same masks, so its dropped loss and gradient are fp32's up to bfloat16 rounding
    (other masks: far off)."""
    X, y = small_data()
    grads = {}
    for precision in ("fp32", "bf16"):
        model = gpunn.MLP(sizes, activation="gelu", output="softmax", dropout=0.5,
                          seed=4, precision=precision, **blocks)
        loss = model.loss_and_grad(X, y, dropout_update=7)
        grads[precision] = (loss, backend.to_numpy(model.flat_grads).copy())
    (loss32, g32), (loss16, g16) = grads["fp32"], grads["bf16"]
    assert abs(loss16 - loss32) < 5e-3 * abs(loss32)
    assert np.linalg.norm(g16 - g32) < 2e-2 * np.linalg.norm(g32)
    other = gpunn.MLP(sizes, activation="gelu", output="softmax", dropout=0.5, seed=4,
                      **blocks)
    other.loss_and_grad(X, y, dropout_update=8)
    assert np.linalg.norm(backend.to_numpy(other.flat_grads) - g32) > 0.1 * np.linalg.norm(g32)
