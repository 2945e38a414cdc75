"""Export of LayerNorm / residual models: torch (PreNormBlock: nn.LayerNorm + Linear + the
activation, plus the input), the safetensors state_dict, and ONNX (LayerNormalization as its
opset-13 decomposition) run in onnxruntime."""

import numpy as np
import pytest
import reference as ref

import gpunn
from gpunn import export

VARIANTS = [{"norm": "layer", "residual": True}, {"norm": "layer"}, {"residual": True}]
IDS = ["norm_residual", "norm", "residual"]


def trained(precision, variant):
    """A model whose gamma and beta moved from their initial values (a few Adam steps)."""
    rng = np.random.default_rng(0)
    X = rng.normal(0.0, 2.0, size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model = gpunn.MLP([5, 8, 8, 8, 3], activation="gelu", output="softmax", seed=1,
                      precision=precision, **variant)
    gpunn.fit(model, X, y, lr=0.05, epochs=3, batch_size=8, progress=False)
    return model, X


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_torch_module_and_state_dict_give_the_model_outputs(tmp_path, precision, variant):
    torch = pytest.importorskip("torch")
    model, X = trained(precision, variant)
    net = export.to_torch(model)
    expected = model.backend.to_numpy(model.forward(X))
    with torch.no_grad():
        ref.assert_close(net(torch.from_numpy(X)).numpy(), expected, np.float32, scale=10.0)
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = export.save_state_dict(model, tmp_path / "m.safetensors")
    fresh = export.to_torch(model)
    for param in fresh.parameters():
        torch.nn.init.zeros_(param)
    fresh.load_state_dict(safetensors_torch.load_file(str(path)))
    with torch.no_grad():
        ref.assert_close(fresh(torch.from_numpy(X)).numpy(), expected, np.float32, scale=10.0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_onnx_graph_runs_in_onnxruntime(tmp_path, precision, variant):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, X = trained(precision, variant)
    path = export.to_onnx(model, str(tmp_path / "m.onnx"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"X": X})
    ref.assert_close(probabilities, model.predict_proba(X), np.float32, scale=10.0)
    np.testing.assert_array_equal(label, model.predict(X))


def test_a_non_finite_gamma_is_refused():
    model = gpunn.MLP([3, 4, 4, 4, 2], activation="relu", norm="layer", residual=True)
    host = model.params.host()
    start = dict((name, start) for name, start, _ in model.param_ranges)["gamma2"]
    host[start] = np.nan
    model.params.load_host(host)
    with pytest.raises(ValueError, match=r"model.layers\[2\].ln.gamma: expected finite"):
        export.state_dict(model)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_from_torch_gives_the_model_back(precision, variant):
    pytest.importorskip("torch")
    model, X = trained(precision, variant)
    back = export.from_torch(export.to_torch(model), output="softmax")
    assert [(layer.norm, layer.residual, layer.activation) for layer in back.layers] == [
        (layer.norm, layer.residual, layer.activation) for layer in model.layers]
    assert back.precision == precision
    np.testing.assert_array_equal(back.params.host(), model.params.host())


def test_from_torch_refuses_a_layernorm_it_cannot_represent():
    torch = pytest.importorskip("torch")
    model, _ = trained("fp32", VARIANTS[0])
    net = export.to_torch(model)
    net[2].norm = torch.nn.LayerNorm(8, eps=1e-3)  # [0], [1]: the first Linear, GELU
    with pytest.raises(TypeError, match=r"module\[2\].norm: gpunn cannot represent"):
        export.from_torch(net, output="softmax")


def test_the_block_class_is_public_and_pickles():
    torch = pytest.importorskip("torch")
    import pickle

    model, X = trained("fp32", VARIANTS[0])
    net = export.to_torch(model)
    assert isinstance(net[2], export.PreNormBlock)
    again = pickle.loads(pickle.dumps(net))
    with torch.no_grad():
        np.testing.assert_array_equal(again(torch.from_numpy(X)).numpy(),
                                      net(torch.from_numpy(X)).numpy())
